"""The ``compilecache`` command. Each subcommand lives in its own module; see docs/cli.md."""

from __future__ import annotations

from ._main import main as main

__all__ = ["main"]
