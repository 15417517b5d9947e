"""The process-global compiler interface: one compiler that running compiled code may call back.

Like compiled autograd's ``PyCompilerGuard``: exactly one interface is installed at a time, by a
scope (``with install_compiler_interface(obj):``); asking for it when none is installed,
installing a second, or leaving the scope while the interface is in use are errors that say so.
The dispatch layer routes compiles through it when one is installed (``compile(...)``), so a
tool can redirect or observe every compile of the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from .._errors import CacheUsageError
from ._spec import Specialization


class CompilerInterface(Protocol):
    """What the dispatch layer calls back into while compiled code runs."""

    def compile(
        self,
        backend: Callable[..., Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        spec: Specialization,
    ) -> Callable[..., Any]: ...


_lock = threading.Lock()
_installed: CompilerInterface | None = None
_users = 0
_remove_when_unused = False


@contextmanager
def install_compiler_interface(interface: CompilerInterface) -> Iterator[CompilerInterface]:
    """Install ``interface`` for the duration of the scope.

    Raises :class:`CacheUsageError` if another interface is installed, or if the scope ends
    while the interface is in use (see :func:`compiler_interface`); it is then removed when its
    last user is done.
    """
    global _installed, _remove_when_unused
    with _lock:
        if _installed is not None:
            raise CacheUsageError(
                f"a compiler interface is already installed ({_installed!r}); leave its scope "
                "before installing another"
            )
        _installed = interface
    try:
        yield interface
    finally:
        with _lock:
            in_use = _users
            if in_use:
                _remove_when_unused = True  # the last user's exit removes it
            else:
                _installed = None
        if in_use:
            raise CacheUsageError(
                f"the compiler interface is being removed while {in_use} caller(s) use it; "
                "finish using it before leaving the scope that installed it"
            )


def installed_compiler_interface() -> CompilerInterface | None:
    """The installed interface, or None."""
    return _installed


@contextmanager
def compiler_interface() -> Iterator[CompilerInterface]:
    """Use the installed interface for the enclosed code; it cannot be removed meanwhile.

    Raises :class:`CacheUsageError` if none is installed.
    """
    global _users, _installed, _remove_when_unused
    with _lock:
        interface = _installed
        if interface is None:
            raise CacheUsageError(
                "no compiler interface is installed: wrap the code in "
                "`with compilecache.install_compiler_interface(...)`"
            )
        _users += 1
    try:
        yield interface
    finally:
        with _lock:
            _users -= 1
            if not _users and _remove_when_unused:
                _installed, _remove_when_unused = None, False
