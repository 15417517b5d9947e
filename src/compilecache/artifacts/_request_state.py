"""What the artifact hooks know about one miss, carried on the request from key derivation to
publication (the dispatch layer keeps the slot, ``CompileRequest.hook_state``, and never reads
it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..dispatch._hooks import CompileRequest
    from ..keys import CacheKey
    from ._single_flight import Claim


class RequestState:
    """``keyed``: key derivation ran; then ``key`` is the key, or None and ``bypass`` says why
    (``bypass_counted``: the bypass was counted and logged). ``guards`` are the call's guards
    as the manifest stores them. ``claim`` is the compile lock this process holds for the key,
    released by ``finish``; ``owner`` the hooks that loaded for the request (``save`` and
    ``finish`` go to them, even after a reconfiguration). (A plain class: a dataclass costs a
    millisecond of the first miss to define.)"""

    __slots__ = ("bypass", "bypass_counted", "claim", "guards", "key", "keyed", "owner")

    def __init__(self) -> None:
        self.keyed = False
        self.key: CacheKey | None = None
        self.guards: list[dict[str, Any]] | None = None
        self.bypass: str | None = None
        self.bypass_counted = False
        self.claim: Claim | None = None
        self.owner: Any = None


def state_of(request: CompileRequest) -> RequestState:
    """The artifact hooks' state of ``request`` (made on first use)."""
    state = request.hook_state
    if not isinstance(state, RequestState):
        state = RequestState()
        request.hook_state = state
    return state
