"""The key of a miss: the function, the code it reaches, its guards and specialization, the
backend, the environment, the salt (see docs/keys.md). A call that cannot be keyed stably gets
no key and a reason (a bypass); counting and logging it is the caller's business."""

from __future__ import annotations

import types
from typing import Any

from ..dispatch._hooks import CompileRequest
from ..keys import Unfingerprintable, build_key
from ._guard_format import dump_guards
from ._request_state import RequestState, state_of


class KeyDerivation:
    """Keys requests, ``salt`` (``COMPILECACHE_SALT``) and ``key_extra`` entering every key."""

    def __init__(self, salt: str | None = None, key_extra: Any = None) -> None:
        self.salt = salt
        self.key_extra = key_extra

    def derive(self, request: CompileRequest) -> RequestState:
        """The request's state with its key (or its bypass) filled in, once per request."""
        state = state_of(request)
        if state.keyed:
            return state
        state.keyed = True
        try:
            guards = dump_guards(request.guards)
            state.key = build_key(
                request.fn,  # type: ignore[arg-type]
                guards_data=guards,
                described=request.spec.describe(),
                backend=request.backend,
                backend_name=request.backend_name,
                salt=self.salt,
                key_extra=self.key_extra,
                reached=_reached_through_arguments(request.guards),
            )
            state.guards = guards
        except Unfingerprintable as error:
            state.key, state.bypass = None, error.reason
        return state


def _reached_through_arguments(guards: list[Any]) -> list[tuple[str, Any]]:
    """Code an argument brings: functions, classes and modules matched by identity, and the
    user classes that TYPE guards name (a dataclass argument's methods run in the call)."""
    from ..dispatch._guards import GuardKind, path_text
    from ..keys._deps import module_origin

    found: list[tuple[str, Any]] = []
    for guard in guards:
        if guard.path[0][0] != "arg":
            continue
        value = guard.expected
        if guard.kind is GuardKind.IDENTITY and isinstance(
            value, (types.FunctionType, type, types.ModuleType)
        ):
            found.append((f"argument {path_text(guard.path)}", value))
        elif (
            guard.kind is GuardKind.TYPE
            and isinstance(value, type)
            and module_origin(value.__module__)[0] == "user"
        ):
            found.append((f"type of argument {path_text(guard.path)}", value))
    return found
