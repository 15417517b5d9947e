"""``compilecache report --html``: one self-contained page (inline CSS and SVG, no script, no
network) with the persisted counters drawn: hits and misses per tier over time, compile time
saved per function, and the cache's size over time, above a few headline figures."""

from __future__ import annotations

import html
import time
from collections import defaultdict
from typing import Any

from ._counters_db import CountersDB

WIDTH, HEIGHT, PAD = 720, 220, 44
HIT, MISS, SAVED, SIZE = "#2e8b57", "#d2691e", "#4169e1", "#6a5acd"


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _time_label(stamp: float) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(stamp))


def _bars_over_time(
    buckets: list[int], series: dict[str, dict[int, float]], colours: dict[str, str], title: str
) -> str:
    """Stacked bars per time bucket (one stack of the named series each)."""
    if not buckets:
        return _empty(title)
    tops = [sum(series[name].get(b, 0) for name in series) for b in buckets]
    peak = max(tops) or 1
    step = (WIDTH - 2 * PAD) / len(buckets)
    bar = min(max(1.0, step * 0.8), 48.0)
    parts = [_frame(title, peak)]
    for i, bucket in enumerate(buckets):
        x = PAD + i * step
        base: float = HEIGHT - PAD
        for name, values in series.items():
            value = values.get(bucket, 0)
            if not value:
                continue
            height = (HEIGHT - 2 * PAD) * value / peak
            base -= height
            parts.append(
                f'<rect class="bar" data-series="{_esc(name)}" x="{x:.1f}" y="{base:.1f}" '
                f'width="{bar:.1f}" height="{height:.1f}" fill="{colours[name]}">'
                f"<title>{_esc(name)} {_time_label(bucket)}: {value:.0f}</title></rect>"
            )
    parts.append(_time_axis(buckets))
    parts.append(_legend(colours))
    return _svg(parts, title)


def _line_over_time(points: list[tuple[int, float]], title: str, unit: str) -> str:
    if not points:
        return _empty(title)
    peak = max(value for _, value in points) or 1
    first, last = points[0][0], points[-1][0]
    span = (last - first) or 1
    coords = [
        (
            PAD + (WIDTH - 2 * PAD) * (stamp - first) / span,
            HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / peak,
        )
        for stamp, value in points
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    parts = [_frame(title, peak, unit)]
    parts.append(
        f'<polyline class="line" points="{path}" fill="none" stroke="{SIZE}" stroke-width="2"/>'
    )
    for (x, y), (stamp, value) in zip(coords, points, strict=True):
        parts.append(
            f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{SIZE}">'
            f"<title>{_time_label(stamp)}: {_human(value, unit)}</title></circle>"
        )
    parts.append(_time_axis([stamp for stamp, _ in points]))
    return _svg(parts, title)


def _horizontal_bars(rows: list[tuple[str, float, str]], title: str) -> str:
    """(label, value, note) rows, largest first."""
    if not rows:
        return _empty(title)
    height = PAD + 26 * len(rows)
    peak = max(value for _, value, _ in rows) or 1
    left = 260
    parts = [f'<text x="8" y="20" class="title">{_esc(title)}</text>']
    for i, (label, value, note) in enumerate(rows):
        y = 34 + 26 * i
        width = (WIDTH - left - 120) * value / peak
        parts.append(
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" class="label">'
            f"{_esc(label[-40:])}</text>"
        )
        parts.append(
            f'<rect class="bar" data-series="saved" x="{left}" y="{y}" width="{max(width, 1):.1f}"'
            f' height="18" fill="{SAVED}"><title>{_esc(label)}: {value:.2f} s saved</title></rect>'
        )
        parts.append(
            f'<text x="{left + width + 6:.1f}" y="{y + 14}" class="label">'
            f"{value:.1f} s {_esc(note)}</text>"
        )
    return _svg(parts, title, height)


def _frame(title: str, peak: float, unit: str = "") -> str:
    axis = HEIGHT - PAD
    return (
        f'<text x="8" y="20" class="title">{_esc(title)}</text>'
        f'<line x1="{PAD}" y1="{axis}" x2="{WIDTH - PAD}" y2="{axis}" class="axis"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{axis}" class="axis"/>'
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end" class="label">'
        f"{_esc(_human(peak, unit))}</text>"
        f'<text x="{PAD - 4}" y="{axis}" text-anchor="end" class="label">0</text>'
    )


def _time_axis(stamps: list[int]) -> str:
    y = HEIGHT - PAD + 16
    first, last = _time_label(stamps[0]), _time_label(stamps[-1])
    return (
        f'<text x="{PAD}" y="{y}" class="label">{first}</text>'
        f'<text x="{WIDTH - PAD}" y="{y}" text-anchor="end" class="label">{last}</text>'
    )


def _legend(colours: dict[str, str]) -> str:
    parts = []
    for i, (name, colour) in enumerate(colours.items()):
        x = WIDTH - PAD - 150 * (len(colours) - i)
        parts.append(
            f'<rect x="{x}" y="8" width="12" height="12" fill="{colour}"/>'
            f'<text x="{x + 16}" y="19" class="label">{_esc(name)}</text>'
        )
    return "".join(parts)


def _svg(parts: list[str], title: str, height: int = HEIGHT) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_esc(title)}" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}">'
        + "".join(parts)
        + "</svg>"
    )


