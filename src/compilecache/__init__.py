"""compilecache: make compiled code reusable, inside a process, across processes and machines.

``import compilecache`` is cheap: it imports neither torch, numpy nor redis. The storage layer
lives in :mod:`compilecache.stores`; guarded dispatch in :mod:`compilecache.dispatch`, whose
main names are re-exported here (``compilecache.jit``, ``compilecache.reset``, ...).
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
from ._logs import configure_from_environment as _configure_logs
from ._logs import set_logs as set_logs
from ._runtime import reset_runtime as reconfigure
from ._runtime import runtime as _runtime
from .dispatch import Action as Action
from .dispatch import BackendCompileError as BackendCompileError
from .dispatch import RecompileLimitExceeded as RecompileLimitExceeded
from .dispatch import cache_entries as cache_entries
from .dispatch import disable as disable
from .dispatch import dispatch_stats as dispatch_stats
from .dispatch import explain_miss as explain_miss
from .dispatch import install_compiler_interface as install_compiler_interface
from .dispatch import jit as jit
from .dispatch import mark_dynamic as mark_dynamic
from .dispatch import mark_static as mark_static
from .dispatch import register_backend as register_backend
from .dispatch import reset as reset
from .dispatch import run_only as run_only
from .dispatch import skip as skip

__version__ = "0.1.0"

# Persistence by default: jit functions whose backend can dump and load its artifacts keep them
# in the configured store. Cheap here: the configuration is read on the first such miss.
from .artifacts._default import ConfiguredHooks as _ConfiguredHooks
from .dispatch import set_default_hooks as _set_default_hooks

default_hooks = _ConfiguredHooks()
_set_default_hooks(default_hooks)
_configure_logs()  # COMPILECACHE_LOGS, if set


def explain(fn: object, *args: object, **kwargs: object) -> object:
    """Why ``fn(*args, **kwargs)`` would (not) find its compiled entry in the store: see
    :func:`compilecache.artifacts.explain`."""
    from .artifacts._explain import explain as _explain

    return _explain(fn, *args, **kwargs)


def export_bundle(path: str, **options: object) -> object:
    """Write the configured store's entries into a bundle file (see
    :func:`compilecache.artifacts.export_bundle`; ``store`` and ``secret`` default to the
    configuration's)."""
    from .artifacts._bundle import export_bundle as _export

    store, secret = _configured(options)
    return _export(path, store=store, secret=secret, **options)  # type: ignore[arg-type]


def import_bundle(path: str, **options: object) -> object:
    """Import a bundle file into the configured store (see
    :func:`compilecache.artifacts.import_bundle`)."""
    from .artifacts._bundle import import_bundle as _import

    if "secret" not in options:  # the configuration's secrets, the previous one included
        options.setdefault("previous_secret", _runtime().config.secret_previous)
    store, secret = _configured(options)
    return _import(path, store=store, secret=secret, **options)  # type: ignore[arg-type]


def _configured(options: dict[str, object]) -> tuple[object, object]:
    context = _runtime()
    store = options.pop("store", None)
    if store is None:
        store = context.store()
    secret = options.pop("secret", context.config.secret)
    return store, secret


__all__ = [
    "Action",
    "set_logs",
    "BackendCompileError",
    "BackendError",
    "CacheError",
    "CacheTypeError",
    "CacheUsageError",
    "Config",
    "ConfigError",
    "CorruptEntryError",
    "InvalidKeyError",
    "LockTimeoutError",
    "RecompileLimitExceeded",
    "RejectedEntryError",
    "SeedFormatError",
    "__version__",
    "cache_entries",
    "disable",
    "dispatch_stats",
    "explain",
    "explain_miss",
    "export_bundle",
    "import_bundle",
    "reconfigure",
    "install_compiler_interface",
    "jit",
    "mark_dynamic",
    "mark_static",
    "register_backend",
    "reset",
    "run_only",
    "skip",
]
