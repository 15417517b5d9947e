"""The command group: one clear line per error, distinct exit codes, ``--debug`` for tracebacks."""

from __future__ import annotations

import sys
from typing import Any

import click

from .._errors import BackendError, CacheUsageError

#: Exit codes: usage errors (bad options, bad configuration), backend failures (a store or a
#: compiler failed), verification failures (``verify`` found bad entries).
EXIT_USAGE = 2
EXIT_BACKEND = 3
EXIT_VERIFY = 4


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as error:
            if ctx.params.get("debug"):
                raise
            code = EXIT_USAGE if isinstance(error, CacheUsageError) else EXIT_BACKEND
            if isinstance(error, BackendError):
                code = EXIT_BACKEND
            click.echo(f"compilecache: error: {error}", err=True)
            sys.exit(code)


@click.group(cls=Group)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="compilecache")
def main(debug: bool) -> None:
    """See into compilecache's caches, and run the demo."""


def _register() -> None:
    from ._demo import demo

    main.add_command(demo)


_register()
