"""``compilecache export`` and ``compilecache import``: bundles, to carry a warm cache."""

from __future__ import annotations

import click

from ._common import (
    console,
    emit_json,
    human_size,
    json_option,
    open_configured,
    progress_bar,
    with_store_options,
)


@click.command("export")
@with_store_options
@json_option
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
@click.option(
    "--function",
    "functions",
    multiple=True,
    help="Only this function's entries (module:qualname; repeatable).",
)
def export_command(
    directory: str | None, remote: str | None, as_json: bool, path: str, functions: tuple[str, ...]
) -> None:
    """Write the store's entries into a bundle file at PATH (signed when COMPILECACHE_SECRET
    is set)."""
    from ..artifacts import export_bundle

    config, store = open_configured(directory, remote)
    with progress_bar("exporting", not as_json) as update:
        report = export_bundle(
            path,
            store=store,
            functions=list(functions) or None,
            secret=config.secret,
            progress=update,
        )
    if as_json:
        emit_json({"path": report.path, "exported": report.exported, "bytes": report.bytes})
        return
    console().print(
        f"exported {len(report.exported)} entries to {report.path} ({human_size(report.bytes)})"
    )


@click.command("import")
@with_store_options
@json_option
@click.argument("path", type=click.Path(dir_okay=False))
def import_command(directory: str | None, remote: str | None, as_json: bool, path: str) -> None:
    """Import the bundle at PATH. Everything is checked before anything is written: a bad
    bundle imports nothing and exits with status 2."""
    from ..artifacts import import_bundle

    config, store = open_configured(directory, remote)
    with progress_bar("importing", not as_json) as update:
        report = import_bundle(
            path,
            store=store,
            secret=config.secret,
            previous_secret=config.secret_previous,
            progress=update,
        )
    store.flush(60.0)  # a remote tier's writes are queued: finish them before the process ends
    if as_json:
        emit_json(
            {
                "path": report.path,
                "imported": report.imported,
                "skipped": [{"key": k, "reason": r} for k, r in report.skipped],
            }
        )
        return
    out = console()
    out.print(f"imported {len(report.imported)} entries, skipped {len(report.skipped)}")
    reasons: dict[str, int] = {}
    for _, reason in report.skipped:
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        out.print(f"  skipped {count}: {reason}")
