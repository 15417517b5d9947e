"""Counters that persist across processes, for ``compilecache stats`` and ``report``."""

from __future__ import annotations

from ._counters_db import CountersDB as CountersDB
from ._counters_db import Delta as Delta
from ._recorder import Recorder as Recorder

__all__ = ["CountersDB", "Delta", "Recorder"]
