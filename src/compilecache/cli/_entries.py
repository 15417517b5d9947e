"""``compilecache ls`` and ``compilecache show``: the stored entries, one line each or one in
full."""

from __future__ import annotations

import time
from typing import Any

import click

from .._errors import CacheUsageError
from ._common import (
    console,
    emit_json,
    human_age,
    human_size,
    json_option,
    open_configured,
    untrusted_local,
    with_store_options,
)

SORTS = {
    "used": lambda e: -(e.last_used or 0.0),
    "age": lambda e: e.created or 0.0,
    "size": lambda e: -e.size,
    "hits": lambda e: -e.loads,
    "function": lambda e: (e.function, -(e.last_used or 0.0)),
    "compile": lambda e: -e.compile_seconds,
}


def _loads(config: Any) -> dict[str, tuple[int, float]]:
    from ..telemetry import CountersDB

    if untrusted_local(config) is not None:
        return {}  # the counters of a directory that is not the user's alone are not read
    return CountersDB(config.dir).entry_loads()


@click.command("ls")
@with_store_options
@json_option
@click.option(
    "--function",
    "function",
    default=None,
    help="Only entries of functions whose module:qualname contains this text.",
)
@click.option("--backend", default=None, help="Only entries of this backend.")
@click.option(
    "--sort",
    type=click.Choice(sorted(SORTS)),
    default="used",
    show_default=True,
    help="Order: most recently used, oldest, largest, most loaded, by function, "
    "slowest to compile.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most N.")
def ls(
    *,
    directory: str | None,
    remote: str | None,
    as_json: bool,
    function: str | None,
    backend: str | None,
    sort: str,
    limit: int | None,
) -> None:
    """List stored entries: function, backend, size, age, last use, loads (hits)."""
    from ..artifacts._inventory import stored_entries

    config, store = open_configured(directory, remote)
    entries = stored_entries(store, _loads(config))
    if function:
        entries = [e for e in entries if function in e.function]
    if backend:
        entries = [e for e in entries if e.backend == backend]
    entries.sort(key=SORTS[sort])
    if limit is not None:
        entries = entries[:limit]
    if as_json:
        emit_json([e.as_json() for e in entries])
        return
    from rich.table import Table

    now = time.time()
    table = Table("key", "function", "backend", "size", "created", "last used", "loads", "compile")
    for e in entries:
        table.add_row(
            e.key[:12],
            e.function if e.manifest else f"[red]{e.problem}[/red]",
            e.backend,
            human_size(e.size),
            human_age(e.created, now),
            human_age(e.last_used, now),
            str(e.loads),
            f"{e.compile_seconds:.2f} s",
        )
    out = console()
    out.print(table)
    out.print(f"{len(entries)} entries, {human_size(sum(e.size for e in entries))}")


@click.command()
@with_store_options
@json_option
@click.argument("key")
def show(directory: str | None, remote: str | None, as_json: bool, key: str) -> None:
    """Show one entry (KEY, or a unique prefix of it): its manifest, the components of its
    key with their digests, and its guards in words."""
    from ..artifacts._guard_format import describe_stored_guard
    from ..artifacts._inventory import read_entry, resolve_key

    _, store = open_configured(directory, remote)
    digest = resolve_key(store, key)
    entry = read_entry(store, digest)
    if entry.manifest is None:
        raise CacheUsageError(
            f"entry {digest[:16]} is unusable: {entry.problem} (`compilecache verify` "
            "quarantines it)"
        )
    manifest = entry.manifest
    guards = [describe_stored_guard(g) for g in manifest.guards]
    if as_json:
        emit_json({**manifest.__dict__, "guards_in_words": guards})
        return
    from rich.table import Table

    out = console()
    out.print(f"[bold]{manifest.key}[/bold]")
    out.print(f"function   {manifest.function}")
    out.print(f"backend    {manifest.backend}")
    out.print(f"created    {time.ctime(manifest.created)} ({human_age(manifest.created)})")
    out.print(f"compiled   in {manifest.compile_seconds:.3f} s")
    out.print(f"artifact   {human_size(manifest.artifact_size)}, sha256 {manifest.artifact_sha256}")
    out.print("specialized for:")
    for line in manifest.spec:
        out.print(f"  {line}")
    components = Table("component", "digest", "summary", title="key components")
    for name, component in manifest.components.items():
        components.add_row(name, str(component.get("digest", ""))[:16], _summary(component))
    out.print(components)
    out.print(f"guards ({len(guards)}):")
    for line in guards:
        out.print(f"  {line}")


def _summary(component: dict[str, Any]) -> str:
    summary = component.get("summary")
    if isinstance(summary, dict):
        text = ", ".join(f"{k}: {v}" for k, v in summary.items())
    elif isinstance(summary, list):
        text = "; ".join(map(str, summary))
    else:
        text = str(summary)
    return text if len(text) <= 160 else text[:157] + "..."
