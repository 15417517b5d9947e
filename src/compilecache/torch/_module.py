"""``compilecache.torch.compile``: a module or function compiled per specialization, persisted.

The wrapper calls a per-model adapter ``forward(training, *args, **kwargs)`` through the
dispatch layer, so guards (torch's TensorGuards), automatic dynamic shapes, recompile limits,
keys, persistence, single-flight compiles and explanations are the generic ones; the torch
backend compiles. The module's ``training`` flag is passed as an argument, so it is guarded on
every call and keyed; the module itself is a closure value, keyed by its structure (classes'
code, hyperparameters, tensor names, shapes and dtypes), never by its weights.
"""

from __future__ import annotations

import functools
import inspect
import operator
import types
from collections.abc import Callable
from typing import Any

import torch

from .._errors import CacheUsageError
from ..dispatch import cache_entries, dispatch_stats, jit
from ..dispatch._jit import _dispatcher_of
from ..stores import skipped_tiers
from ._aot_runner import StaleWeights, _registrations
from ._backend import MODES, TorchBackend
from ._fingerprint import ModelKey
from ._generation import GenerationDims, generates
from ._hooks import hooks_for
from ._model_libraries import activate
from ._routing import Routing, path_depth, routing_of
from ._structures import densify_states


def _adapter_for(target: Any, owner: type, name: str) -> types.FunctionType:
    # ``target``: a ModelKey (a module, keyed without its ignored attributes) or a function.
    if isinstance(target, ModelKey):
        handle = target

        def forward(training: Any, /, *args: Any, **kwargs: Any) -> Any:
            return handle.module(*args, **kwargs)
    else:
        fn = target

        def forward(training: Any, /, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    # A fresh code object per model: dispatch state (entries, shape observations, the compile
    # lock) is per code object, and two models must not share it.
    adapter = types.FunctionType(
        forward.__code__.replace(), forward.__globals__, name, None, forward.__closure__
    )
    # Named after the model, so that stored entries and explanations are per model class.
    adapter.__module__ = owner.__module__
    adapter.__qualname__ = f"{owner.__qualname__}.{name}"
    return adapter


class _FunctionModule(torch.nn.Module):
    """A plain function as a module (torch.export takes modules)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn
        self.train(False)  # a function has no training mode: never a reason to fall back

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def _build(
    target: Any,
    module: torch.nn.Module,
    owner: type,
    name: str,
    *,
    mode: str,
    dynamic: bool | None,
    store: Any,
    options: dict[str, Any] | None,
    compile_options: dict[str, Any] | None,
    strict: bool,
    recompile_limit: int,
) -> tuple[TorchBackend, Callable[..., Any]]:
    if mode not in MODES:
        raise CacheUsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    backend = TorchBackend(
        module, mode=mode, options=options, compile_options=compile_options, strict=strict
    )
    jitted = jit(
        _adapter_for(target, owner, name),
        backend=backend,
        dynamic=dynamic,
        recompile_limit=recompile_limit,
        hooks=hooks_for(store),
        # A model that generates: its batch, sequence and cache dimensions dynamic at once.
        dynamic_dims=GenerationDims(module) if dynamic is None and generates(module) else None,
    )
    return backend, jitted


class CompiledModule(torch.nn.Module):
    """A compiled ``nn.Module`` that still behaves as the module: attribute access, ``train``
    and ``eval``, ``parameters``, ``state_dict``, ``to`` and the rest act on the original
    (``.module``), whose weights the compiled code reads live. Methods that return the module
    (``eval()``, ``to(...)``) return this wrapper, so chains keep the compiled one."""

    def __init__(self, module: torch.nn.Module, backend: TorchBackend, call: Any) -> None:
        # Not nn.Module.__init__: this wrapper holds no state of its own; everything is the
        # original module's (so state_dict keys have no prefix).
        object.__setattr__(self, "_cc_module", module)
        object.__setattr__(self, "_cc_backend", backend)
        object.__setattr__(self, "_cc_call", call)
        object.__setattr__(self, "_cc_modules", None)
        object.__setattr__(self, "_cc_seen", -1)
        object.__setattr__(self, "_cc_routing", Routing(module, self))

    @property
    def module(self) -> torch.nn.Module:
        """The original module."""
        return self._cc_module  # type: ignore[no-any-return]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        flags = self._cc_training_flags()
        if kwargs:
            densify_states(kwargs.values())  # a cropped cache: dense, as eager's next cat
        path_depth.depth += 1  # the model's own calls inside run the model (see _routing)
        try:
            return self._cc_call(flags, *args, **kwargs)
        except StaleWeights:
            # A parameter changed dtype, device, shape or requires_grad, or went: its entries
            # no longer apply; the call misses and finds the entry of the new key.
            self.reset()
            return self._cc_call(self._cc_training_flags(), *args, **kwargs)
        finally:
            path_depth.depth -= 1

    forward = __call__

    def _cc_training_flags(self) -> bool | tuple[bool, ...]:
        """The submodules' ``training`` flags, an argument of the adapter, so guarded on every
        call (``model.bn.train()`` is a miss): ``False`` when every submodule is in eval mode
        (the inference case: one guard on a bool), else every flag (each mix its own
        specialization; the key holds the flags too)."""
        modules = self._cc_modules
        if modules is None or self._cc_seen != _registrations[0]:
            # A submodule may have been replaced. Only modules whose code reads ``training``
            # can behave differently in training mode (Dropout, BatchNorm, attention, user
            # classes that use it), and the root: checking only those keeps this cheap.
            root = self._cc_module
            modules = [m for m in root.modules() if m is root or reads_training(type(m))]
            object.__setattr__(self, "_cc_modules", modules)
            object.__setattr__(self, "_cc_seen", _registrations[0])
        if not any(map(_TRAINING, modules)):
            return False
        return tuple(map(_TRAINING, modules))

    def reset(self) -> None:
        """Drop every compiled entry in this process (stored entries stay) and forget export
        failures: the next call looks its key up again, e.g. after changing a hyperparameter
        in place."""
        _dispatcher_of(self._cc_call).state.invalidate_all()
        self._cc_backend.forget_failures()

    def __getattr__(self, name: str) -> Any:
        module = object.__getattribute__(self, "_cc_module")
        value = getattr(module, name)
        if getattr(value, "__self__", None) is module and not hasattr(torch.nn.Module, name):
            # The model's own method (generate, a helper that calls self(...)): its calls of
            # the model go through the compiled path while it runs.
            routing = object.__getattribute__(self, "_cc_routing")
            if name == "generate" and _takes_disable_compile(module, value):
                # transformers compiles forward itself for static caches on accelerators
                # (torch.compile of the model's __call__, which would trace the route).
                return routing.routed(value, {"disable_compile": True})
            return routing.routed(value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._cc_module, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._cc_module, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._cc_module)) | {"module", "reset"})

    def __repr__(self) -> str:
        return f"CompiledModule({self._cc_module!r}, mode={self._cc_backend.mode!r})"

    def __getstate__(self) -> Any:
        raise TypeError(
            "a CompiledModule is not picklable: save its .module (or its state_dict) and "
            "compile again after loading"
        )


_reads_training: dict[type, bool] = {}


def reads_training(cls: type) -> bool:
    """Whether any method of ``cls`` (nn.Module's own aside) reads an attribute named
    ``training``: only such modules compute differently in training mode."""
    known = _reads_training.get(cls)
    if known is None:
        known = _reads_training[cls] = _find_training(cls)
    return known


def _find_training(cls: type) -> bool:
    for klass in cls.__mro__:
        if klass in (torch.nn.Module, object):
            continue
        for value in vars(klass).values():
            function = getattr(value, "__func__", value)
            if isinstance(value, property):
                function = value.fget
            code = getattr(function, "__code__", None)
            if code is not None and _code_reads(code, "training"):
                return True
    return False


def _code_reads(code: types.CodeType, name: str) -> bool:
    if name in code.co_names:
        return True
    return any(
        isinstance(const, types.CodeType) and _code_reads(const, name) for const in code.co_consts
    )


def _delegate(name: str) -> Callable[..., Any]:
    def method(self: CompiledModule, *args: Any, **kwargs: Any) -> Any:
        module = self._cc_module
        result = getattr(module, name)(*args, **kwargs)
        return self if result is module else result

    method.__name__ = name
    method.__doc__ = getattr(torch.nn.Module, name).__doc__
    return method


# Not delegated: forward (the wrapper's own call); get/set_extra_state (a parent module
# loading a state dict runs nn.Module's loader on the wrapper, which would then expect an
# "_extra_state" entry the original never wrote).
_OWN = frozenset({"forward", "get_extra_state", "set_extra_state"})
_TRAINING = operator.attrgetter("training")
for _name, _value in vars(torch.nn.Module).items():
    if not _name.startswith("_") and callable(_value) and _name not in _OWN:
        setattr(CompiledModule, _name, _delegate(_name))


def compile(
    model_or_fn: Any,
    *,
    mode: str = "auto",
    dynamic: bool | None = None,
    store: Any = None,
    options: dict[str, Any] | None = None,
    compile_options: dict[str, Any] | None = None,
    strict: bool = False,
    recompile_limit: int = 8,
    key_ignore: tuple[str, ...] | str = (),
    inplace: bool = False,
) -> Any:
    """Compile a ``torch.nn.Module`` (or a function of tensors) per specialization of its
    inputs, persisting what it compiles in the configured store.

    ``mode``: ``"auto"`` (AOT packages for inference calls, torch.compile otherwise),
    ``"aot"`` (raise :class:`AOTUnavailableError` when a call cannot be compiled ahead of time),
    ``"jit"`` (torch.compile, its cache artifacts carried by the store). ``dynamic`` as in
    :func:`compilecache.jit` (``None``: a dimension seen with two sizes becomes dynamic).
    ``store``: a store (or hooks) instead of the configured one. ``options``: Inductor options
    for AOT packages; ``compile_options``: keyword arguments of ``torch.compile`` in JIT mode;
    ``strict``: strict ``torch.export``. ``key_ignore``: attribute paths from the module
    (``"config.some_field"``, ``"tokenizer"``) left out of its key: your assertion that they
    cannot change the compiled code (a path that names nothing raises
    :class:`~compilecache.CacheUsageError`). ``inplace``: route the module's own calls
    (``model(...)``, from a pipeline or any code holding it) through the compiled path until
    :func:`restore`, and return the module itself (see docs/generation.md).

    Returns a :class:`CompiledModule` for a module (its own methods, ``generate`` say, route
    the module's calls through it while they run), a function for a function.

    >>> fast = compilecache.torch.compile(model.eval())   # doctest: +SKIP
    >>> with torch.no_grad():                              # doctest: +SKIP
    ...     y = fast(x)
    """
    settings = {
        "mode": mode,
        "dynamic": dynamic,
        "store": store,
        "options": options,
        "compile_options": compile_options,
        "strict": strict,
        "recompile_limit": recompile_limit,
    }
    activate()  # model libraries in use: their cache classes as inputs and outputs
    if isinstance(key_ignore, str):
        key_ignore = (key_ignore,)
    if isinstance(model_or_fn, CompiledModule):
        model_or_fn = model_or_fn.module
    if isinstance(model_or_fn, torch.nn.Module):
        module = model_or_fn
        handle = ModelKey(module, tuple(key_ignore))
        backend, call = _build(handle, module, type(module), "forward", **settings)
        wrapper = CompiledModule(module, backend, call)
        if inplace:
            routing = wrapper._cc_routing
            routing.hold()
            routing.permanent = True
            return module
        return wrapper
    if inplace:
        raise CacheUsageError("inplace applies to modules; a function is not called in place")
    if key_ignore:
        raise CacheUsageError("key_ignore applies to modules; a function has no attributes")
    if not callable(model_or_fn) or not hasattr(model_or_fn, "__code__"):
        raise CacheUsageError(
            f"compilecache.torch.compile takes an nn.Module or a Python function, got "
            f"{type(model_or_fn).__name__}"
        )
    fn = model_or_fn
    owner = type(
        fn.__qualname__, (), {"__module__": fn.__module__, "__qualname__": fn.__qualname__}
    )
    backend, call = _build(fn, _FunctionModule(fn), owner, "call", **settings)

    @functools.wraps(fn)
    def compiled(*args: Any, **kwargs: Any) -> Any:
        return call(False, *args, **kwargs)

    compiled.__compilecache_torch__ = (backend, call)  # type: ignore[attr-defined]
    return compiled


def restore(model: torch.nn.Module) -> None:
    """Undo ``compile(model, inplace=True)``: ``model(...)`` runs the plain module again.
    Raises :class:`~compilecache.CacheUsageError` when ``model`` is not compiled in place."""
    routing = routing_of(model)
    if routing is None or not routing.permanent:
        raise CacheUsageError(
            f"{type(model).__name__} is not compiled in place "
            "(compilecache.torch.compile(model, inplace=True))"
        )
    routing.permanent = False
    routing.release()


def _takes_disable_compile(module: Any, generate: Callable[..., Any]) -> bool:
    """Whether ``generate`` is transformers' and takes ``disable_compile`` (the model's
    generation config has the flag, and the method takes it or any keyword)."""
    if not hasattr(getattr(module, "generation_config", None), "disable_compile"):
        return False
    try:
        parameters = inspect.signature(generate).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD or p.name == "disable_compile" for p in parameters)


def _parts(compiled: Any) -> tuple[TorchBackend, Callable[..., Any]]:
    routing = routing_of(compiled)
    if routing is not None and isinstance(routing.compiled, CompiledModule):
        compiled = routing.compiled
    if isinstance(compiled, CompiledModule):
        return compiled._cc_backend, compiled._cc_call
    found = getattr(compiled, "__compilecache_torch__", None)
    if found is None:
        raise CacheUsageError(f"{compiled!r:.80} was not made by compilecache.torch.compile")
    return found  # type: ignore[no-any-return]


def stats(compiled: Any) -> dict[str, Any]:
    """What ``compiled`` did in this process: dispatch counters (hits, misses, compiles,
    loads) and the torch backend's (AOT and JIT compiles and loads, fallbacks by reason), and
    the store tiers this process skipped because it could not trust them."""
    backend, call = _parts(compiled)
    result: dict[str, Any] = dict(dispatch_stats(call))
    result.update({k: v if not hasattr(v, "copy") else dict(v) for k, v in backend.stats.items()})
    result["entries by mode"] = [getattr(e.compiled, "mode", "?") for e in cache_entries(call)]
    result["skipped tiers"] = [str(decision) for decision in skipped_tiers()]
    return result


def explain(compiled: Any, *args: Any, **kwargs: Any) -> Any:
    """The artifact layer's explanation for ``compiled(*args, **kwargs)`` (would it load from
    the store, and if not, which key components differ from what is stored), with the torch
    backend's fallback reasons in ``fallbacks``."""
    from ..artifacts import explain as explain_call

    backend, call = _parts(compiled)
    routing = routing_of(compiled)
    if routing is not None:
        compiled = routing.compiled
    training = compiled._cc_training_flags() if isinstance(compiled, CompiledModule) else False
    report = explain_call(call, training, *args, **kwargs)
    report.fallbacks = dict(backend.stats["fallbacks"])  # type: ignore[attr-defined]
    return report
