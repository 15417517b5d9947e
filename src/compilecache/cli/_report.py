"""``compilecache report --html PATH``: the persisted counters as a page to look at."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from .._errors import CacheUsageError
from ._common import configuration, untrusted_local, with_store_options


@click.command()
@with_store_options
@click.option(
    "--html",
    "html_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the self-contained HTML page.",
)
def report(directory: str | None, remote: str | None, html_path: str) -> None:
    """Write a self-contained HTML page charting hits and misses per tier over time, compile
    time saved per function, and the cache's size over time."""
    from ..telemetry import CountersDB
    from ..telemetry._html_report import render

    config = configuration(directory, remote)
    why = untrusted_local(config)
    if why is not None:
        raise CacheUsageError(f"no report: the {why}")
    page = render(CountersDB(config.dir), store=str(config.dir))
    target = Path(html_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(page)
    os.replace(temp, target)
    click.echo(f"wrote {target} ({len(page)} bytes)")
