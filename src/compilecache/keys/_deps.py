"""What a function depends on, transitively, and a fingerprint of each dependency.

User code (files outside the standard library and site-packages) is fingerprinted by its code;
code installed as a package is covered by that package's version; the standard library by the
Python version. Global constants count by value. Anything else a function reaches (an object
instance in a global or a closure, a function with no code) cannot be fingerprinted: the walk
raises :class:`Unfingerprintable` naming it, and the call is not persisted.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import os
import sys
import types
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ._canonical import Unfingerprintable, encode, qualified_name
from ._code import code_digest, code_loads
from ._fingerprints import fingerprint_for
from ._objects import is_data_like, object_state, reader_for

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
    """The version of the installed package ``top_level`` ("unknown" if none can be found).

    Its ``__version__`` when it is imported and has one, else the version of the distribution
    of the same name, else of the distribution providing it. In that order because the last
    scans every installed distribution (0.1 to 0.2 s with torch installed), which a warm start
    cannot afford.
    """
    import importlib.metadata  # costly to import: only when a package's version is needed

    version = getattr(sys.modules.get(top_level), "__version__", None)
    if isinstance(version, str) and version:
        return version
    for distribution in (top_level, *_distributions().get(top_level, ())):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


class DependencyWalker:
    """Fingerprints a function and everything it reaches; one walker per key computation.

    Dependencies are recorded per object, not per name: two closures made by one factory, or
    two lambdas, share a qualified name but each is fingerprinted (the second as ``name#2``,
    in walk order, which is deterministic).
    """

    def __init__(self) -> None:
        self.found: dict[str, Dependency] = {}
        self._functions: dict[int, bytes] = {}
        self._objects: dict[int, str] = {}  # id of a walked object -> the name it got
        self._keep: list[Any] = []  # keeps walked objects alive, so their ids stay theirs
        self._where = "a value"  # what is being encoded, for naming fingerprinted objects
        # (id(owner), field) pairs left out of the key: the user vouches they cannot change
        # the compiled code (``key_ignore``); their owners are kept alive in _keep.
        self.ignored: set[tuple[int, str]] = set()

    def _name_for(self, value: Any, base: str) -> tuple[str, bool]:
        """(the dependency name of ``value``, whether it was walked already)."""
        known = self._objects.get(id(value))
        if known is not None:
            return known, True
        name, number = base, 1
        while name in self.found:
            number += 1
            name = f"{base}#{number}"
        self._objects[id(value)] = name
        self._keep.append(value)
        return name, False

    def function_digest(self, fn: types.FunctionType) -> bytes:
        """The digest of ``fn``'s own code, defaults and closure values (its dependencies are
        recorded in :attr:`found` as a side effect). Wrappers are fingerprinted as what they
        are: their code and closure (which holds what they wrap), not unwrapped."""
        known = self._functions.get(id(fn))
        if known is not None:
            return known
        self._functions[id(fn)] = b"(in progress)"  # recursion (a function calling itself)
        self._keep.append(fn)
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
        """Record every global ``fn`` loads, and what it reads through user modules
        (``pkg.sub.scale``: every step of the chain while it is a user module)."""
        loads = code_loads(fn.__code__)
        namespace = fn.__globals__
        for name in loads.globals:
            if name in namespace:
                self.reached(f"global {name} of {fn.__module__}", namespace[name], name)
            elif not hasattr(builtins, name):
                raise Unfingerprintable(f"global {name} of {fn.__qualname__} is not defined")
        for chain in loads.attributes:
            value: Any = namespace.get(chain[0])
            where = chain[0]
            for attribute in chain[1:]:
                if not (
                    isinstance(value, types.ModuleType)
                    and module_origin(value.__name__)[0] == "user"
                    and hasattr(value, attribute)
                ):
                    break
                value = getattr(value, attribute)
                where = f"{where}.{attribute}"
                if not isinstance(value, types.ModuleType):
                    self.reached(where, value, attribute)
                    break

    def reached(self, where: str, value: Any, label: str) -> None:
        if _constant(value):
            # Containers of constants count by their contents now (a mutable dict or list of
            # settings included: the key is computed when the entry is compiled or looked up).
            self._add(f"{where}", "constant", repr(value)[:80], encode(value))
            return
        if isinstance(value, types.ModuleType):
            kind, origin = module_origin(value.__name__)
            if kind != "user":
                self._package(origin, kind)
            return
        if isinstance(value, type):
            self._class(value)
            return
        dispatcher = getattr(value, "__compilecache_dispatcher__", None)
        if dispatcher is not None:  # a jit function: what counts is the function it compiles
            self.reached(where, dispatcher.fn, label)
            return
        if isinstance(value, types.FunctionType):
            kind, origin = module_origin(value.__module__)
            if kind != "user":
                self._package(origin, kind)
                return
            name, seen = self._name_for(value, f"{value.__module__}:{value.__qualname__}")
            if not seen:
                self.found[name] = Dependency(name, "function", origin, b"")
                self.found[name] = Dependency(name, "function", origin, self.function_digest(value))
            return
        if isinstance(value, functools.partial):
            name, seen = self._name_for(value, f"partial of {where}")
            if not seen:
                self.reached(where, value.func, label)
                body = self._encode((value.args, value.keywords), f"arguments of {name}")
                self.found[name] = Dependency(name, "partial", "", hashlib.sha256(body).digest())
            return
        if isinstance(value, types.MethodType):
            owner = value.__self__
            if isinstance(owner, (type, types.ModuleType)):
                self.reached(where, owner, label)
                self.reached(where, value.__func__, label)
                return
            raise Unfingerprintable(
                f"{where} is a method bound to a {qualified_name(type(owner))} object, whose "
                "state has no stable fingerprint: pass the object as an argument"
            )
        if _is_builtin(value):
            self._builtin(value)
            return
        wrapped = getattr(value, "__wrapped__", None)
        if wrapped is not None and module_origin(type(value).__module__)[0] == "stdlib":
            # A standard-library wrapper object (functools.lru_cache, ...): what it runs is
            # what it wraps.
            self.reached(where, wrapped, label)
            return
        if fingerprint_for(value) is not None or is_data_like(value):
            self.fingerprinted(value, where)
            return
        try:
            body = encode(value)  # dtypes, devices, enum members and other encodable values
        except Unfingerprintable:
            raise Unfingerprintable(
                f"{where} is a {qualified_name(type(value))} object, which has no stable "
                "fingerprint: pass it as an argument, or make it a constant"
            ) from None
        self._add(where, "constant", repr(value)[:80], body)

    def _builtin(self, value: Any) -> bytes:
        """A function implemented in C, keyed by its name and its package's version (a C
        extension's submodules have no file: ``torch._C._nn`` is torch's)."""
        module = getattr(value, "__module__", None) or "builtins"
        kind, origin = module_origin(module.split(".", maxsplit=1)[0])
        self._package(origin, kind)
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", "?")
        return f"{module}:{name}".encode()

    def _package(self, origin: str, kind: str) -> None:
        self._add(f"package {origin.split(maxsplit=1)[0]}", kind, origin, origin.encode())

    def _class(self, cls: type) -> bytes:
        """Record ``cls`` (user classes by their members) and return its digest."""
        kind, origin = module_origin(cls.__module__)
        if kind != "user":
            self._package(origin, kind)
            return origin.encode()
        name, seen = self._name_for(cls, f"{cls.__module__}:{cls.__qualname__}")
        if seen:
            return self.found[name].digest
        self.found[name] = Dependency(name, "class", origin, b"")
        parts = [qualified_name(cls).encode()]
        for base in cls.__bases__:
            if base is not object:
                parts.append(self._class(base))
        for attribute, raw in sorted(vars(cls).items()):
            parts.append(attribute.encode() + self._member(cls, attribute, raw))
        digest = hashlib.sha256(b"".join(parts)).digest()
        self.found[name] = Dependency(name, "class", origin, digest)
        return digest

    def _member(self, cls: type, attribute: str, raw: Any) -> bytes:
        member = getattr(raw, "__func__", raw)  # staticmethod / classmethod
        if isinstance(member, property):
            accessors = (member.fget, member.fset, member.fdel)
            return b"".join(self._member(cls, attribute, f) for f in accessors if f is not None)
        if isinstance(member, functools.cached_property):
            member = member.func
        if isinstance(member, types.FunctionType):
            return self.function_digest(member)
        if isinstance(member, type):
            return self._class(member)
        if _constant(member):
            return encode(member)
        if attribute.startswith("__") and attribute.endswith("__"):
            return b""  # interpreter bookkeeping: __dict__, __weakref__, __dataclass_fields__
        if type(member).__name__ in ("member_descriptor", "getset_descriptor", "_tuplegetter"):
            return b""  # __slots__ entries, named tuple fields (``_fields`` says which)
        return self._encode(member, f"class attribute {attribute} of {cls.__qualname__}")

    def fingerprinted(self, value: Any, where: str) -> bytes:
        """Record an object keyed by its registered fingerprint, or, for a data-like object
        (see :mod:`._objects`), by its class and its state; return its digest."""
        fingerprint = fingerprint_for(value)
        if fingerprint is None and not is_data_like(value):
            kind = qualified_name(type(value))
            raise Unfingerprintable(f"a {kind} object has no stable encoding")
        name, seen = self._name_for(value, f"{qualified_name(type(value))} object at {where}")
        if seen:
            return self.found[name].digest
        self.found[name] = Dependency(name, "object", where, b"")
        body = fingerprint(value, self) if fingerprint is not None else self._state(value, where)
        digest = hashlib.sha256(body).digest()
        self.found[name] = Dependency(name, "object", where, digest)
        return digest

    def _state(self, value: Any, where: str) -> bytes:
        """A data-like object: its class (user classes by their code, library classes by their
        package's version) and each field of its state, the fields named by ``where.field``."""
        parts = [self._class(type(value))]
        for field_name, item in object_state(value, reader_for(type(value))):
            if (id(value), field_name) in self.ignored:
                parts.append(f"ignored {field_name}".encode())
                continue
            parts.append(field_name.encode() + b"=" + self._encode(item, f"{where}.{field_name}"))
        return b"\n".join(parts)

    def ignore(self, owner: Any, field_name: str) -> None:
        """Leave ``field_name`` of ``owner`` out of the key (the user vouches for it)."""
        self._keep.append(owner)
        self.ignored.add((id(owner), field_name))

    def is_ignored(self, owner: Any, field_name: str) -> bool:
        return (id(owner), field_name) in self.ignored

    def add(self, name: str, kind: str, origin: str, body: bytes) -> None:
        """Record a dependency ``name`` whose content is ``body`` (for fingerprints)."""
        self._add(name, kind, origin, body)

    def encode(self, value: Any, where: str) -> bytes:
        """The canonical bytes of ``value``, functions and classes in it fingerprinted."""
        return self._encode(value, where)

    def class_digest(self, cls: type) -> bytes:
        """Record ``cls`` (a user class by its members, else its package) and its digest."""
        return self._class(cls)

    def _add(self, name: str, kind: str, origin: str, body: bytes) -> None:
        if name not in self.found:
            self.found[name] = Dependency(name, kind, origin, hashlib.sha256(body).digest())

    def _encode(self, value: Any, where: str) -> bytes:
        outer, self._where = self._where, where
        try:
            return encode(value, self._encode_callable)
        except Unfingerprintable as error:
            if error.where is not None:
                raise
            raise Unfingerprintable(f"{where}: {error.reason}", where=where) from None
        finally:
            self._where = outer

    def _encode_callable(self, value: Any) -> bytes:
        if isinstance(value, type):
            return self._class(value)
        if isinstance(value, types.FunctionType):
            self.reached(value.__qualname__, value, value.__name__)
            return self.function_digest(value)
        if isinstance(value, types.CodeType):
            return code_digest(value)
        if _is_builtin(value):
            return self._builtin(value)
        return self.fingerprinted(value, self._where)


def _is_builtin(value: Any) -> bool:
    """A builtin function, or a builtin method bound to a module or a class (``tuple.__new__``;
    not to an object, whose state would count), or a numpy ufunc."""
    if isinstance(value, types.BuiltinFunctionType):
        owner = getattr(value, "__self__", None)
        return owner is None or isinstance(owner, (types.ModuleType, type))
    return _is_ufunc(value)


def _is_ufunc(value: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ufunc)


def _constant(value: Any) -> bool:
    kind = type(value)
    if kind in _CONSTANTS:
        return True
    if kind in (tuple, frozenset, list, set):
        return all(_constant(item) for item in value)
    if kind is dict:
        return all(_constant(k) and _constant(v) for k, v in value.items())
    return False
