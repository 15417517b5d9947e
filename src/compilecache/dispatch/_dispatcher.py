"""The slow path of a jit function: strategies, misses, compiles, recompile limits, hooks."""

from __future__ import annotations

import copy
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from .._errors import CacheError, CacheUsageError, LockTimeoutError
from .._ratelimit import RateLimitedLog
from ._backends import Backend, backend_name, innermost
from ._compiler_interface import compiler_interface, installed_compiler_interface
from ._entries import CacheEntry
from ._guard_build import DimsHint, DimsPolicy, GuardBuilder, global_names
from ._guard_codegen import compile_binder, compile_guards
from ._guard_eval import Inputs, first_failure
from ._guards import Guard, Path
from ._hooks import CompileRequest, DispatchHooks, LoadedEntry
from ._state import CodeState
from ._strategy import ACTIVE, Action, Strategy, stricter

logger = logging.getLogger("compilecache.dispatch")
recompiles_log = logging.getLogger("compilecache.recompiles")
guards_log = logging.getLogger("compilecache.guards")
_guard_error_log = RateLimitedLog(guards_log, interval=60.0)

COMPILE_LOCK_TIMEOUT = 600.0


class RecompileLimitExceeded(CacheError, RuntimeError):
    """A jit function reached its recompile limit with ``on_recompile_limit="raise"``."""


class BackendCompileError(CacheError, RuntimeError):
    """The backend raised while compiling; the original error is the ``__cause__``."""


GuardErrorHook = Callable[[Callable[..., Any], CacheEntry, BaseException], None]


def _log_guard_error(fn: Callable[..., Any], entry: CacheEntry, error: BaseException) -> None:
    _guard_error_log.log(
        logging.WARNING,
        f"{entry.compile_id}",
        "guard of %s entry %s raised %r; treated as not matching",
        getattr(fn, "__qualname__", fn),
        entry.compile_id,
        error,
    )


_guard_error_hook: GuardErrorHook = _log_guard_error


def set_guard_error_hook(hook: GuardErrorHook | None) -> GuardErrorHook:
    """Call ``hook(fn, entry, error)`` when a guard raises (None: the default, a rate-limited
    warning). The guard then counts as failed. Returns the previous hook."""
    global _guard_error_hook
    previous = _guard_error_hook
    _guard_error_hook = hook or _log_guard_error
    return previous


