"""compilecache: make compiled code reusable, inside a process, across processes and machines.

``import compilecache`` is cheap: it imports neither torch nor redis. The storage layer lives in
:mod:`compilecache.stores`.
"""

from __future__ import annotations

from ._config import Config as Config
from ._errors import BackendError as BackendError
from ._errors import CacheError as CacheError
from ._errors import CacheTypeError as CacheTypeError
from ._errors import CacheUsageError as CacheUsageError
from ._errors import ConfigError as ConfigError
from ._errors import CorruptEntryError as CorruptEntryError
from ._errors import InvalidKeyError as InvalidKeyError
from ._errors import LockTimeoutError as LockTimeoutError
from ._errors import RejectedEntryError as RejectedEntryError
from ._errors import SeedFormatError as SeedFormatError

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "CacheError",
    "CacheTypeError",
    "CacheUsageError",
    "Config",
    "ConfigError",
    "CorruptEntryError",
    "InvalidKeyError",
    "LockTimeoutError",
    "RejectedEntryError",
    "SeedFormatError",
    "__version__",
]
