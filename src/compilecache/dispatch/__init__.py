"""Guarded dispatch: per-function caches of compiled specializations, like Dynamo's cache
entries. See docs/dispatch.md.

Where things go: a new guard kind is a ``GuardKind`` member (``_guards.py``), a row in the
guard-kind table (``_guard_kinds/``) and the place in ``_guard_build.py`` that emits it; a new
backend registers with ``register_backend``; persistence plugs in through the hooks protocol
(``_hooks.py``: ``load``, ``save``, ``finish``). This package imports no store; the key
layer's naming only when a guard is written down (the artifact layer stores it).
"""

from __future__ import annotations

from ._arrays import mark_dynamic as mark_dynamic
from ._arrays import mark_static as mark_static
from ._backends import Backend as Backend
from ._backends import eager as eager
from ._backends import innermost as innermost
from ._backends import lookup_backend as lookup_backend
from ._backends import register_backend as register_backend
from ._compiler_interface import CompilerInterface as CompilerInterface
from ._compiler_interface import compiler_interface as compiler_interface
from ._compiler_interface import install_compiler_interface as install_compiler_interface
from ._dispatcher import BackendCompileError as BackendCompileError
from ._dispatcher import RecompileLimitExceeded as RecompileLimitExceeded
from ._dispatcher import set_guard_error_hook as set_guard_error_hook
from ._entries import CacheEntry as CacheEntry
from ._guard_build import register_state_type as register_state_type
from ._guards import Guard as Guard
from ._guards import GuardKind as GuardKind
from ._hooks import CompileRequest as CompileRequest
from ._hooks import DispatchHooks as DispatchHooks
from ._hooks import LoadedEntry as LoadedEntry
from ._jit import cache_entries as cache_entries
from ._jit import dispatch_stats as dispatch_stats
from ._jit import explain_miss as explain_miss
from ._jit import jit as jit
from ._jit import set_default_hooks as set_default_hooks
from ._jit import skip as skip
from ._jit import unskip as unskip
from ._spec import LeafSpec as LeafSpec
from ._spec import Specialization as Specialization
from ._state import reset as reset
from ._strategy import Action as Action
from ._strategy import disable as disable
from ._strategy import run_only as run_only

__all__ = [
    "Action",
    "Backend",
    "BackendCompileError",
    "CacheEntry",
    "CompileRequest",
    "CompilerInterface",
    "DispatchHooks",
    "Guard",
    "GuardKind",
    "LeafSpec",
    "LoadedEntry",
    "RecompileLimitExceeded",
    "Specialization",
    "cache_entries",
    "compiler_interface",
    "disable",
    "dispatch_stats",
    "eager",
    "explain_miss",
    "innermost",
    "install_compiler_interface",
    "jit",
    "lookup_backend",
    "mark_dynamic",
    "mark_static",
    "register_backend",
    "register_state_type",
    "reset",
    "run_only",
    "set_default_hooks",
    "set_guard_error_hook",
    "skip",
    "unskip",
]
