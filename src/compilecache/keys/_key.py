"""Cache keys: named components, each hashed from a canonical encoding, each digest kept.

A key is the SHA-256 of its components' names and digests. Keeping every component (with a
summary a person can read) is what lets a miss be explained: two keys of one function differ in
named components ("dependencies: helper models.layers:attention changed"), not just in a hash.
Each component's digest is logged on ``compilecache.keys`` at DEBUG, so two runs can be diffed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import types
from dataclasses import dataclass, field
from typing import Any

from ._canonical import Unfingerprintable, encode, qualified_name
from ._deps import DependencyWalker, package_version

logger = logging.getLogger("compilecache.keys")

#: Bump when the key recipe or the entry format changes: old entries then simply miss.
FORMAT_VERSION = 3  # 2: objects keyed as data, model attributes by their paths; 3: dense
# layouts guarded in their dimension order


@dataclass(frozen=True)
class Component:
    """One named input of a key: its digest (hex) and a JSON-ready summary for explanations."""

    name: str
    digest: str
    summary: Any = field(compare=False)


@dataclass(frozen=True)
class CacheKey:
    """The components of a key, in a fixed order; ``digest`` is the key itself (hex)."""

    components: tuple[Component, ...]

    @property
    def digest(self) -> str:
        lines = "".join(f"{c.name}={c.digest}\n" for c in self.components)
        return hashlib.sha256(lines.encode()).hexdigest()

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)

    def as_json(self) -> dict[str, Any]:
        return {c.name: {"digest": c.digest, "summary": c.summary} for c in self.components}


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def function_component(fn: types.FunctionType, walker: DependencyWalker) -> Component:
    digest = walker.function_digest(fn).hex()
    return Component(
        "function",
        digest,
        {"name": qualified_name(fn), "file": fn.__code__.co_filename},
    )


def dependencies_component(walker: DependencyWalker) -> Component:
    found = sorted(walker.found.values(), key=lambda dep: dep.name)
    body = b"".join(dep.name.encode() + b"\0" + dep.digest for dep in found)
    summary = {
        dep.name: {"kind": dep.kind, "origin": dep.origin, "digest": dep.digest.hex()[:16]}
        for dep in found
    }
    return Component("dependencies", _digest(body), summary)


def backend_component(backend: Any, name: str) -> Component:
    version = getattr(backend, "version", None)
    options = getattr(backend, "options", None)
    try:
        body = encode((name, version, options))
    except Unfingerprintable as error:
        raise Unfingerprintable(f"backend {name} options: {error.reason}") from None
    return Component(
        "backend",
        _digest(body),
        {
            "name": name,
            "version": None if version is None else str(version),
            "options": repr(options),
        },
    )


def _implementation() -> str:
    name = sys.implementation.name
    return {"cpython": "CPython", "pypy": "PyPy"}.get(name, name)


def _platform() -> str:
    # os.uname, not the platform module: importing it costs milliseconds on the first miss.
    uname = getattr(os, "uname", None)
    if uname is not None:
        info = uname()
        return f"{info.sysname} {info.machine}"
    import platform

    return f"{platform.system()} {platform.machine()}"


def environment_component(backend: Any) -> Component:
    packages = {name: package_version(name) for name in getattr(backend, "packages", ())}
    summary = {
        "compilecache format": FORMAT_VERSION,
        "python": f"{_implementation()} {sys.version.split()[0]}",
        "platform": _platform(),
        "packages": packages,
    }
    return Component("environment", _digest(json.dumps(summary, sort_keys=True).encode()), summary)


def inputs_component(guards_data: list[dict[str, Any]], described: list[str]) -> Component:
    """The static part of the guards (their stored form, globals and cells aside: those are the
    function's dependencies), as a set: the guards' order follows the call's keyword
    arguments, which a call may pass in any order (``f(x, a=3, b=4)``, ``f(x, b=4, a=3)``)."""
    own = sorted(
        json.dumps(g, sort_keys=True, separators=(",", ":"))
        for g in guards_data
        if g["path"][0][0] not in ("global", "cell")
    )
    body = json.dumps(own, separators=(",", ":")).encode()
    return Component("inputs", _digest(body), described)


def salt_component(salt: str | None, key_extra: Any) -> Component:
    try:
        body = encode((salt, key_extra))
    except Unfingerprintable as error:
        raise Unfingerprintable(f"key_extra: {error.reason}") from None
    return Component(
        "salt", _digest(body), {"COMPILECACHE_SALT": salt is not None, "key_extra": repr(key_extra)}
    )


def build_key(
    fn: types.FunctionType,
    *,
    guards_data: list[dict[str, Any]],
    described: list[str],
    backend: Any,
    backend_name: str,
    salt: str | None,
    key_extra: Any = None,
    reached: list[tuple[str, Any]] | None = None,
) -> CacheKey:
    """The key of compiling ``fn`` for a call whose guards are ``guards_data`` (stored form).

    Raises :class:`Unfingerprintable` when something the compiled code may depend on cannot be
    fingerprinted stably (the call is then not persisted).
    """
    walker = DependencyWalker()
    function = function_component(fn, walker)
    # Code that reaches the function through its arguments (a function, class or module passed
    # in, the class of a dataclass argument) is a dependency as much as a global is.
    for where, value in reached or ():
        walker.reached(where, value, where)
    components = (
        function,
        dependencies_component(walker),
        inputs_component(guards_data, described),
        backend_component(backend, backend_name),
        environment_component(backend),
        salt_component(salt, key_extra),
    )
    key = CacheKey(components)
    if logger.isEnabledFor(logging.DEBUG):
        for component in components:
            logger.debug("key of %s: %s %s", fn.__qualname__, component.name, component.digest)
    return key
