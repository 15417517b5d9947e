"""Keys for data-like objects: an object is keyed by its class and its instance state.

A configuration object, a dataclass, a named tuple or any object whose state is plain data
(numbers, strings, containers, other data-like objects, recursively) has a meaningful key: its
class (a user class by its code, a library class by its package's version) and the values of
its attributes. Objects whose class is implemented in C (a lock, a file, a socket) have state
that Python cannot read, and are refused with the attribute path that reached them.

Some library types need a specific reading: a reader registered by qualified class name (so
that registering one imports nothing) says which fields of the state to leave out, because they
cannot change compiled code and would split caches between machines (a checkpoint's local path,
a commit hash, the library version that wrote a file), or reads the state another way.
"""

from __future__ import annotations

import collections
import enum
import threading
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Builtin bases whose content is state of its own (a dict subclass's items).
_CONTENT_BASES = (dict, collections.OrderedDict, list, tuple, set, frozenset)
_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined in Python


@dataclass(frozen=True)
class StateReader:
    """How to read the state of instances of one library type.

    ``excluded``: fields left out of the key (they cannot change compiled code).
    ``read``: ``read(value) -> dict`` instead of the generic instance state, when the type
    keeps its state in an unusual place.
    """

    excluded: frozenset[str] = frozenset()
    read: Callable[[Any], dict[str, Any]] | None = None


_readers: dict[str, StateReader] = {}
_lock = threading.Lock()
_resolved: dict[type, StateReader | None] = {}


def register_state_reader(qualified: str, reader: StateReader) -> None:
    """Read instances of the class named ``qualified`` (``"module:QualName"``, its subclasses
    too) with ``reader``. Naming the class instead of passing it keeps registration free of
    imports: the reader applies once that class is in use."""
    with _lock:
        _readers[qualified] = reader
        _resolved.clear()


def reader_for(kind: type) -> StateReader | None:
    """The reader registered for ``kind`` or its nearest base, or None."""
    try:
        return _resolved[kind]
    except KeyError:
        pass
    found = None
    for klass in kind.__mro__:
        found = _readers.get(f"{klass.__module__}:{klass.__qualname__}")
        if found is not None:
            break
    _resolved[kind] = found
    return found


def is_data_like(value: Any) -> bool:
    """Whether ``value``'s state is readable from Python: an instance of a class defined in
    Python (its bases too, but for ``object`` and the builtin containers), a
    ``types.SimpleNamespace`` or an ``OrderedDict``. Functions, classes, modules and enum
    members are not objects of this kind."""
    kind = type(value)
    if kind is types.SimpleNamespace or kind is collections.OrderedDict:
        return True
    if kind in _CONTENT_BASES:
        return False  # plain containers have an encoding of their own
    if isinstance(value, (type, types.ModuleType, types.FunctionType, types.MethodType, enum.Enum)):
        return False
    known = _python_classes.get(kind)
    if known is None:
        known = _python_classes[kind] = all(
            _defined_in_python(klass)
            for klass in kind.__mro__
            if klass is not object and klass not in _CONTENT_BASES
        )
    return known


_python_classes: dict[type, bool] = {}
# What a class implemented in C has in its namespace; a class statement makes none of these.
_C_MEMBERS = frozenset(
    {
        "method_descriptor",
        "wrapper_descriptor",
        "classmethod_descriptor",
        "builtin_function_or_method",
        "instancemethod",  # pybind11
    }
)


def _defined_in_python(klass: type) -> bool:
    """A class from a ``class`` statement. Since Python 3.10 many C types are heap types too
    (``_thread.lock``, ``_random.Random``), so the flag alone does not tell: their methods are
    C descriptors, while a class statement's are functions."""
    if not klass.__flags__ & _HEAP_TYPE:
        return False
    return not any(type(member).__name__ in _C_MEMBERS for member in vars(klass).values())


def object_state(value: Any, reader: StateReader | None) -> list[tuple[str, Any]]:
    """The state of a data-like object as ``(field, value)`` pairs in a canonical order:
    attributes (``__dict__`` and ``__slots__``) by name, then the content of a builtin
    container base (``[items]``, ``{items}``) in its own order (the order of a list, a tuple or
    an ordered dict's items is part of what it is)."""
    if reader is not None and reader.read is not None:
        state = dict(reader.read(value))
    else:
        state = dict(getattr(value, "__dict__", None) or {})
        for name in _slot_names(type(value)):
            if name not in state and hasattr(value, name):
                state[name] = getattr(value, name)
    excluded = reader.excluded if reader is not None else frozenset()
    pairs = sorted(
        ((name, item) for name, item in state.items() if name not in excluded), key=_first
    )
    content = _content(value, excluded) if reader is None or reader.read is None else None
    if content is not None:
        pairs.append(content)
    return pairs


def _first(pair: tuple[str, Any]) -> str:
    return pair[0]


def _content(value: Any, excluded: frozenset[str]) -> tuple[str, Any] | None:
    if isinstance(value, dict):
        return "{items}", [(k, v) for k, v in value.items() if k not in excluded]
    if isinstance(value, (list, tuple)):
        return "[items]", list(value)
    if isinstance(value, (set, frozenset)):
        return "{members}", frozenset(value)
    return None


def _slot_names(kind: type) -> Iterable[str]:
    for klass in kind.__mro__:
        slots = vars(klass).get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        for name in slots:
            if name not in ("__dict__", "__weakref__"):
                yield name
