"""``explain``: why a call would miss the store, in words, against the nearest stored entries.

The report lists this call's key components and, for the stored entries of the same function
(kept in a per-function index in the store), the components that differ, described in plain
words ("dependency helpers:scale changed (in /src/helpers.py)", "python CPython 3.11.7 ->
CPython 3.12.1", "input x: numpy float64 shape (3,) -> numpy float32 shape (3,)").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..keys import CacheKey


@dataclass
class StoredMatch:
    """A stored entry of the function and how its key differs from the call's."""

    key: str
    created: float
    differences: list[str]


@dataclass
class Explanation:
    """The report of :func:`explain`; ``str()`` prints it, the fields are its data."""

    function: str
    key: str | None
    components: dict[str, Any]
    bypass: str | None = None
    stored: list[StoredMatch] = field(default_factory=list)
    persistable: bool = True
    skipped_tiers: list[str] = field(default_factory=list)

    @property
    def hit(self) -> bool:
        return any(not match.differences for match in self.stored)

    def __str__(self) -> str:
        lines = [f"compilecache explain: {self.function}"]
        lines.extend(f"  not read: the {tier}" for tier in self.skipped_tiers)
        if not self.persistable:
            lines.append("  its backend cannot persist artifacts (no dumps/loads): nothing stored")
            return "\n".join(lines)
        if self.bypass:
            lines.append(f"  not persisted: {self.bypass}")
            return "\n".join(lines)
        lines.append(f"  key {self.key}")
        for name, component in self.components.items():
            lines.append(f"    {name:13s} {component['digest'][:16]}")
        if not self.stored:
            lines.append("  no entry of this function is stored: a miss (first compile)")
        for match in self.stored[:3]:
            if not match.differences:
                lines.append(f"  stored entry {match.key[:16]}: the same key, a hit")
                continue
            lines.append(f"  stored entry {match.key[:16]} differs in:")
            lines.extend(f"    - {difference}" for difference in match.differences)
        return "\n".join(lines)


def explain_against_index(key: CacheKey, index: dict[str, Any]) -> list[StoredMatch]:
    """The stored entries of ``index``, nearest first (fewest differing components)."""
    matches = []
    entries = index.get("entries")
    for stored_key, record in (entries if isinstance(entries, dict) else {}).items():
        # The index is a hint any writer of the store may have damaged: skip what is malformed.
        try:
            components = record["components"]
            if not isinstance(components, dict) or not all(
                isinstance(c, dict) for c in components.values()
            ):
                continue
            created = float(record.get("created", 0))
            matches.append(StoredMatch(str(stored_key), created, differences(key, components)))
        except (TypeError, ValueError, KeyError, AttributeError):
            continue
    matches.sort(key=lambda match: (len(match.differences), -match.created))
    return matches


def differences(key: CacheKey, stored: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for component in key.components:
        old = stored.get(component.name)
        if old is None:
            found.append(f"{component.name}: not recorded for the stored entry")
            continue
        if old.get("digest") == component.digest:
            continue
        describe = _DESCRIBERS.get(component.name, _generic)
        found.extend(describe(component.name, old.get("summary"), component.summary))
    return found


def _generic(name: str, old: Any, new: Any) -> list[str]:
    return [f"{name} changed"]


def _function(name: str, old: Any, new: Any) -> list[str]:
    where = new.get("name") if isinstance(new, dict) else "the function"
    return [f"{where}: its code, defaults or closure values changed"]


def _dependencies(name: str, old: Any, new: Any) -> list[str]:
    old, new = old or {}, new or {}
    found = []
    for dep in sorted(set(old) | set(new)):
        before, after = old.get(dep), new.get(dep)
        if before == after:
            continue
        if before is None:
            found.append(f"new dependency {dep} ({after.get('origin')})")
        elif after is None:
            found.append(f"dependency {dep} is no longer used")
        elif before.get("origin") != after.get("origin") and after.get("kind") in (
            "package",
            "stdlib",
        ):
            found.append(f"{dep}: {before.get('origin')} -> {after.get('origin')}")
        elif after.get("kind") == "constant":
            found.append(f"{dep} changed value: {before.get('origin')} -> {after.get('origin')}")
        else:
            found.append(
                f"{after.get('kind', 'dependency')} {dep} changed (in {after.get('origin')})"
            )
    return found or ["dependencies changed"]


def _inputs(name: str, old: Any, new: Any) -> list[str]:
    def by_place(lines: Any) -> dict[str, str]:
        return {line.split(":")[0].split(" = ")[0]: line for line in lines or []}

    before, after = by_place(old), by_place(new)
    found = []
    for place in sorted(set(before) | set(after)):
        if before.get(place) != after.get(place):
            found.append(f"input {before.get(place, '(absent)')} -> {after.get(place, '(absent)')}")
    return found or ["the inputs' guards changed"]


def _mapping(name: str, old: Any, new: Any) -> list[str]:
    old, new = old or {}, new or {}
    found = []
    for field_name in sorted(set(old) | set(new)):
        if old.get(field_name) != new.get(field_name):
            before = json.dumps(old.get(field_name), sort_keys=True)
            after = json.dumps(new.get(field_name), sort_keys=True)
            found.append(f"{name} {field_name}: {before} -> {after}")
    return found or [f"{name} changed"]


Describer = Callable[[str, Any, Any], list[str]]


def _salt(name: str, old: Any, new: Any) -> list[str]:
    return ["COMPILECACHE_SALT or key_extra changed"]


_DESCRIBERS: dict[str, Describer] = {
    "function": _function,
    "dependencies": _dependencies,
    "inputs": _inputs,
    "backend": _mapping,
    "environment": _mapping,
    "salt": _salt,
}


def explain(fn: Any, *args: Any, **kwargs: Any) -> Explanation:
    """Explain whether ``fn(*args, **kwargs)`` (``fn`` a jit function) would find its compiled
    entry in the store, and if not, what differs from the entries stored for ``fn``.

    >>> report = explain(step, x)   # doctest: +SKIP
    >>> print(report)               # or report.stored[0].differences
    """
    from ..dispatch._jit import _dispatcher_of
    from ._default import ConfiguredHooks
    from ._function_index import read_index
    from ._persistence import ArtifactHooks, persistable
    from ._request_state import state_of

    dispatcher = _dispatcher_of(fn)
    name = f"{dispatcher.fn.__module__}:{dispatcher.fn.__qualname__}"
    if not persistable(dispatcher.identity):
        return Explanation(name, None, {}, persistable=False)
    hooks = dispatcher.hooks
    if isinstance(hooks, ConfiguredHooks):
        hooks = hooks.hooks()
    if not isinstance(hooks, ArtifactHooks):
        return Explanation(name, None, {}, bypass="this function has no store configured")
    request = dispatcher.request_for(args, kwargs)
    key = hooks.key_of(request, count=False)
    if key is None:
        reason = state_of(request).bypass or "not keyable"
        return Explanation(name, None, {}, bypass=reason)
    from ..stores import skipped_tiers

    stored = explain_against_index(key, read_index(hooks.store, dispatcher.fn))
    skipped = [str(decision) for decision in skipped_tiers()]
    return Explanation(name, key.digest, key.as_json(), stored=stored, skipped_tiers=skipped)