def _empty(title: str) -> str:
    return _svg(
        [
            f'<text x="8" y="20" class="title">{_esc(title)}</text>',
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="label">'
            "no data recorded yet</text>",
        ],
        title,
        HEIGHT // 2,
    )


def _human(value: float, unit: str) -> str:
    if unit == "bytes":
        for name in ("B", "KiB", "MiB", "GiB", "TiB"):
            if value < 1024 or name == "TiB":
                return f"{value:.0f} {name}" if name == "B" else f"{value:.1f} {name}"
            value /= 1024
    return f"{value:.0f}"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 780px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } .sub { color: #666; margin-top: 0; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 1em 0 1.5em; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: 10px 14px; min-width: 130px; }
.card .value { font-size: 1.5em; font-weight: 600; } .card .name { color: #666; font-size: .85em; }
h2 { font-size: 1.05em; } table.bypasses { border-collapse: collapse; font-size: .9em; }
table.bypasses td, table.bypasses th { border-bottom: 1px solid #eee; padding: 4px 8px;
  text-align: left; vertical-align: top; } table.bypasses td.count { text-align: right; }
section { margin-bottom: 1.5em; } svg { background: #fafafa; border-radius: 6px; }
.title { font-weight: 600; font-size: 14px; } .label { font-size: 11px; fill: #444; }
.axis { stroke: #999; stroke-width: 1; }
"""


def _bypasses(reasons: dict[str, float]) -> str:
    """Calls not persisted, by reason: each is a warm start lost, so the page lists them."""
    if not reasons:
        return ""
    rows = "".join(
        f'<tr><td class="count">{count:.0f}</td><td>{_esc(reason)}</td></tr>'
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1])
    )
    return (
        '<section><h2>not persisted (bypassed), by reason</h2><table class="bypasses">'
        f"<tr><th>calls</th><th>reason</th></tr>{rows}</table></section>"
    )


def render(db: CountersDB, *, store: str, now: float | None = None) -> str:
    """The report page for the counters in ``db`` (``store`` names it on the page)."""
    now = time.time() if now is None else now
    totals, rows, sizes = db.totals(), db.series(), db.sizes()
    tiers = sorted({scope.split(":", 1)[1] for scope in totals if scope.startswith("tier:")})
    buckets = sorted({bucket for bucket, scope, _, _ in rows if scope.startswith("tier:")})
    charts = []
    for tier in tiers:
        series: dict[str, dict[int, float]] = {
            "hits": defaultdict(float),
            "misses": defaultdict(float),
        }
        for bucket, scope, name, value in rows:
            if scope == f"tier:{tier}" and name in series:
                series[name][bucket] += value
        charts.append(
            _bars_over_time(
                buckets, series, {"hits": HIT, "misses": MISS}, f"{tier}: hits and misses over time"
            )
        )
    functions = []
    for scope, values in totals.items():
        if scope.startswith("function:"):
            loads, compiles = int(values.get("loads", 0)), int(values.get("compiles", 0))
            functions.append(
                (
                    scope.split(":", 1)[1],
                    float(values.get("seconds saved", 0.0)),
                    f"({loads} loads, {compiles} compiles)",
                )
            )
    functions.sort(key=lambda row: -row[1])
    charts.append(_horizontal_bars(functions[:20], "compile time saved per function"))
    charts.append(
        _line_over_time([(bucket, float(size)) for bucket, _, size in sizes], "cache size", "bytes")
    )
    hits = sum(values.get("hits", 0) for s, values in totals.items() if s.startswith("tier:"))
    misses = sum(values.get("misses", 0) for s, values in totals.items() if s.startswith("tier:"))
    saved = float(totals.get("artifacts", {}).get("seconds saved", 0.0))
    lookups = hits + misses
    cards = [
        ("hit rate", f"{100 * hits / lookups:.1f} %" if lookups else "-"),
        ("hits", f"{hits:.0f}"),
        ("misses", f"{misses:.0f}"),
        ("compile time saved", f"{saved:.1f} s"),
        ("entries", f"{sizes[-1][1]}" if sizes else "-"),
        ("size", _human(float(sizes[-1][2]), "bytes") if sizes else "-"),
    ]
    card_html = "".join(
        f'<div class="card"><div class="value">{_esc(v)}</div><div class="name">{_esc(n)}</div>'
        "</div>"
        for n, v in cards
    )
    body = "".join(f"<section>{chart}</section>" for chart in charts)
    body += _bypasses(totals.get("bypass", {}))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>compilecache report</title>"
        f"<style>{STYLE}</style></head><body>"
        "<h1>compilecache report</h1>"
        f'<p class="sub">store {_esc(store)}, generated {_esc(time.ctime(now))}</p>'
        f'<div class="cards">{card_html}</div>{body}</body></html>\n'
    )
