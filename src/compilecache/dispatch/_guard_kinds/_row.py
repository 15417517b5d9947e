"""The row of the guard-kind table: everything about one kind of guard, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from .._guard_values import dump_value, load_value
from .._guards import Guard, GuardKind, Path, path_text, short_repr

if TYPE_CHECKING:
    from .._guard_codegen import GuardSource
    from .._guard_eval import Inputs


class GuardKindRow:
    """One guard kind: how it reads in words, what it looks at, whether it holds, why it
    failed, its clause in a generated guard function, and how it is written down and read
    back. A subclass sets ``kind`` and overrides what differs from these defaults (an
    equality test against ``expected``, stored as a tagged value)."""

    kind: ClassVar[GuardKind]

    def describe(self, guard: Guard) -> str:
        """The guard in words, e.g. ``x.shape == (8, None)``."""
        return f"{path_text(guard.path)} == {short_repr(guard.expected)}"

    def subject(self, guard: Guard, inputs: Inputs) -> Any:
        """What the guard looks at in a call: by default the value at its path (raises
        LookupError, AttributeError or TypeError when that place is unreachable)."""
        return inputs.resolve(guard.path)

    def holds(self, guard: Guard, value: Any) -> bool:
        """Whether the guard holds for ``value`` (what :meth:`subject` gives)."""
        return bool(value == guard.expected)

    def failure(self, guard: Guard, actual: Any) -> str:
        """Why the guard fails for ``actual``, e.g. ``x.shape[0]: expected 8, got 16``."""
        where = path_text(guard.path)
        return f"{where}: expected {short_repr(guard.expected)}, got {short_repr(actual)}"

    def clause(self, source: GuardSource, guard: Guard, value: str) -> str:
        """The guard as a Python expression over ``value`` (the source text reaching the
        value at its path); every compared value is bound in ``source``, never written into
        the text."""
        return f"{value} == {source.bind(guard.expected)}"

    def dump(self, guard: Guard) -> dict[str, Any]:
        """The stored fields of the guard beyond its path, kind, depth and cost; raises
        :class:`~compilecache.keys.Unfingerprintable` when it cannot be stored."""
        return {"expected": dump_value(guard.expected)}

    def load(self, data: dict[str, Any], path: Path, namespace: dict[str, Any], cells: Any) -> Any:
        """The ``expected`` of a stored guard (``namespace`` and ``cells``, the function's
        globals and closure, re-arm guards stored as "the current value")."""
        return load_value(data.get("expected"))


def dims_match(actual: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    """Whether sizes or strides match, None matching any."""
    return len(actual) == len(expected) and all(
        want is None or want == got for want, got in zip(expected, actual, strict=True)
    )
