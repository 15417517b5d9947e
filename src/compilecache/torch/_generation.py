"""Which dimensions of a generating model's calls are dynamic from the first compile.

A transformers model that generates is called with token inputs (``input_ids``,
``attention_mask``, ``position_ids``, ...: batch and sequence), a ``cache_position`` (sequence)
and a key/value cache (``past_key_values``: tensors of batch, heads, sequence, head size).
Prefill and decode differ in structure (an empty cache, one new token), so each is its own
specialization; within each, every prompt length, cache length and batch size must share
one package. Automatic dynamic would compile each static first and dynamic on the next size
(a decode package per prompt length until then); naming the dimensions makes the first
compile dynamic (for calls without gradients: a training call starts static). Sizes 0 and 1
stay static (torch.export specializes them): a one-token
decode's sequence dimension is 1, and batch size 1 gets its own package on the first call.

A static cache (``cache_implementation="static"``: a ``StaticCache`` of ``Static*`` layers)
has a fixed length, ``max_cache_len``, which its code reads as an int: only its batch is
dynamic, as is only the batch of the 4-dim attention mask generate makes for it. Its ints
(``max_cache_len``, the batch size it was made for) are guarded like any int: another value
is another specialization, and one that varies again falls back (AOT packages bake ints in).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch

from ..dispatch._guards import Path

#: Keyword arguments of transformers models, by name: the dimensions that vary between calls.
TOKEN_DIMS: dict[str, dict[int, tuple[int, ...]]] = {
    # name: {number of dims: dynamic dims}
    "input_ids": {2: (0, 1)},
    "attention_mask": {2: (0, 1)},
    "position_ids": {2: (0, 1), 1: (0,)},
    "token_type_ids": {2: (0, 1)},
    "inputs_embeds": {3: (0, 1)},
    "cache_position": {1: (0,)},
    "decoder_input_ids": {2: (0, 1)},
    "decoder_attention_mask": {2: (0, 1)},
    "decoder_position_ids": {2: (0, 1)},
    "decoder_inputs_embeds": {3: (0, 1)},
}
#: Arguments holding key/value caches: their 4-dim tensors are (batch, heads, sequence, size).
CACHE_ARGUMENTS = frozenset({"past_key_values", "encoder_outputs"})
_CACHE_DIMS = {4: (0, 2), 3: (0, 1)}
#: A static cache's tensors (and the mask made for it): their length is the cache's, fixed.
_BATCH_ONLY = (0,)


def generates(module: torch.nn.Module) -> bool:
    """Whether ``module`` is a model that generates (transformers' ``GenerationMixin``)."""
    return any(
        klass.__name__ == "GenerationMixin" and klass.__module__.startswith("transformers")
        for klass in type(module).__mro__
    ) and callable(getattr(module, "generate", None))


class GenerationDims:
    """The ``dynamic_dims`` hint of a generating model's adapter
    (``forward(training, /, *args, **kwargs)``): positional arguments are named by forward's
    signature."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        parameters = inspect.signature(module.forward).parameters.values()
        self.positional = [
            p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]

    def __call__(self, path: Path, value: Any, within: tuple[type, ...] = ()) -> Iterable[int]:
        if len(path) < 2 or path[0][0] != "arg" or self._training():
            return ()
        name = self._name(path[0][1], path[1])
        if name is None:
            return ()
        ndim = len(value.shape)
        if len(path) == 2 and name == "attention_mask" and ndim == 4:
            return _BATCH_ONLY  # (batch, 1, query, cache length): made for a static cache
        if len(path) == 2 and name in TOKEN_DIMS:
            return TOKEN_DIMS[name].get(ndim, ())
        if name in CACHE_ARGUMENTS:
            if any(kind.__name__.startswith("Static") for kind in within):
                return _BATCH_ONLY if ndim >= 3 else ()
            return _CACHE_DIMS.get(ndim, ())
        return ()

    def _training(self) -> bool:
        """A call that needs gradients (training batches keep their sizes, mostly: it starts
        static, and automatic dynamic applies if they vary)."""
        return torch.is_grad_enabled() and any(p.requires_grad for p in self.module.parameters())

    def _name(self, argument: str, step: tuple[Any, ...]) -> str | None:
        if argument == "kwargs" and step[0] == "key":
            return str(step[1])
        if argument == "args" and step[0] == "item" and step[1] < len(self.positional):
            return self.positional[int(step[1])]
        return None
