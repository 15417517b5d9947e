"""Real transformers and diffusers models: their configs keyed (local fields left out), bypasses
warned about and counted, key_ignore, keyword calls with constants, ModelOutput and cache
classes in and out of AOT packages. Real libraries, tiny seeded configs, no downloads."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from torchhelpers import require_torch

torch = require_torch()

import compilecache.torch as cct  # noqa: E402
import torchmodels  # noqa: E402
from compilecache import CacheUsageError  # noqa: E402
from compilecache.artifacts import ArtifactHooks  # noqa: E402
from compilecache.stores import DiskStore  # noqa: E402
from compilecache.torch import _zoo  # noqa: E402

pytestmark = pytest.mark.slow


def max_difference(a: Any, b: Any) -> float:
    from torch.utils._pytree import tree_leaves

    left, right = tree_leaves(a), tree_leaves(b)
    assert len(left) == len(right)
    return max(float((x - y).abs().max()) for x, y in zip(left, right, strict=True))


def key_of(model: Any, store: Any, **inputs: Any) -> str | None:
    with torch.no_grad():
        report = cct.explain(cct.compile(model, store=store), **inputs)
    assert report.bypass is None, report.bypass
    return report.key


@pytest.fixture
def store(tmp_path: Path) -> DiskStore:
    return DiskStore(tmp_path / "store")


# -- keys ----------------------------------------------------------------------------------------
def test_hf_config_is_keyed_without_where_the_checkpoint_was_loaded_from(
    tmp_path: Path, store: DiskStore
) -> None:
    import transformers

    inputs = _zoo.inputs("gpt2")
    built = key_of(_zoo.build("gpt2"), store, **inputs)
    assert built == key_of(_zoo.build("gpt2"), store, **inputs)
    loaded = []
    for directory in ("first", "second"):
        _zoo.build("gpt2").save_pretrained(tmp_path / directory)
        loaded.append(transformers.GPT2LMHeadModel.from_pretrained(tmp_path / directory).eval())
    assert loaded[0].config._name_or_path != loaded[1].config._name_or_path
    assert key_of(loaded[0], store, **inputs) == key_of(loaded[1], store, **inputs)


def test_hf_config_fields_that_change_the_code_change_the_key(store: DiskStore) -> None:
    inputs = _zoo.inputs("gpt2")
    base = key_of(_zoo.build("gpt2"), store, **inputs)
    eager_attention = _zoo.build("gpt2")
    # Not in PretrainedConfig.to_dict(), yet it selects the attention kernel.
    eager_attention.config._attn_implementation = "eager"
    assert key_of(eager_attention, store, **inputs) != base
    other_eps = _zoo.build("gpt2")
    other_eps.config.layer_norm_epsilon = 1e-3
    assert key_of(other_eps, store, **inputs) != base


def test_diffusers_config_is_keyed_without_where_it_was_loaded_from(
    tmp_path: Path, store: DiskStore
) -> None:
    import diffusers

    inputs = _zoo.inputs("unet2d")
    loaded = []
    for directory in ("first", "second"):
        _zoo.build("unet2d").save_pretrained(tmp_path / directory)
        loaded.append(diffusers.UNet2DModel.from_pretrained(tmp_path / directory).eval())
    assert loaded[0].config["_name_or_path"] != loaded[1].config["_name_or_path"]
    assert key_of(loaded[0], store, **inputs) == key_of(loaded[1], store, **inputs)
    changed = _zoo.build("unet2d")
    changed.register_to_config(center_input_sample=True)
    assert key_of(changed, store, **inputs) != key_of(loaded[0], store, **inputs)


def test_importing_compilecache_torch_imports_neither_library() -> None:
    code = (
        "import sys, compilecache.torch\n"
        "print('transformers' in sys.modules, 'diffusers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- bypasses ------------------------------------------------------------------------------------
class WithTokenizer(torchmodels.MLP):
    def __init__(self) -> None:
        super().__init__()
        self.tokenizer = _Tokenizer()


class _Tokenizer:
    def __init__(self) -> None:
        self.vocabulary = {"a": 0}
        self.lock = threading.Lock()  # no stable encoding


def test_an_unkeyable_attribute_warns_once_is_counted_and_can_be_vouched_for(
    store: DiskStore, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    model = WithTokenizer().eval()
    hooks = ArtifactHooks(store)
    fast = cct.compile(model, store=hooks)
    x = torch.randn(3, 16)
    with caplog.at_level(logging.WARNING), torch.no_grad():
        assert max_difference(fast(x), model(x)) <= 1e-5  # still compiled and correct
        fast(torch.randn(5, 16))  # a second compile (automatic dynamic): one warning still
    warnings = [r for r in caplog.records if "not persisting" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    message = warnings[0].getMessage()
    assert "tokenizer.lock" in message and 'key_ignore=("tokenizer.lock",)' in message
    stats = cct.stats(fast)
    assert sum(stats["bypasses"].values()) == 2 and stats["aot compiles"] == 2
    assert hooks.stats.saved == 0 and sum(hooks.stats.bypasses.values()) == 2
    with torch.no_grad():
        report = cct.explain(fast, x)
    assert report.bypass is not None and "tokenizer.lock" in report.bypass
    # The user vouches that the tokenizer cannot change the compiled code.
    vouched = cct.compile(model, store=hooks, key_ignore=("tokenizer.lock",))
    with torch.no_grad():
        assert cct.explain(vouched, x).bypass is None
    with pytest.raises(CacheUsageError, match=r"'tokenizer\.missing' names nothing"):
        cct.compile(model, key_ignore=("tokenizer.missing",))


def test_bypasses_reach_the_persisted_counters_and_the_stats_command(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from compilecache.cli import main

    model = WithTokenizer().eval()
    hooks = ArtifactHooks(DiskStore(tmp_path / "cache"))
    with torch.no_grad():
        cct.compile(model, store=hooks, mode="jit")(torch.randn(2, 16))
    hooks.recorder.flush()
    result = CliRunner().invoke(
        main, ["stats", "--json"], env={"COMPILECACHE_DIR": str(tmp_path / "cache")}
    )
    assert result.exit_code == 0, result.output
    assert "tokenizer.lock" in result.output


# -- structured inputs and outputs ---------------------------------------------------------------
def test_keyword_calls_with_constants_return_the_model_output(store: DiskStore) -> None:
    model = _zoo.build("gpt2")
    fast = cct.compile(model, store=store)
    ids = _zoo.inputs("gpt2")["input_ids"]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        out = fast(input_ids=ids, attention_mask=mask, use_cache=False, return_dict=True)
        expected = model(input_ids=ids, attention_mask=mask, use_cache=False, return_dict=True)
        assert type(out) is type(expected) and list(out.keys()) == list(expected.keys())
        assert max_difference(out.logits, expected.logits) <= 1e-5
        again = fast(return_dict=True, use_cache=False, attention_mask=mask, input_ids=ids)
        assert cct.stats(fast)["hits"] == 1, "the order of keyword arguments is not a miss"
        assert max_difference(again.logits, expected.logits) <= 1e-5
        hidden = fast(
            input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True
        )
    assert cct.stats(fast)["compiles"] == 2, "another constant is another specialization"
    assert len(hidden.hidden_states) == 3
    assert cct.stats(fast)["entries by mode"] == ["aot", "aot"]


def test_a_dynamic_cache_goes_in_and_out_and_is_updated_in_place(store: DiskStore) -> None:
    model = _zoo.build("gpt2-cache")
    # Static shapes: a dynamic decode package (the cache's length free) is the generation
    # issue's; here each step is its own specialization.
    fast = cct.compile(model, store=store, dynamic=False)
    prompt = _zoo.inputs("gpt2-cache", batch=2)
    with torch.no_grad():
        out = fast(**prompt)
        expected = model(**_zoo.inputs("gpt2-cache", batch=2))
        assert type(out.past_key_values) is type(expected.past_key_values)
        assert max_difference(out, expected) <= 1e-5
        cache, eager_cache = out.past_key_values, expected.past_key_values
        for step in range(2):  # decode steps: the cache grows by one position each
            token = out.logits[:, -1:].argmax(-1)
            mask = torch.ones(2, 8 + step + 1, dtype=torch.long)
            out = fast(input_ids=token, attention_mask=mask, past_key_values=cache, use_cache=True)
            expected = model(
                input_ids=token, attention_mask=mask, past_key_values=eager_cache, use_cache=True
            )
            assert out.past_key_values is cache, "the cache passed in is the one updated, as eager"
            assert cache.get_seq_length() == eager_cache.get_seq_length() == 8 + step + 1
            assert max_difference(out.logits, expected.logits) <= 1e-5
            assert max_difference(cache.layers[0].keys, eager_cache.layers[0].keys) <= 1e-5
    stats = cct.stats(fast)
    assert set(stats["entries by mode"]) == {"aot"} and stats["fallbacks"] == {}
    assert stats["compiles"] == 3  # the prefill and two decode steps


class _Opaque:
    def __init__(self, tensor: Any) -> None:
        self.tensor = tensor


class _TakesState(torch.nn.Module):
    def forward(self, x: Any, state: Any) -> Any:
        return x + state.tensor


def test_an_input_that_cannot_be_flattened_falls_back_with_the_reason(store: DiskStore) -> None:
    model = _TakesState().eval()
    fast = cct.compile(model, store=store)
    x = torch.randn(3)
    with torch.no_grad():
        assert max_difference(fast(x, _Opaque(torch.ones(3))), x + 1) <= 1e-6
    reasons = list(cct.stats(fast)["fallbacks"])
    assert len(reasons) == 1 and "_Opaque" in reasons[0] and "pytree" in reasons[0], reasons


# -- review regressions --------------------------------------------------------------------------
class _Stats(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(4))


_GLOBAL_STATS = _Stats()


class _UsesGlobalStats(torch.nn.Module):
    def forward(self, x: Any) -> Any:
        return x - _GLOBAL_STATS.mean


def test_a_tensor_another_module_holds_is_not_frozen_into_the_package(store: DiskStore) -> None:
    """A buffer of a module the model reaches through a global is lifted by export as a
    constant the model does not hold: freezing its value into a stored package would serve
    the old value after a new checkpoint is loaded into it."""
    fast = cct.compile(_UsesGlobalStats().eval(), store=store)
    x = torch.randn(2, 4)
    with torch.no_grad():
        assert max_difference(fast(x), x) <= 1e-6
        _GLOBAL_STATS.mean.fill_(1.0)
        assert max_difference(fast(x), x - 1.0) <= 1e-6
        _GLOBAL_STATS.mean.zero_()
    assert cct.stats(fast)["entries by mode"] == ["jit"]
    assert any("does not hold" in reason for reason in cct.stats(fast)["fallbacks"])


class _Pair(NamedTuple):
    left: Any
    right: Any


class _TakesPair(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, pair: _Pair) -> Any:
        return self.fc(pair.left) + pair.right


def test_dynamic_dimensions_inside_a_named_tuple_are_exported_dynamic(store: DiskStore) -> None:
    torch.manual_seed(0)
    model = _TakesPair().eval()
    fast = cct.compile(model, store=store)
    with torch.no_grad():
        for batch in (4, 8, 16):
            pair = _Pair(torch.randn(batch, 4), torch.randn(batch, 4))
            assert max_difference(fast(pair), model(pair)) <= 1e-5
    assert cct.stats(fast)["compiles"] == 2  # static, then dynamic for every batch


class _HoldsExtras(torchmodels.MLP):
    def __init__(self) -> None:
        super().__init__()
        self.extras = {"tokenizer": _Tokenizer()}


def test_a_bypass_through_a_container_suggests_a_path_that_works(
    store: DiskStore, caplog: pytest.LogCaptureFixture
) -> None:
    model = _HoldsExtras().eval()
    x = torch.randn(2, 16)
    with caplog.at_level(logging.WARNING), torch.no_grad():
        report = cct.explain(cct.compile(model, store=store), x)
    assert report.bypass is not None and 'key_ignore=("extras",)' in report.bypass, report.bypass
    with torch.no_grad():
        assert cct.explain(cct.compile(model, store=store, key_ignore="extras"), x).bypass is None
    with pytest.raises(CacheUsageError, match="not properties or keys of a dict"):
        cct.compile(model, key_ignore=("extras.tokenizer",))


def test_carrying_state_back_updates_nested_state_objects_in_place() -> None:
    from compilecache.dispatch import register_state_type
    from compilecache.torch._structures import carry_state_back

    class Layer:
        def __init__(self, keys: Any) -> None:
            self.keys = keys

    class Inner:
        def __init__(self, layers: list[Any]) -> None:
            self.layers = layers

    class Outer:
        def __init__(self, inner: Any, step: int) -> None:
            self.inner = inner
            self.step = step

    for kind in (Layer, Inner, Outer):
        register_state_type(kind)
    layer = Layer(torch.zeros(1))
    inner = Inner([layer])
    given = Outer(inner, 0)
    returned = Outer(Inner([Layer(torch.ones(2))]), 1)
    result = carry_state_back(((), {"cache": given}), {"past": returned, "logits": torch.ones(1)})
    assert result["past"] is given and given.step == 1
    assert given.inner is inner and inner.layers[0] is layer, "inner objects kept, as eager"
    assert layer.keys.shape == (2,)
    # Two inputs of one type: no unambiguous pairing, the result is left as returned.
    other = Outer(Inner([]), 0)
    result = carry_state_back(((given, other), {}), (returned,))
    assert result[0] is returned


def test_a_dynamic_export_takes_constants_that_go_to_kwargs(store: DiskStore) -> None:
    """``return_dict`` goes to a transformers model's ``**kwargs``; torch.export cannot match
    dynamic shapes against a ``**kwargs`` holding a bool, so the second (dynamic) compile fell
    back to torch.compile. The module is exported with an explicit signature instead."""
    model = _zoo.build("gpt2")
    own_forward = model.forward
    model.forward = own_forward  # an instance-level forward of the user's survives export
    fast = cct.compile(model, store=store)
    with torch.no_grad():
        for batch in (2, 3, 5):
            inputs = {**_zoo.inputs("gpt2", batch=batch), "return_dict": True}
            assert max_difference(fast(**inputs).logits, model(**inputs).logits) <= 1e-5
    stats = cct.stats(fast)
    # GPT-2 generates: its batch and sequence dimensions are dynamic from the first compile,
    # so one dynamic package serves the three batch sizes.
    assert stats["entries by mode"] == ["aot"] and stats["fallbacks"] == {}, stats
    assert stats["hits"] == 2, stats
    assert model.__dict__["forward"] is own_forward
