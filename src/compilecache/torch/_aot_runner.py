"""The compiled callable of an AOT entry: a loaded package with the live weights bound.

Calls go straight to the C++ runner. Before each call the runner checks, cheaply, that the
tensors it bound are still the module's (the same objects: looked up again only after some
module registered a parameter, buffer or submodule; with the same dtype, device, shape and
strides: one C++ check of all of them). In-place changes need no check (the runner reads the
live storage); a replaced parameter is re-bound; a tensor whose dtype or shape changed makes
the entry stale, so the call is dispatched again (it then misses and compiles for the new key).
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .._errors import CacheError
from ._flat_plans import InputPlan
from ._package import ExportUnsupported, Unflatten, output_builder, resolve_tensor
from ._structures import carry_state_back

# Bumped whenever any module in the process registers a parameter, buffer or submodule
# (``m.fc.weight = nn.Parameter(...)`` included): runners re-check which tensors their module
# holds only then, instead of looking every tensor up on every call.
_registrations = [0]


def _registered(*args: Any) -> None:
    # Not while torch.compile traces: forward itself registers modules when it slices a
    # ModuleList (transformers' ``self.layers[:n]`` builds a new one per call). Traced, the
    # counter would be a global that forward mutates, guarded on by value: a recompile per
    # call until Dynamo's recompile limit, then eager.
    if not torch.compiler.is_compiling():
        _registrations[0] += 1


for _register in (
    torch.nn.modules.module.register_module_parameter_registration_hook,
    torch.nn.modules.module.register_module_buffer_registration_hook,
    torch.nn.modules.module.register_module_module_registration_hook,
):
    _register(_registered)


class StaleWeights(CacheError):
    """The module's tensors no longer fit the package (a dtype, device, shape or
    ``requires_grad`` changed, or a tensor it needs is gone)."""


@dataclass
class CallLayout:
    """How a call maps onto a package (stored with the entry).

    ``kwarg_order``: the keyword arguments in the order export saw them; ``tensor_kwargs``:
    those that are tensors (the others are guarded constants, not inputs of the package);
    ``flat``: no nesting (every positional argument a tensor): no pytree flattening per call;
    ``constant_names``: the package's names of constants that differ from the module's
    (AOTInductor renames a plain tensor attribute ``scale`` to ``_tensor_constant0``);
    ``captured``: constants forward itself made, by the package's name, bound by value;
    ``int_outputs``: the positions of flat outputs that are symbolic ints in the program (a
    cache's length: AOTInductor returns them as 0-dim tensors, the call gives Python ints).
    """

    kwarg_order: tuple[str, ...] = ()
    tensor_kwargs: tuple[str, ...] = ()
    flat: bool = True
    constant_names: dict[str, str] = field(default_factory=dict)
    captured: dict[str, torch.Tensor] = field(default_factory=dict)
    int_outputs: tuple[int, ...] = ()


class AotRunner:
    """``runner(training, *args, **kwargs)``: run the package on the call's tensors."""

    mode = "aot"

    def __init__(
        self,
        loader: Any,
        module: torch.nn.Module,
        layout: CallLayout,
        *,
        package: bytes | None = None,
    ) -> None:
        self.loader = loader
        self.module = module
        self.layout = layout
        self.flat = layout.flat
        self.kwarg_order = layout.kwarg_order
        self.tensor_kwargs = layout.tensor_kwargs
        self.package = package  # kept until saved, then dropped
        self._run = loader.run
        self._unflatten: Unflatten = output_builder(loader, layout.int_outputs)
        self._inputs = InputPlan()
        # The module's tensors, bound live and checked per call; captured ones are fixed.
        fqns = list(loader.get_constant_fqns())
        self._fqns: list[str] = [fqn for fqn in fqns if fqn not in layout.captured]
        # (AOTInductor drops constants the compiled code does not read, an empty tensor say.)
        self._captured = {fqn: layout.captured[fqn] for fqn in fqns if fqn in layout.captured}
        self._lock = threading.Lock()  # binding replaces constants other threads read
        self.bind()

    def _resolve(self) -> list[tuple[dict[str, Any], str, Any]]:
        names = self.layout.constant_names
        return [resolve_tensor(self.module, names.get(fqn, fqn)) for fqn in self._fqns]

    def bind(self) -> None:
        """Bind the module's current tensors into the package (raises ExportUnsupported when
        the module lacks one the package needs)."""
        found = self._resolve()
        self._holders = [holder for holder, _, _ in found]
        self._names = [name for _, name, _ in found]
        self._tensors = [tensor for _, _, tensor in found]
        self._meta = [tensor_meta(t) for t in self._tensors]
        self._check = tensor_check(self._tensors)
        self._seen = _registrations[0]
        if self._fqns or self._captured:
            # (constants, use the inactive buffer, check that every constant is given,
            # user-managed: the runner reads these very tensors, no copy)
            constants = dict(zip(self._fqns, self._tensors, strict=True))
            constants.update(self._captured)
            self.loader.load_constants(constants, False, True, True)

    def weights_current(self) -> bool:
        """Whether the bound tensors are still the module's, unchanged in dtype, device,
        shape, strides and ``requires_grad`` (an in-place change of values needs nothing).

        Every call: each tensor is still in the dict it was found in (one pass in C: catches
        a parameter set to None, buffers replaced by ``.to()``), and one C++ check of their
        metadata. After any module registered a parameter, buffer or submodule: every name is
        looked up again from the root (a replaced submodule)."""
        tensors = self._tensors
        if not all(map(operator.is_, map(dict.get, self._holders, self._names), tensors)):
            return False
        if self._seen != _registrations[0]:
            try:
                again = self._resolve()
            except ExportUnsupported:
                return False
            if not all(t is tensor for (_, _, t), tensor in zip(again, tensors, strict=True)):
                return False
            self._seen = _registrations[0]
        return self._check(*tensors)

    def refresh(self) -> None:
        """After :meth:`weights_current` said no: re-bind replaced tensors of the same kind, or
        raise :class:`StaleWeights` when their kind changed or one is gone."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        try:
            found = self._resolve()
        except ExportUnsupported as error:
            raise StaleWeights(error.reason) from None
        if [tensor_meta(tensor) for _, _, tensor in found] != self._meta:
            raise StaleWeights(
                "a parameter or buffer changed dtype, device, shape, layout or requires_grad"
            )
        self.bind()

    def __call__(self, training: Any, *args: Any, **kwargs: Any) -> Any:
        # One call at a time per runner: a rebinding (another thread replaced a parameter)
        # rewrites the constants a running call reads (AOTInductor's update of its constant
        # buffer takes no lock against runs). The package's one runner serializes calls
        # anyway, so the lock costs no parallelism, only its uncontended acquire.
        with self._lock:
            # weights_current(), inlined: this is every call's path.
            tensors = self._tensors
            if (
                not (
                    all(map(operator.is_, map(dict.get, self._holders, self._names), tensors))
                    and self._seen == _registrations[0]
                    and self._check(*tensors)
                )
                and not self.weights_current()
            ):
                self._refresh()
            if self.flat:
                flat = (
                    [*args, *map(kwargs.__getitem__, self.tensor_kwargs)] if kwargs else list(args)
                )
                return self._unflatten(self._run(flat))
            # Only tensors are inputs of the package: None, bools, ints and strings are
            # constants of its specialization (export bakes them in; the guards check them).
            root = (args, {name: kwargs[name] for name in self.kwarg_order})
            result = self._unflatten(self._run(self._inputs(root)))
        return carry_state_back((args, kwargs), result)


def tensor_meta(tensor: torch.Tensor) -> tuple[Any, ...]:
    return (
        tensor.dtype,
        tensor.device,
        tuple(tensor.shape),
        tensor.stride(),
        tensor.requires_grad,
    )


def tensor_check(tensors: list[torch.Tensor]) -> Callable[..., bool]:
    """One C++ check of every bound tensor's dtype, device, sizes, strides and flags
    (torch's TensorGuards; about 0.1 us a tensor against several in Python)."""
    if not tensors:
        return _always
    try:
        from torch._C._dynamo.guards import TensorGuards
    except ImportError:
        expected = [tensor_meta(t) for t in tensors]
        return lambda *current: [tensor_meta(t) for t in current] == expected
    make: Any = TensorGuards
    guards = make(
        *tensors,
        dynamic_dims_sizes=[list(t.shape) for t in tensors],
        dynamic_dims_strides=[list(t.stride()) for t in tensors],
    )
    return guards.check  # type: ignore[no-any-return]


def _always(*tensors: Any) -> bool:
    return True
