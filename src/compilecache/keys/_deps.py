"""What a function depends on, transitively, and a fingerprint of each dependency.

User code (files outside the standard library and site-packages) is fingerprinted by its code;
code installed as a package is covered by that package's version; the standard library by the
Python version. Global constants count by value. Anything else a function reaches (an object
instance in a global or a closure, a function with no code) cannot be fingerprinted: the walk
raises :class:`Unfingerprintable` naming it, and the call is not persisted.
"""

from __future__ import annotations

import builtins
import hashlib
import inspect
import os
import sys
import types
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ._canonical import Unfingerprintable, encode, qualified_name
from ._code import code_digest, code_loads

_CONSTANTS = (int, float, complex, str, bytes, bool, type(None), range)


@dataclass(frozen=True)
class Dependency:
    """One thing a function reaches: ``name`` (``module:qualname`` or ``package torch``), what
    it is (``kind``), where it lives (``origin``: a file, or a version), and its digest."""

    name: str
    kind: str
    origin: str
    digest: bytes


@lru_cache(maxsize=1)
def _library_roots() -> tuple[tuple[str, ...], tuple[str, ...]]:
    # Not sysconfig.get_paths(): it costs a millisecond, the whole budget of a first key.
    packages = {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    stdlib = {os.path.dirname(os.__file__)}
    return _clean(packages), _clean(stdlib)


def _clean(found: set[str]) -> tuple[str, ...]:
    return tuple(os.path.realpath(p) + os.sep for p in found if p)


@lru_cache(maxsize=4096)
def module_origin(module_name: str) -> tuple[str, str]:
    """("user", file) | ("package", "name version") | ("stdlib", python version)."""
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if module_name == "builtins":
        return "stdlib", sys.version.split()[0]
    if not file:
        if module_name == "__main__":
            return "user", "__main__"
        return "stdlib", sys.version.split()[0]
    real = os.path.realpath(file)
    packages, stdlib = _library_roots()
    if real.startswith(packages):
        top = module_name.split(".", maxsplit=1)[0]
        return "package", f"{top} {package_version(top)}"
    if real.startswith(stdlib):
        return "stdlib", sys.version.split()[0]
    return "user", real


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    import importlib.metadata  # costly to import: only when a package's version is needed

    return dict(importlib.metadata.packages_distributions())


@lru_cache(maxsize=1024)
def package_version(top_level: str) -> str:
    """The installed version of the distribution providing ``top_level`` ("unknown" if none)."""
    import importlib.metadata

    for distribution in _distributions().get(top_level, [top_level]):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    version = getattr(sys.modules.get(top_level), "__version__", None)
    return str(version) if version else "unknown"


class DependencyWalker:
    """Fingerprints a function and everything it reaches; one walker per key computation."""

    def __init__(self) -> None:
        self.found: dict[str, Dependency] = {}
        self._functions: dict[int, bytes] = {}

    def function_digest(self, fn: types.FunctionType) -> bytes:
        """The digest of ``fn``'s own code, defaults and closure values (its dependencies are
        recorded in :attr:`found` as a side effect)."""
        known = self._functions.get(id(fn))
        if known is not None:
            return known
        self._functions[id(fn)] = b"(in progress)"  # recursion (a function calling itself)
        fn = inspect.unwrap(fn)
        parts = [
            qualified_name(fn).encode(),
            code_digest(fn.__code__),
            self._encode(fn.__defaults__, f"a default of {fn.__qualname__}"),
            self._encode(fn.__kwdefaults__, f"a keyword default of {fn.__qualname__}"),
        ]
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
            try:
                contents = cell.cell_contents
            except ValueError:
                parts.append(b"empty")
                continue
            parts.append(self._encode(contents, f"closure value {name} of {fn.__qualname__}"))
        digest = hashlib.sha256(b"".join(parts)).digest()
        self._functions[id(fn)] = digest
        self.walk_globals(fn)
        return digest

    def walk_globals(self, fn: types.FunctionType) -> None:
        """Record every global ``fn`` loads (and ``module.attribute`` it reads)."""
        loads = code_loads(fn.__code__)
        namespace = fn.__globals__
        for name in loads.globals:
            if name in namespace:
                self.reached(f"global {name} of {fn.__module__}", namespace[name], name)
            elif not hasattr(builtins, name):
                raise Unfingerprintable(f"global {name} of {fn.__qualname__} is not defined")
        for base, attribute in loads.attributes:
            module: Any = namespace.get(base)
            user = (
                isinstance(module, types.ModuleType) and module_origin(module.__name__)[0] == "user"
            )
            if user and hasattr(module, attribute):
                self.reached(
                    f"{module.__name__}.{attribute}", getattr(module, attribute), attribute
                )

    def reached(self, where: str, value: Any, label: str) -> None:
        if _constant(value):
            # Containers of constants count by their contents now (a mutable dict or list of
            # settings included: the key is computed when the entry is compiled or looked up).
            self._add(f"{where}", "constant", repr(value)[:80], encode(value))
            return
        if isinstance(value, types.ModuleType):
            kind, origin = module_origin(value.__name__)
            if kind != "user":
                self._add(f"package {origin.split()[0]}", kind, origin, origin.encode())
            return
        wrapped = getattr(value, "__wrapped__", None)
        if isinstance(value, types.FunctionType) or isinstance(wrapped, types.FunctionType):
            chosen: Any = value if isinstance(value, types.FunctionType) else wrapped
            target: Any = inspect.unwrap(chosen)
            kind, origin = module_origin(target.__module__)
            if kind == "user":
                name = f"{target.__module__}:{target.__qualname__}"
                if name not in self.found:
                    self.found[name] = Dependency(name, "function", origin, b"")
                    digest = self.function_digest(target)
                    self.found[name] = Dependency(name, "function", origin, digest)
            else:
                self._add(f"package {origin.split()[0]}", kind, origin, origin.encode())
            return
        if isinstance(value, type):
            self._class(value)
            return
        module = getattr(value, "__module__", None)
        if isinstance(value, (types.BuiltinFunctionType, types.MethodType)) or (
            callable(value) and isinstance(module, str) and module_origin(module)[0] != "user"
        ):
            kind, origin = module_origin(module or "builtins")
            self._add(f"package {origin.split()[0]}", kind, origin, origin.encode())
            return
        raise Unfingerprintable(
            f"{where} is a {qualified_name(type(value))} object, which has no stable "
            "fingerprint: pass it as an argument, or make it a constant"
        )

    def _class(self, cls: type) -> None:
        kind, origin = module_origin(cls.__module__)
        if kind != "user":
            self._add(f"package {origin.split()[0]}", kind, origin, origin.encode())
            return
        name = f"{cls.__module__}:{cls.__qualname__}"
        if name in self.found:
            return
        self.found[name] = Dependency(name, "class", origin, b"")
        parts = [name.encode()]
        for base in cls.__bases__:
            if base is not object:
                self._class(base)
                parts.append(qualified_name(base).encode())
        for attribute, raw in sorted(vars(cls).items()):
            member = getattr(raw, "__func__", raw)  # staticmethod / classmethod
            if isinstance(member, property):
                member = member.fget
            if isinstance(member, types.FunctionType):
                parts.append(attribute.encode() + self.function_digest(member))
            elif type(member) in _CONSTANTS:
                parts.append(attribute.encode() + encode(member))
        self.found[name] = Dependency(
            name, "class", origin, hashlib.sha256(b"".join(parts)).digest()
        )

    def _add(self, name: str, kind: str, origin: str, body: bytes) -> None:
        if name not in self.found:
            self.found[name] = Dependency(name, kind, origin, hashlib.sha256(body).digest())

    def _encode(self, value: Any, where: str) -> bytes:
        try:
            return encode(value, self._encode_callable)
        except Unfingerprintable as error:
            raise Unfingerprintable(f"{where}: {error.reason}") from None

    def _encode_callable(self, value: Any) -> bytes:
        if isinstance(value, types.FunctionType):
            self.reached(value.__qualname__, value, value.__name__)
            return self.function_digest(value)
        return code_digest(value)


def _constant(value: Any) -> bool:
    kind = type(value)
    if kind in _CONSTANTS:
        return True
    if kind in (tuple, frozenset, list, set):
        return all(_constant(item) for item in value)
    if kind is dict:
        return all(_constant(k) and _constant(v) for k, v in value.items())
    return False