class Dispatcher:
    """Everything a jit function does besides a plain hit."""

    def __init__(
        self,
        fn: Callable[..., Any],
        state: CodeState,
        *,
        backend: Backend,
        dynamic: bool | None,
        recompile_limit: int,
        on_recompile_limit: str,
        reorder: bool,
        hooks: DispatchHooks,
        dynamic_dims: DimsHint | None = None,
    ) -> None:
        self.fn = fn
        self.state = state
        self.backend = backend
        self.identity = innermost(backend)
        self.backend_name = backend_name(self.identity)
        self.dynamic = dynamic
        # Sizes the backend always compiles static (torch.export specializes 0 and 1).
        static_sizes = frozenset(getattr(self.identity, "static_sizes", ()))
        self._dims = DimsPolicy(static_sizes, dynamic_dims)
        self.recompile_limit = recompile_limit
        self.on_recompile_limit = on_recompile_limit
        self.reorder = reorder
        self.hooks = hooks
        self.view = state.view(self.identity, fn)  # type: ignore[arg-type]
        self.signature = inspect.signature(fn)
        self.bind = compile_binder(self.signature)
        self.cells = fn.__closure__
        self.global_names = global_names(fn.__code__)

    # -- the slow path -------------------------------------------------------------------
    def call(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        checked: tuple[CacheEntry, ...] | None = None,
    ) -> Any:
        """A call that the hot path did not serve: a miss, or a strategy is active.
        ``checked`` is the lookup tuple the hot path already tried (not tried again)."""
        context = ACTIVE.get()
        own = self.state.strategy
        current = Action.DEFAULT
        callees = Action.DEFAULT
        for strategy in (context, own):
            if strategy is not None:
                current = stricter(current, strategy.current)
                callees = stricter(callees, strategy.callees)
        if self.view.limit_reasons is not None:
            current = stricter(current, Action.RUN_ONLY)
        token = None
        if context is not None or callees is not Action.DEFAULT:
            wanted = Strategy(callees, callees) if callees is not Action.DEFAULT else None
            if wanted != context:
                token = ACTIVE.set(wanted)
        try:
            return self._run(current, args, kwargs, checked)
        finally:
            if token is not None:
                ACTIVE.reset(token)

    def _run(
        self,
        current: Action,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        checked: tuple[CacheEntry, ...] | None,
    ) -> Any:
        if current is Action.SKIP:
            return self.fn(*args, **kwargs)
        seen = self.view.lookup
        if seen is not checked:
            entry = self.find(args, kwargs)
            if entry is not None:
                return entry.compiled(*args, **kwargs)
        self.state.counters.misses += 1
        if current is Action.RUN_ONLY:
            self.state.counters.eager_runs += 1
            return self.fn(*args, **kwargs)
        try:
            inputs = self.inputs(args, kwargs)
        except TypeError:
            # The call does not fit the signature: the function raises its own TypeError.
            return self.fn(*args, **kwargs)
        entry = self._compile_or_load(args, kwargs, inputs, seen)
        if entry is None:  # the recompile limit was reached: plain Python from now on
            self.state.counters.eager_runs += 1
            return self.fn(*args, **kwargs)
        return entry.compiled(*args, **kwargs)

    def after_first(
        self, lookup: tuple[CacheEntry, ...], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """The hot path's continuation when the first entry rejected the call."""
        for entry in lookup[1:]:
            if self.check(entry, args, kwargs):
                entry.hits += 1
                if self.reorder and not entry.precompiled:
                    self.state.promote(entry)
                return entry.compiled(*args, **kwargs)
        return self.call(args, kwargs, checked=lookup)

    def find(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> CacheEntry | None:
        """The first entry (precompiled first, then most recently used) whose guard passes."""
        for entry in self.view.lookup:
            if self.check(entry, args, kwargs):
                entry.hits += 1
                if self.reorder and not entry.precompiled:
                    self.state.promote(entry)
                return entry
        return None

    def check(self, entry: CacheEntry, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        try:
            if self.cells is not None:
                return entry.check(self.cells, *args, **kwargs)
            return entry.check(*args, **kwargs)
        except Exception as error:
            self.guard_raised(entry, error)
            return False

    def guard_raised(self, entry: CacheEntry, error: BaseException) -> bool:
        """Report a raising guard through the hook; it counts as failed (returns False)."""
        self.state.counters.guard_errors += 1
        try:
            _guard_error_hook(self.fn, entry, error)
        except Exception:  # a broken hook must not break the user's call either
            logger.exception("the guard error hook raised")
        return False

    # -- misses --------------------------------------------------------------------------
    def inputs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Inputs:
        return Inputs(self.bind(*args, **kwargs), self.cells, self.fn.__globals__)

    def explain(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
        """Why each entry rejects the call: ``"<compile id>: <first failing guard>"``."""
        return self._reasons(self.inputs(args, kwargs))

    def _reasons(self, inputs: Inputs) -> list[str]:
        reasons = []
        for entry in self.view.lookup:
            failure = first_failure(entry.guards, inputs)
            reasons.append(f"{entry.compile_id}: {failure or 'matches'}")
        return reasons

    def _compile_or_load(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        inputs: Inputs,
        seen: tuple[CacheEntry, ...],
    ) -> CacheEntry | None:
        state = self.state
        if not state.compile_lock.acquire(timeout=COMPILE_LOCK_TIMEOUT):
            raise LockTimeoutError(
                f"waited {COMPILE_LOCK_TIMEOUT:.0f} s for another thread compiling "
                f"{self.fn.__qualname__}; it may be stuck in its backend"
            )
        try:
            # Another thread may have compiled this very specialization while we waited (the
            # entries changed since this call looked at them).
            if self.view.lookup is not seen:
                entry = self.find(args, kwargs)
                if entry is not None:
                    return entry
            if self.view.limit_reasons is not None:
                return None
            state.prune()  # entries made inert since (their weakly guarded objects died)
            if self.view.entries:
                state.counters.recompiles += 1
                at_limit = len(self.view.entries) >= self.recompile_limit
                # Explaining walks every guard in Python: only when someone will read it.
                if at_limit or recompiles_log.isEnabledFor(logging.INFO):
                    reasons = self._reasons(inputs)  # the call is bound already
                    recompiles_log.info(
                        "recompiling %s (entries: %d): %s",
                        self.fn.__qualname__,
                        len(self.view.entries),
                        "; ".join(reasons),
                    )
                    if at_limit:
                        self._limit_reached(reasons)
                        return None
            return self._make_entry(args, kwargs, inputs)
        finally:
            state.compile_lock.release()

    def _limit_reached(self, reasons: list[str]) -> None:
        message = (
            f"{self.fn.__qualname__} reached its recompile limit ({self.recompile_limit} "
            f"compiled entries); last misses: {'; '.join(reasons)}"
        )
        if self.on_recompile_limit == "raise":
            raise RecompileLimitExceeded(message)
        self.view.limit_reasons = reasons
        logger.warning(
            "%s. It now runs its compiled entries where they match and plain Python otherwise; "
            "mark the varying dimensions dynamic or raise recompile_limit",
            message,
        )

    def request_for(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> CompileRequest:
        """The compile request a miss of this call would make, built without changing any
        state (shape observations are copied): for explanations."""
        inputs = self.inputs(args, kwargs)
        builder = GuardBuilder(copy.deepcopy(self.state.shapes), self.dynamic, self._dims)
        return self._request(builder, args, kwargs, inputs)

    def _request(
        self,
        builder: GuardBuilder,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        inputs: Inputs,
    ) -> CompileRequest:
        for name, value in inputs.arguments.items():
            kind = self.signature.parameters[name].kind
            builder.argument(name, value, keyword_dict=kind is inspect.Parameter.VAR_KEYWORD)
        if self.cells is not None:
            for index, (name, cell) in enumerate(
                zip(self.fn.__code__.co_freevars, self.cells, strict=True)
            ):
                builder.cell(index, name, cell)
        for name in self.global_names:
            builder.global_name(name, self.fn.__globals__)
        guards, spec = builder.result()
        return CompileRequest(
            self.fn,
            args,
            kwargs,
            self.signature,
            inputs,
            guards,
            spec,
            self.identity,
            self.backend_name,
        )

    def _make_entry(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], inputs: Inputs
    ) -> CacheEntry:
        seen = self.state.shapes.snapshot()
        builder = GuardBuilder(self.state.shapes, self.dynamic, self._dims)
        request = self._request(builder, args, kwargs, inputs)
        try:
            try:
                for loaded in self.hooks.load(request):
                    entry = self._adopt(loaded, inputs, args, kwargs)
                    if entry is not None:
                        self.state.counters.loaded += 1
                        return entry
            except Exception:  # persistence must never break a call: compile instead
                logger.exception("loading entries of %s failed; compiling", self.fn.__qualname__)
            try:
                return self._compile(request, inputs, builder.watch)
            except BaseException:
                self.state.shapes.restore(seen)  # a failed compile teaches nothing
                raise
        finally:
            # Whatever happened (a load, a compile, a failure), hooks release what they hold
            # for this request (a compile lock).
            try:
                self.hooks.finish(request)
            except Exception:
                logger.exception("finishing persistence of %s failed", self.fn.__qualname__)

    def _compile(self, request: CompileRequest, inputs: Inputs, watch: Any) -> CacheEntry:
        started = time.perf_counter()
        interface = installed_compiler_interface()
        # Calls made while compiling (a backend that traces by running the function) run
        # plain Python: compiling them too would recurse into this compile.
        token = ACTIVE.set(Strategy(Action.SKIP, Action.SKIP))
        try:
            if interface is not None:
                with compiler_interface() as active:
                    compiled = active.compile(
                        self.backend, self.fn, request.args, request.kwargs, request.spec
                    )
            else:
                compiled = self.backend(self.fn, request.args, request.kwargs, request.spec)
        except CacheError:
            raise
        except Exception as error:
            raise BackendCompileError(
                f"backend {self.backend_name!r} failed to compile {self.fn.__qualname__}: {error!r}"
            ) from error
        finally:
            ACTIVE.reset(token)
        if not callable(compiled):
            raise BackendCompileError(
                f"backend {self.backend_name!r} returned {compiled!r}, which is not callable"
            )
        seconds = time.perf_counter() - started
        entry = CacheEntry(
            check=self._guard_function(request.guards, inputs, request.spec),
            compiled=compiled,
            backend=self.identity,
            backend_name=self.backend_name,
            compile_id=self.state.next_compile_id(),
            guards=request.guards,
            spec=request.spec,
            annotation="; ".join(request.spec.describe()) or "no inputs",
            compile_seconds=seconds,
            view=self.view,
        )
        self.state.counters.compiles += 1
        watch.entries.append(entry)
        self.state.add_entry(entry)
        logger.debug("compiled %s as %s in %.3f s", self.fn.__qualname__, entry.compile_id, seconds)
        try:
            self.hooks.save(request, entry)
        except Exception:  # persistence must never break a call that compiled fine
            logger.exception("saving compiled entry %s failed", entry.compile_id)
        return entry

    def _adopt(
        self,
        loaded: LoadedEntry,
        inputs: Inputs,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> CacheEntry | None:
        """Turn a loaded entry that applies to this call into a precompile entry (None if its
        guards reject the call or do not compile). Entries that do not apply are dropped:
        the hooks are asked again on the next miss, so keeping them would only pile up."""
        failure = first_failure(loaded.guards, inputs)
        if failure is not None:
            logger.debug("loaded entry of %s does not apply: %s", self.fn.__qualname__, failure)
            return None
        try:
            check = self._guard_function(loaded.guards, inputs, loaded.spec)
        except Exception:
            logger.exception("guards of a loaded entry of %s do not compile", self.fn.__qualname__)
            return None
        entry = CacheEntry(
            check=check,
            compiled=loaded.compiled,
            backend=self.identity,
            backend_name=self.backend_name,
            compile_id=f"{self.state.index}/loaded-{len(self.state.precompiled)}",
            guards=loaded.guards,
            spec=loaded.spec,
            annotation=loaded.annotation,
            compile_seconds=loaded.compile_seconds,
            precompiled=True,
            artifact=loaded.artifact,
            view=self.view,
        )
        if not self.check(entry, args, kwargs):  # its compiled guard must agree, or it is unused
            return None
        self.state.add_precompiled(entry)
        return entry

    def _guard_function(
        self, guards: list[Guard], inputs: Inputs | None, spec: Any
    ) -> Callable[..., bool]:
        # torch tensors are checked by TensorGuards built from example tensors; the examples
        # must be ones the guards accept (true for the call that was just compiled).
        examples: dict[Path, Any] = {}
        if inputs is not None:
            for leaf in spec.leaves:
                if leaf.array is not None and leaf.array.family == "torch":
                    examples[leaf.path] = inputs.resolve(leaf.path)
        return compile_guards(
            guards,
            self.signature,
            has_cells=self.cells is not None,
            namespace=self.fn.__globals__,
            examples=examples,
            name=f"guard_{self.fn.__name__}" if self.fn.__name__.isidentifier() else "guard",
        )


def check_options(recompile_limit: int, on_recompile_limit: str, dynamic: object) -> None:
    if type(recompile_limit) is not int or recompile_limit < 1:
        raise CacheUsageError(f"recompile_limit must be an int >= 1, got {recompile_limit!r}")
    if on_recompile_limit not in ("eager", "raise"):
        raise CacheUsageError(
            f"on_recompile_limit must be 'eager' or 'raise', got {on_recompile_limit!r}"
        )
    if dynamic not in (None, True, False):
        raise CacheUsageError(f"dynamic must be True, False or None, got {dynamic!r}")
