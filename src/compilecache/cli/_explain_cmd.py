"""``compilecache explain``: why a function's key changed between runs, or how two stored
keys differ, in plain words."""

from __future__ import annotations

from typing import Any

import click

from .._errors import CacheUsageError
from ._common import console, emit_json, json_option, open_configured, with_store_options


def _as_key(components: dict[str, Any]) -> Any:
    from ..keys import CacheKey, Component

    return CacheKey(
        tuple(
            Component(name, str(c.get("digest")), c.get("summary"))
            for name, c in components.items()
        )
    )


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The differences of key components ``new`` from ``old``, in words."""
    from ..artifacts._explain import differences

    return differences(_as_key(new), old)


def _components_of(store: Any, prefix: str) -> tuple[str, dict[str, Any]]:
    from ..artifacts._inventory import read_entry, resolve_key

    digest = resolve_key(store, prefix)
    entry = read_entry(store, digest)
    if entry.manifest is None:
        raise CacheUsageError(f"entry {digest[:16]} is unusable: {entry.problem}")
    return digest, entry.manifest.components


Recorded = tuple[str, float, dict[str, Any], str | None]  # key, created, components, run


def _function_keys(store: Any, function: str) -> list[Recorded]:
    from ..artifacts._inventory import function_indexes

    recorded = []
    for index in function_indexes(store, function):
        for digest, record in index["entries"].items():
            if isinstance(record, dict) and isinstance(record.get("components"), dict):
                run = record.get("run")
                recorded.append(
                    (
                        digest,
                        float(record.get("created", 0)),
                        record["components"],
                        run if isinstance(run, str) else None,
                    )
                )
    recorded.sort(key=lambda item: item[1])
    return recorded


def previous_of(recorded: list[Recorded]) -> Recorded | None:
    """What the newest key is best compared with: among the keys of the run before the
    newest one's (not its siblings: a run compiling two shapes stores two keys), the nearest
    (fewest differing components). Without run ids (older entries), the nearest earlier key."""
    newest = recorded[-1]
    earlier = [r for r in recorded[:-1] if newest[3] is None or r[3] != newest[3]]
    if not earlier:
        return None
    last_run = earlier[-1][3]
    if last_run is not None:
        earlier = [r for r in earlier if r[3] == last_run]
    return min(reversed(earlier), key=lambda r: len(compare(r[2], newest[2])))


@click.command()
@with_store_options
@json_option
@click.argument("target")
@click.argument("other", required=False)
def explain(
    directory: str | None, remote: str | None, as_json: bool, target: str, other: str | None
) -> None:
    """Explain a key change.

    \b
    compilecache explain MODULE:QUALNAME   the function's last stored key against the nearest
                                           key of the previous run that compiled it
    compilecache explain KEY1 KEY2         two stored keys (or unique prefixes)
    """
    _, store = open_configured(directory, remote)
    if other is not None:
        old_key, old = _components_of(store, target)
        new_key, new = _components_of(store, other)
        title = f"{new_key[:12]} against {old_key[:12]}"
    elif ":" in target:
        recorded = _function_keys(store, target)
        if not recorded:
            raise CacheUsageError(
                f"no stored entries are recorded for {target}: give module:qualname as "
                "`compilecache ls` shows it"
            )
        previous = previous_of(recorded)
        if previous is None:
            only = recorded[-1][0]
            if as_json:
                emit_json({"function": target, "keys": [only], "differences": []})
            else:
                click.echo(
                    f"{target}: every recorded key ({len(recorded)}) comes from one run: "
                    "nothing to compare across runs"
                )
            return
        old_key, _, old, _ = previous
        new_key, _, new, _ = recorded[-1]
        title = f"{target}: latest key {new_key[:12]} against the previous run's {old_key[:12]}"
    else:
        raise click.UsageError("give MODULE:QUALNAME, or two keys")
    found = compare(old, new)
    if as_json:
        emit_json({"old": old_key, "new": new_key, "differences": found})
        return
    out = console()
    out.print(f"[bold]{title}[/bold]")
    if not found:
        out.print("  the keys have the same components")
    for line in found:
        out.print(f"  - {line}")
