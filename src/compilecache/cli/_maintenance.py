"""``compilecache verify``, ``prune`` and ``clear``."""

from __future__ import annotations

import sys

import click

from .._errors import CacheUsageError
from ._common import (
    console,
    emit_json,
    human_size,
    json_option,
    open_configured,
    parse_age,
    progress_bar,
    size_option,
    untrusted_local,
    with_store_options,
)
from ._exit_codes import EXIT_VERIFY


@click.command()
@with_store_options
@json_option
@click.option("--no-quarantine", is_flag=True, help="Report bad entries; move nothing.")
def verify(directory: str | None, remote: str | None, as_json: bool, no_quarantine: bool) -> None:
    """Check every entry's frame, checksum and signature, and each manifest against its
    artifact; move bad entries to the store's quarantine/ directory. Exits with status 4 when
    something was wrong."""
    from ..artifacts._verify import quarantine_dir, verify_store

    _, store = open_configured(directory, remote)
    with progress_bar("verifying", not as_json) as update:
        report = verify_store(store, quarantine=not no_quarantine, progress=update)
    if as_json:
        emit_json(report.as_json())
    else:
        out = console()
        out.print(
            f"checked {report.checked} values: {report.ok} good, {len(report.corrupt)} corrupt "
            f"or truncated, {len(report.rejected)} rejected (signature), "
            f"{len(report.inconsistent)} inconsistent (manifest and artifact)"
        )
        for label, found in (
            ("corrupt", report.corrupt),
            ("rejected", report.rejected),
            ("inconsistent", report.inconsistent),
        ):
            for key, reason in found:
                out.print(f"  [red]{label}[/red] {key}: {reason}")
        for damage in report.index_damage:
            lost = damage.get("lost")
            out.print(
                "  [red]index damaged[/red]: the index was set aside as "
                f"{damage.get('aside')} ({damage.get('error')}); {damage.get('adopted')} entries "
                "re-adopted from their payload files, "
                + ("an unknown number" if lost is None else str(lost))
                + " lost"
            )
        if report.secret_suspect:
            out.print(
                "[yellow]every signed value failed its signature check: is COMPILECACHE_SECRET "
                "the secret that wrote them? Nothing was quarantined for its signature.[/yellow]"
            )
        if report.bad and not report.quarantined and report.read_only:
            out.print("[yellow]the local store is read-only: nothing was quarantined[/yellow]")
        if report.quarantined:
            out.print(f"quarantined {len(report.quarantined)} values in {quarantine_dir(store)}")
    if report.bad:
        sys.exit(EXIT_VERIFY)


@click.command()
@with_store_options
@json_option
@click.option(
    "--max-size",
    default=None,
    help="Remove least recently used entries until the rest fit, e.g. 2GiB.",
)
@click.option("--older-than", default=None, help="Remove entries unused for this long, e.g. 7d.")
@click.option(
    "--function",
    default=None,
    help="Remove the entries of this function (module:qualname or qualname).",
)
def prune(
    *,
    directory: str | None,
    remote: str | None,
    as_json: bool,
    max_size: str | None,
    older_than: str | None,
    function: str | None,
) -> None:
    """Remove entries from the local store by size, age or function (and artifacts left
    without a manifest). Entries being read are never cut short; a remote tier is left alone
    (other machines share it)."""
    from ..artifacts._inventory import prune as prune_entries

    if max_size is None and older_than is None and function is None:
        raise click.UsageError("give --max-size, --older-than or --function (or use clear)")
    limit = size_option(max_size)
    age = parse_age(older_than) if older_than is not None else None
    _, store = open_configured(directory, remote)
    with progress_bar("pruning", not as_json) as update:
        report = prune_entries(
            store, max_size=limit, older_than=age, function=function, progress=update
        )
    if as_json:
        emit_json(report.__dict__)
        return
    orphans = f" and {report.orphans} artifacts left without a manifest" if report.orphans else ""
    console().print(
        f"removed {report.removed} entries{orphans} ({human_size(report.freed)}); "
        f"{report.kept} remain ({human_size(report.size_after)} in the local store)"
    )


@click.command()
@with_store_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def clear(directory: str | None, remote: str | None, yes: bool) -> None:
    """Remove every entry of the local store (the counters stay; `stats --zero` resets them).
    A remote tier is left alone: other machines share it."""
    config, store = open_configured(directory, remote)
    local = store.maintenance()
    if local is None:
        why = untrusted_local(config)
        raise CacheUsageError(why or "this store has no local disk store to clear")
    if not local.writable:
        raise CacheUsageError(f"the local store in {local.root} is read-only: nothing cleared")
    count = local.stats().entries
    if not yes:
        click.confirm(f"Remove all {count} values from {config.dir}?", abort=True)
    removed = local.clear()
    click.echo(f"removed {removed} values from {config.dir}")
