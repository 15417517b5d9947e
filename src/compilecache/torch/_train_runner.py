"""The compiled callable of a training entry: two loaded packages glued by autograd.

A call runs :class:`_Step` (an ``autograd.Function``): its forward runs the forward package
on the module's parameters and buffers and the call's tensors, copies the new values of
tensors forward updates in place (BatchNorm's running statistics) into them, marks outputs
that carry no gradient, and saves what the backward needs; its backward runs the backward
package on the saved tensors and the incoming gradients (copied to the layout the graph was
traced with: AOTInductor checks no input, and an expanded gradient read as dense is
garbage). Parameters
are inputs, so ``.grad`` accumulates on the module's own tensors and weights are live by
construction. The backward is once-differentiable: a double backward raises.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from ._aot_runner import StaleWeights, _registrations, tensor_check, tensor_meta
from ._package import ExportUnsupported, resolve_tensor
from ._train_capture import TrainLayout, size_carrier


class TrainRunner:
    """``runner(training, *args, **kwargs)``: forward through the forward package, backward
    (when ``backward()`` reaches it) through the backward package."""

    mode = "aot-train"

    def __init__(
        self,
        forward: Any,
        backward: Any,
        module: torch.nn.Module,
        layout: TrainLayout,
        packages: tuple[bytes, bytes] | None = None,
    ) -> None:
        from torch.utils import _pytree as pytree

        self.forward_run = forward.run
        self.backward_run = backward.run
        self._loaders = (forward, backward)
        self.module = module
        self.layout = layout
        self.packages = packages  # kept until saved, then dropped
        self._out_spec = pytree.treespec_loads(layout.out_spec)
        self._constant_outputs = [leaf[0] == "constant" for leaf in layout.out_leaves]
        self.bind()

    def bind(self) -> None:
        try:
            found = [resolve_tensor(self.module, fqn) for fqn in self.layout.tensors]
        except ExportUnsupported as error:
            raise StaleWeights(error.reason) from None
        self._holders = [holder for holder, _, _ in found]
        self._names = [name for _, name, _ in found]
        self._tensors = [tensor for _, _, tensor in found]
        self._meta = [tensor_meta(t) for t in self._tensors]
        self._check = tensor_check(self._tensors)
        self._seen = _registrations[0]

    def _current(self) -> list[torch.Tensor]:
        """The module's tensors, the bound ones unless some were replaced (then re-bound
        when of the same kind; :class:`StaleWeights` when a kind changed)."""
        tensors = self._tensors
        if (
            all(map(operator.is_, map(dict.get, self._holders, self._names), tensors))
            and self._seen == _registrations[0]
            and self._check(*tensors)
        ):
            return tensors
        before = self._meta
        self.bind()
        if self._meta != before:
            raise StaleWeights(
                "a parameter or buffer changed dtype, device, shape, layout or requires_grad"
            )
        return self._tensors

    def __call__(self, training: Any, *args: Any, **kwargs: Any) -> Any:
        from torch.utils import _pytree as pytree

        leaves = pytree.tree_leaves((args, kwargs))
        inputs = [leaves[i] for i in self.layout.inputs]
        step: Any = _Step.apply
        outputs = step(self, *self._current(), *inputs)
        flat = [
            leaf[1] if constant else outputs[leaf[1]]
            for leaf, constant in zip(self.layout.out_leaves, self._constant_outputs, strict=True)
        ]
        return pytree.tree_unflatten(flat, self._out_spec)


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, runner: TrainRunner, *inputs: torch.Tensor) -> Any:
        layout = runner.layout
        results = runner.forward_run(list(inputs))
        start = len(layout.mutated)
        for position, value in zip(layout.mutated, results, strict=False):
            inputs[position].copy_(value)  # (no grad here: autograd runs forward without)
        end = len(results) - layout.sizes
        user = results[start : start + layout.user_outputs]
        ctx.runner = runner
        ctx.save_for_backward(*results[start + layout.user_outputs : end])
        ctx.sizes = [int(size) for size in results[end:]]
        if layout.non_differentiable:
            ctx.mark_non_differentiable(*(user[i] for i in layout.non_differentiable))
        return tuple(user)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor) -> Any:
        runner: TrainRunner = ctx.runner
        tangents = [
            _laid_out(grads[output], contiguous, strides)
            for output, contiguous, strides in runner.layout.tangents
        ]
        saved = ctx.saved_tensors
        carriers = [size_carrier(size, saved) for size in ctx.sizes]
        return (None, *runner.backward_run([*carriers, *saved, *tangents]))


def _laid_out(grad: torch.Tensor, contiguous: bool, strides: list[int] | None) -> torch.Tensor:
    if contiguous:
        return grad.contiguous()
    if strides is not None and list(grad.stride()) != strides:
        copy = torch.empty_strided(grad.shape, strides, dtype=grad.dtype, device=grad.device)
        return copy.copy_(grad)
    return grad
