"""``compilecache config``: the effective configuration and where each value came from."""

from __future__ import annotations

import os

import click

from .._config import config_file, redact_url
from ..stores._trust import trust_decisions
from ._common import configuration, console, emit_json, json_option, with_store_options


@click.command("config")
@with_store_options
@json_option
def config_command(directory: str | None, remote: str | None, as_json: bool) -> None:
    """Show every setting, its value and its source (default, environment, file, command line)."""
    config = configuration(directory, remote)
    values = {
        "COMPILECACHE_DIR": str(config.dir),
        "COMPILECACHE_MAX_SIZE": config.max_size,
        "COMPILECACHE_REMOTE": redact_url(config.remote) if config.remote else None,
        "COMPILECACHE_REMOTE_UNSIGNED": config.remote_unsigned,
        "COMPILECACHE_REMOTE_READ_ONLY": config.remote_read_only,
        "COMPILECACHE_LOCK_TTL": config.lock_ttl,
        "COMPILECACHE_LOCK_TIMEOUT": config.lock_timeout,
        "COMPILECACHE_SECRET": "(set)" if config.secret else None,
        "COMPILECACHE_SECRET_PREVIOUS": "(set)" if config.secret_previous else None,
        "COMPILECACHE_DISABLE": config.disable,
        "COMPILECACHE_SALT": config.salt,
        "COMPILECACHE_LOGS": os.environ.get("COMPILECACHE_LOGS"),
    }
    sources = dict(config.sources)
    sources["COMPILECACHE_LOGS"] = "environment" if values["COMPILECACHE_LOGS"] else "default"
    path = config_file(os.environ)
    decisions = trust_decisions(config)
    if as_json:
        emit_json(
            {
                "file": str(path) if path else None,
                "trust": [decision.as_dict() for decision in decisions],
                "settings": {
                    name: {"value": value, "source": sources.get(name, "default")}
                    for name, value in values.items()
                },
            }
        )
        return
    from rich.table import Table

    table = Table("setting", "value", "source")
    for name, value in values.items():
        table.add_row(name, "-" if value is None else str(value), sources.get(name, "default"))
    out = console()
    out.print(table)
    out.print(f"configuration file: {path if path else 'none'}")
    for decision in decisions:
        out.print(str(decision), markup=False)
