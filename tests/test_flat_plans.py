"""The flat plans of AOT packages (torch/_flat_plans.py): the first call's structure read
once, later calls built from it. Checked against pytree on real transformers outputs and
caches (tiny GPT-2 and T5, random init): the same types, attributes and tensors at the same
places."""

from __future__ import annotations

from typing import Any

from torchhelpers import require_torch

torch = require_torch()

from torch.utils import _pytree as pytree  # noqa: E402

from compilecache.torch import _zoo  # noqa: E402
from compilecache.torch._flat_plans import InputPlan, OutputPlan  # noqa: E402
from compilecache.torch._model_libraries import activate  # noqa: E402


def same(a: Any, b: Any) -> bool:
    """Structurally equal, tensors by identity."""
    if isinstance(b, torch.Tensor):
        return a is b
    if type(a) is not type(b):
        return False
    if isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(b, dict) and (list(a) != list(b) or not all(same(a[k], b[k]) for k in b)):
        return False
    if hasattr(b, "__dict__"):
        return list(vars(a)) == list(vars(b)) and all(same(vars(a)[k], vars(b)[k]) for k in vars(b))
    return bool(a == b)


def decode_call() -> tuple[Any, Any]:
    model = _zoo.build("gpt2")
    activate()  # what compile() does: transformers' caches registered with pytree
    ids = torch.randint(1, 100, (2, 6))
    with torch.no_grad():
        first = model(input_ids=ids, use_cache=True)
        step = {
            "input_ids": ids[:, -1:],
            "past_key_values": first.past_key_values,
            "use_cache": True,
        }
        return model(**step), step


def test_the_output_plan_rebuilds_a_model_output_holding_a_cache_as_pytree_does() -> None:
    out, _ = decode_call()
    flat, spec = pytree.tree_flatten(out)
    assert any(type(leaf).__name__ == "Tensor" for leaf in flat) and len(flat) > 2
    plan = OutputPlan(spec)
    assert same(plan(flat), pytree.tree_unflatten(flat, spec))  # the first call: pytree
    assert plan._build is not None, "no plan was made for a ModelOutput with a DynamicCache"
    again = [leaf.clone() for leaf in flat]
    made, want = plan(again), pytree.tree_unflatten(again, spec)
    assert type(made).__name__ == "CausalLMOutputWithCrossAttentions"
    assert same(made, want)
    assert made.past_key_values is not plan(again).past_key_values  # a new cache per call


def test_the_input_plan_reads_the_tensors_pytree_would_in_its_order() -> None:
    _, step = decode_call()
    root = ((), step)
    plan = InputPlan()
    want = [leaf for leaf in pytree.tree_leaves(root) if isinstance(leaf, torch.Tensor)]
    got = plan(root)
    assert len(got) == len(want) > 2 and all(map(same, got, want))
    assert plan._paths is not None, "no plan was made for a DynamicCache input"
    # Another call of the same structure, other tensors: read from the same places.
    _, other = decode_call()
    root = ((), other)
    want = [leaf for leaf in pytree.tree_leaves(root) if isinstance(leaf, torch.Tensor)]
    assert all(map(same, plan(root), want))


def test_a_tensor_returned_twice_keeps_pytree() -> None:
    shared = torch.ones(1)
    flat, spec = pytree.tree_flatten({"a": shared, "b": [shared]})
    plan = OutputPlan(spec)
    made = plan(flat)
    assert made["a"] is made["b"][0] is shared
    assert plan._build is None  # where each goes is ambiguous: every call unflattens
