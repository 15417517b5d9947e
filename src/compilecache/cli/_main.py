"""The command group: one clear line per error, distinct exit codes, ``--debug`` for tracebacks."""

from __future__ import annotations

import sys
from typing import Any

import click

from .._errors import BackendError, CacheUsageError
from .._runtime import reset_runtime
from ._exit_codes import EXIT_BACKEND, EXIT_USAGE, EXIT_VERIFY

__all__ = ["EXIT_BACKEND", "EXIT_USAGE", "EXIT_VERIFY", "main"]


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return self._invoke(ctx)
        finally:
            # The command's configuration (its --dir and --remote) ends with it: a call from
            # Python (a notebook, tests) must not leave later compiles using it.
            reset_runtime()

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as error:
            if ctx.params.get("debug"):
                raise
            # Usage errors (bad options, configuration, bundles, keys) exit 2, like click's own;
            # everything else is a failure of a store or a compiler: 3.
            code = EXIT_USAGE if isinstance(error, (CacheUsageError, ValueError)) else EXIT_BACKEND
            if isinstance(error, BackendError):
                code = EXIT_BACKEND
            message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            click.echo(f"compilecache: error: {message}", err=True)
            sys.exit(code)


@click.group(cls=Group)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="compilecache")
def main(debug: bool) -> None:
    """See into compilecache's caches, and run the demo."""
    # A command reads the configuration as a fresh process would (an invocation from Python,
    # as in tests or a notebook, must not reuse the previous one's).
    reset_runtime()


def _register() -> None:
    from ._bundles import export_command, import_command
    from ._config_cmd import config_command
    from ._demo import demo
    from ._entries import ls, show
    from ._explain_cmd import explain
    from ._maintenance import clear, prune, verify
    from ._report import report
    from ._stats import stats

    for command in (
        stats,
        ls,
        show,
        explain,
        verify,
        prune,
        clear,
        export_command,
        import_command,
        config_command,
        report,
        demo,
    ):
        main.add_command(command)


_register()
