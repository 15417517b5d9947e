"""The torch backend: AOT packages where the call is inference, torch.compile otherwise.

Modes: ``"aot"`` (export + AOTInductor; raise :class:`AOTUnavailableError` naming the reason
when a call cannot be compiled ahead of time), ``"jit"`` (torch.compile), ``"auto"`` (AOT, and
JIT for a specialization AOT cannot serve, with the reason recorded). A call that needs
gradients (grad enabled, and an input or parameter requires grad) gets a training entry (a
forward and a backward package, ``_train_capture``); any other call is inference, AOT-able
when the module is in eval mode. Once export fails for a model because of its code
(data-dependent control flow, unsupported constructs, a tensor that cannot be bound live),
later specializations of the same kind (inference or training) go straight to JIT: export is
not retried per call. A failure caused by the call's inputs is not
remembered; ``CompiledModule.reset()`` forgets the others.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

import torch

from .._errors import BackendError
from ..dispatch import Specialization
from . import _artifact as artifact
from ._aot_runner import AotRunner, CallLayout
from ._environment import machine_options, torch_identity
from ._jit_runner import JitRunner, load_torch_artifacts, save_torch_artifacts
from ._package import (
    ExportUnsupported,
    compile_package,
    constant_names,
    export_program,
    int_outputs,
    open_loader,
)
from ._structures import SCALARS
from ._train_capture import capture, compile_training
from ._train_runner import TrainRunner

MODES = ("auto", "aot", "jit")

logger = logging.getLogger("compilecache.torch")


class AOTUnavailableError(BackendError):
    """``mode="aot"`` and this call cannot be compiled ahead of time (the message says why)."""


class TorchBackend:
    """Compiles one module (or function, wrapped as a module) for the dispatch layer."""

    packages = ("torch",)
    #: torch.export specializes sizes 0 and 1 (a dynamic dimension exported from an example of
    #: size 1 fails): such a dimension is compiled static, and a later size compiles again.
    static_sizes = (0, 1)

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        mode: str = "auto",
        options: dict[str, Any] | None = None,
        compile_options: dict[str, Any] | None = None,
        strict: bool = False,
    ) -> None:
        self.module = module
        self.mode = mode
        self.strict = strict
        self.inductor_options = dict(options or {})
        self.compile_options = dict(compile_options or {})
        self.name = f"torch-{mode}"
        identity = torch_identity()
        self.version = f"{identity['torch']} {identity['git']}"
        self.options = {
            "mode": mode,
            "inductor": self.inductor_options,
            "torch.compile": self.compile_options,
            "strict export": strict,
            **machine_options("jit" if mode == "jit" else "aot"),
        }
        self.stats: dict[str, Any] = {
            "aot compiles": 0,
            "aot loads": 0,
            "jit compiles": 0,
            "jit loads": 0,
            "fallbacks": collections.Counter(),
            "bypasses": collections.Counter(),
        }
        self.export_failure: str | None = None
        self.train_failure: str | None = None  # the same, for calls that need gradients
        self._warned: set[str] = set()
        self._jit_module: Callable[..., Any] | None = None
        self._lock = threading.Lock()

    # -- compiling -------------------------------------------------------------------------
    def __call__(
        self,
        fn: Callable[..., Any],
        example_args: tuple[Any, ...],
        example_kwargs: dict[str, Any],
        spec: Specialization,
    ) -> Callable[..., Any]:
        args = example_args[1:]  # the first argument is the module's training flag
        if self.mode == "jit":
            return self._jit(None)
        training = self._needs_gradients(args, example_kwargs)
        reason = self._aot_blocker(training)
        if reason is None:
            try:
                if training:
                    return self._aot_train(args, example_kwargs, spec)
                return self._aot(args, example_kwargs, spec)
            except ExportUnsupported as error:
                reason = error.reason
                if error.permanent and training:
                    self.train_failure = reason
                elif error.permanent:
                    # The code's doing (data-dependent control flow, a tensor that cannot be
                    # bound): every shape would fail the same way. Errors of this call's
                    # inputs (a wrong shape), or of dynamic dimensions that must be static,
                    # leave other specializations free to try.
                    self.export_failure = reason
            except Exception as error:  # anything else on the way to a package: a fallback
                logger.debug("compiling ahead of time failed", exc_info=True)
                reason = f"compiling ahead of time failed: {type(error).__name__}: {error}"[:300]
        if self.mode == "aot":
            raise AOTUnavailableError(
                f"cannot compile {type(self.module).__qualname__} ahead of time: {reason}. "
                'Use mode="auto" to fall back to torch.compile, or fix the cause'
            )
        self.stats["fallbacks"][reason] += 1
        if reason not in self._warned:
            # Once per model and reason: the warm start is torch.compile's (seconds), not an
            # AOT package's (milliseconds).
            self._warned.add(reason)
            logger.warning(
                "%s: compiling with torch.compile instead of ahead of time, so warm starts "
                "take seconds: %s",
                type(self.module).__qualname__,
                reason,
            )
        return self._jit(reason)

    def bypassed(self, reason: str) -> None:
        """The artifact layer could not key a call of this model (it is not stored)."""
        self.stats["bypasses"][reason] += 1

    def _needs_gradients(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        if not torch.is_grad_enabled():
            return False
        from torch.utils._pytree import tree_leaves

        return any(p.requires_grad for p in self.module.parameters()) or any(
            isinstance(t, torch.Tensor) and t.requires_grad for t in tree_leaves((args, kwargs))
        )

    def _aot_blocker(self, training: bool) -> str | None:
        if training:
            return self.train_failure
        if self.export_failure is not None:
            return self.export_failure
        if any(m.training for m in self.module.modules()):
            return (
                "the module is in training mode without gradients (call .eval() for "
                "inference, or enable grad to train)"
            )
        return None

    def _aot(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], spec: Specialization
    ) -> AotRunner:
        program, made = export_program(self.module, args, kwargs, spec, strict=self.strict)
        names = constant_names(program)
        layout = CallLayout(
            kwarg_order=tuple(kwargs),
            tensor_kwargs=tuple(k for k, v in kwargs.items() if isinstance(v, torch.Tensor)),
            flat=_flat(args, kwargs),
            constant_names={fqn: name for fqn, name in names.items() if name not in made},
            captured={fqn: made[name] for fqn, name in names.items() if name in made},
            int_outputs=int_outputs(program),
        )
        package = compile_package(program, self.inductor_options)
        runner = self._runner(package, layout)
        runner.package = package
        self.stats["aot compiles"] += 1
        logger.info(
            "%s: compiled ahead of time (%d-byte package)",
            type(self.module).__qualname__,
            len(package),
        )
        return runner

    def _aot_train(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], spec: Specialization
    ) -> TrainRunner:
        # Compiling runs the forward graph on real examples, which draws from the random
        # generators (dropout): their state is put back, so the call's masks are eager's.
        with _generators_kept(self.module, args, kwargs):
            plan, inputs = capture(self.module, args, kwargs, spec)
            packages = compile_training(plan, inputs, self.inductor_options)
        runner = self._train_runner(plan.layout, *packages)
        runner.packages = packages
        self.stats["aot compiles"] += 1
        logger.info(
            "%s: compiled a training step ahead of time (%d- and %d-byte packages)",
            type(self.module).__qualname__,
            *map(len, packages),
        )
        return runner

    def _train_runner(self, layout: Any, forward: bytes, backward: bytes) -> TrainRunner:
        try:
            loaders = open_loader(forward), open_loader(backward)
        except Exception as error:
            raise ExportUnsupported(f"a training package does not load: {error}") from error
        return TrainRunner(*loaders, self.module, layout)

    def _runner(self, package: bytes | memoryview, layout: CallLayout) -> AotRunner:
        try:
            loader = open_loader(bytes(package))
        except Exception as error:
            raise ExportUnsupported(f"the package does not load: {error}") from error
        return AotRunner(loader, self.module, layout)

    def forget_failures(self) -> None:
        """Let export be tried again (after the model changed)."""
        self.export_failure = None
        self.train_failure = None

    def _jit(self, reason: str | None, *, ready: bool = False) -> JitRunner:
        with self._lock:
            if self._jit_module is None:
                self._jit_module = torch.compile(self.module, **self.compile_options)
        if not ready:
            self.stats["jit compiles"] += 1
        return JitRunner(self._jit_module, ready=ready, fallback_reason=reason)

    # -- persistence (the artifact layer calls these) --------------------------------------
    def dumps(self, compiled: Any) -> bytes:
        if isinstance(compiled, AotRunner):
            if compiled.package is None:
                raise ValueError("this AOT entry's package was already saved or was loaded")
            header, captured = artifact.layout_header(compiled.layout)
            data = artifact.pack(header, captured + bytes(compiled.package))
            compiled.package = None  # the bytes are in the store now; do not hold them
            return data
        if isinstance(compiled, TrainRunner):
            if compiled.packages is None:
                raise ValueError("this training entry's packages were already saved or loaded")
            forward, backward = compiled.packages
            compiled.packages = None
            return artifact.pack(
                artifact.train_header(compiled.layout, forward), forward + backward
            )
        if isinstance(compiled, JitRunner):
            header = {
                "mode": "jit",
                "fallback": compiled.fallback_reason,
                # The reason holds for every shape: a loading process need not try export.
                "export fails": compiled.fallback_reason is not None
                and compiled.fallback_reason == self.export_failure,
                "training fails": compiled.fallback_reason is not None
                and compiled.fallback_reason == self.train_failure,
                "kwargs": [],
                "flat": True,
            }
            return artifact.pack(header, save_torch_artifacts())
        raise TypeError(f"not a torch entry: {type(compiled).__name__}")

    def loads(self, data: bytes) -> Callable[..., Any]:
        header, payload = artifact.unpack(data)
        if header["mode"] == "aot":
            try:
                layout, package = artifact.read_layout(header, payload)
                runner = self._runner(package, layout)
            except ExportUnsupported as error:
                raise artifact.TorchArtifactError(error.reason) from error
            self.stats["aot loads"] += 1
            return runner
        if header["mode"] == "aot-train":
            train_layout, forward, backward = artifact.read_train(header, payload)
            try:
                train = self._train_runner(train_layout, forward, backward)
            except ExportUnsupported as error:
                raise artifact.TorchArtifactError(error.reason) from error
            self.stats["aot loads"] += 1
            return train
        reason = header.get("fallback")
        if self.mode == "aot":
            raise artifact.TorchArtifactError("the stored entry is a JIT entry, and mode is aot")
        load_torch_artifacts(bytes(payload))
        self.stats["jit loads"] += 1
        if reason:
            if header.get("export fails") and self.export_failure is None:
                self.export_failure = str(reason)
            if header.get("training fails") and self.train_failure is None:
                self.train_failure = str(reason)
            self.stats["fallbacks"][reason] += 1
        return self._jit(reason, ready=True)


def _generators_kept(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Restore, on leaving, the state of the CPU generator and of the generators of the
    accelerator the call's tensors are on."""
    from torch.utils._pytree import tree_leaves

    tensors = [*module.parameters(), *module.buffers(), *tree_leaves((args, kwargs))]
    kinds = {t.device.type for t in tensors if isinstance(t, torch.Tensor)} - {"cpu", "meta"}
    if not kinds:
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(device_type=sorted(kinds)[0])


def _flat(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """No nesting: every positional argument a tensor, every keyword argument a tensor or a
    constant (guarded, so the same for every call of the entry; not an input of the package)."""
    return all(isinstance(v, torch.Tensor) for v in args) and all(
        isinstance(v, (torch.Tensor, *SCALARS)) for v in kwargs.values()
    )
