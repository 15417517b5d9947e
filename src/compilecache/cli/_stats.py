"""``compilecache stats``: the persisted counters, per tier, with what the cache saved."""

from __future__ import annotations

from typing import Any

import click

from .._config import redact_url
from .._errors import CacheUsageError
from ._common import (
    emit_json,
    human_size,
    json_option,
    open_configured,
    untrusted_local,
    with_store_options,
)

TIER_COLUMNS = ("hits", "misses", "errors", "rejected", "corrupt", "writes")


def collect(config: Any, store: Any) -> dict[str, Any]:
    from ..stores._trust import trust_decisions
    from ..telemetry import CountersDB

    decisions = trust_decisions(config)
    # The counters live in the local directory: one that is not the user's is not read.
    db = CountersDB(config.dir) if decisions[0].trusted else None
    totals = db.totals() if db is not None else {}
    tiers = {
        scope.split(":", 1)[1]: values
        for scope, values in totals.items()
        if scope.startswith("tier:")
    }
    live = store.stats()
    sizes = {tier.name: (tier.entries, tier.size) for tier in (live.tiers or (live,))}
    functions = {
        scope.split(":", 1)[1]: {
            name: value if "seconds" in name else int(value) for name, value in values.items()
        }
        for scope, values in totals.items()
        if scope.startswith("function:")
    }
    artifacts = totals.get("artifacts", {})
    return {
        "store": str(config.dir),
        "remote": redact_url(config.remote) if config.remote else None,
        "trust": [decision.as_dict() for decision in decisions],
        "since": db.zeroed_at() if db is not None else None,
        "tiers": {
            name: {
                **{column: int(tiers.get(name, {}).get(column, 0)) for column in TIER_COLUMNS},
                "entries": sizes.get(name, (None, None))[0],
                "bytes": sizes.get(name, (None, None))[1],
            }
            for name in sorted(set(tiers) | set(sizes))
        },
        "artifacts": {
            name: artifacts[name] if name == "seconds saved" else int(artifacts[name])
            for name in sorted(artifacts)
        },
        "bypasses": {reason: int(n) for reason, n in totals.get("bypass", {}).items()},
        "compile_seconds_saved": float(artifacts.get("seconds saved", 0.0)),
        "functions": functions,
    }


@click.command()
@with_store_options
@json_option
@click.option("--zero", is_flag=True, help="Reset the counters (the entries stay).")
def stats(directory: str | None, remote: str | None, as_json: bool, zero: bool) -> None:
    """Hits, misses, errors and rejections per tier, bypasses by reason, entries, bytes, and
    the compile time the cache saved; counted across every process using the store."""
    config, store = open_configured(directory, remote)
    if zero:
        from ..telemetry import CountersDB

        why = untrusted_local(config)
        if why is not None:
            raise CacheUsageError(f"nothing zeroed: the {why}")
        CountersDB(config.dir).zero()
        if as_json:
            emit_json({"zeroed": True})
        else:
            click.echo("Statistics zeroed.")
        return
    report = collect(config, store)
    if as_json:
        emit_json(report)
        return
    show(report)


def show(report: dict[str, Any]) -> None:
    from rich.table import Table

    from ._common import console, human_age

    out = console()
    from rich.text import Text

    # Paths and URLs as text, not markup: a directory may be named "x[/b]".
    out.print(
        Text("compilecache", style="bold"),
        Text(
            f"store {report['store']}"
            + (f" + remote {report['remote']}" if report["remote"] else "")
        ),
    )
    for decision in report["trust"]:
        verdict = "trusted" if decision["trusted"] else "skipped"
        line = f"{decision['tier']} tier {decision['location']}: {verdict}: {decision['why']}"
        out.print(Text(line, style="" if decision["trusted"] else "yellow"))
    if report["since"]:
        out.print(f"counters since {human_age(report['since'])}")
    table = Table("tier", *TIER_COLUMNS, "hit rate", "entries", "size")
    for name, tier in report["tiers"].items():
        lookups = tier["hits"] + tier["misses"]
        rate = f"{100 * tier['hits'] / lookups:.1f} %" if lookups else "-"
        table.add_row(
            name,
            *(str(tier[c]) for c in TIER_COLUMNS),
            rate,
            "?" if tier["entries"] is None else str(tier["entries"]),
            human_size(tier["bytes"]),
        )
    out.print(table)
    artifacts = report["artifacts"]
    out.print(
        f"entries loaded {int(artifacts.get('loaded', 0))}, compiled and saved "
        f"{int(artifacts.get('saved', 0))}, unusable {int(artifacts.get('load failures', 0))}, "
        f"waits on other processes {int(artifacts.get('waited', 0))}"
    )
    out.print(f"compile time saved: [bold]{report['compile_seconds_saved']:.1f} s[/bold]")
    if report["bypasses"]:
        bypasses = Table("bypassed (not persisted)", "calls")
        for reason, count in sorted(report["bypasses"].items(), key=lambda item: -item[1]):
            bypasses.add_row(reason, str(count))
        out.print(bypasses)
