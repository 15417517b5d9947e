"""LLM generation through AOT packages: ``fast.generate(...)`` runs prefill and every decode
step through compiled packages, with greedy (and seeded sampling, and beam search) tokens equal
to eager's, a few packages for a whole generation, and a fresh process that loads them and
compiles nothing. Real transformers models (tiny GPT-2 and Llama, random init), real
AOTInductor compiles: marked slow. One cold and one warm process per model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from torchhelpers import SHARED_SECRET, require_torch, shared_remote, worker_env

torch = require_torch()

import compilecache.torch as cct  # noqa: E402
import generateworker  # noqa: E402
from compilecache import CacheUsageError  # noqa: E402
from compilecache.stores import CodecStore, DiskStore, Signing  # noqa: E402
from compilecache.torch import _zoo  # noqa: E402

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("generateworker.py")
MODELS = ("gpt2", "llama-cache")  # the zoo's names: Llama built as for its cache calls


def run_worker(name: str, env: dict[str, str], *options: str) -> dict[str, Any]:
    process = subprocess.run(
        [sys.executable, str(WORKER), name, *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-4000:]
    return json.loads(process.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generation")


@pytest.fixture(scope="module")
def runs(cache_dir: Path, redis_server: Any) -> dict[str, dict[str, Any]]:
    """Per model: a cold process (compiles, into its directory and a shared signed Redis
    tier), then a warm one (compiling is forbidden); for GPT-2 also a warm process on another
    "machine": an empty directory and an empty Inductor cache, the same Redis."""
    found = {}
    remote = shared_remote(redis_server.url)
    for name in MODELS:
        cold = run_worker(name, worker_env(cache_dir / "store", cache_dir / "inductor", **remote))
        # (Its directory's entries are signed with the shared secret, as every tier is.)
        warm = run_worker(
            name,
            worker_env(cache_dir / "store", cache_dir / "inductor-empty", **remote),
            "--forbid-compile",
        )
        found[name] = {"cold": cold, "warm": warm}
    found["gpt2"]["remote"] = run_worker(
        "gpt2",
        worker_env(cache_dir / "machine-b", cache_dir / "inductor-b", **remote),
        "--forbid-compile",
    )
    return found


@pytest.fixture
def store(cache_dir: Path, runs: Any) -> CodecStore:
    # What the workers compiled (signed, as their shared tier is): loaded, not compiled.
    return CodecStore(DiskStore(cache_dir / "store"), [Signing(SHARED_SECRET)])


@pytest.mark.parametrize("name", MODELS)
def test_greedy_tokens_equal_eager_for_two_prompt_lengths_and_two_batch_sizes(
    name: str, runs: dict[str, Any]
) -> None:
    for label in ("cold", "warm"):
        run = runs[name][label]
        for case, got, want in zip(
            generateworker.CASES, run["tokens"], run["eager tokens"], strict=True
        ):
            assert got == want, f"{name} {label} {case}"
            length, batch = case
            assert len(got) == batch and len(got[0]) == length + generateworker.NEW_TOKENS


@pytest.mark.parametrize("name", MODELS)
def test_a_whole_generation_uses_few_packages_and_runs_every_step_through_them(
    name: str, runs: dict[str, Any]
) -> None:
    cold = runs[name]["cold"]
    # Prefill (batch and prompt length dynamic), decode (batch and cache length dynamic),
    # and the one-token decode of batch size 1 (size 1 is compiled static).
    assert len(cold["entries by mode"]) <= 3, cold
    assert set(cold["entries by mode"]) == {"aot"}, cold
    assert cold["fallbacks"] == {}, cold
    assert cold["aot compiles"] == len(cold["entries by mode"])
    steps = len(generateworker.CASES) * generateworker.NEW_TOKENS
    assert cold["hits"] >= steps - len(cold["entries by mode"]), cold


@pytest.mark.parametrize("name", MODELS)
def test_a_fresh_process_generates_from_the_store_and_compiles_nothing(
    name: str, runs: dict[str, Any]
) -> None:
    warm, cold = runs[name]["warm"], runs[name]["cold"]
    assert warm["calls"] == {"export": 0, "aoti": 0, "torch.compile": 0}, warm
    assert warm["aot compiles"] == 0
    assert warm["aot loads"] == len(cold["entries by mode"]), warm
    assert warm["tokens"] == cold["tokens"]


def test_another_machine_generates_from_the_shared_redis_tier(runs: dict[str, Any]) -> None:
    remote, cold = runs["gpt2"]["remote"], runs["gpt2"]["cold"]
    assert remote["calls"] == {"export": 0, "aoti": 0, "torch.compile": 0}, remote
    assert remote["aot loads"] == len(cold["entries by mode"]), remote
    assert remote["tokens"] == cold["tokens"] == cold["eager tokens"]


def word_tokenizer() -> Any:
    """A fast tokenizer built in memory (no hub): words ``w0``..``w89``, split on spaces."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{f"w{i}": i + 1 for i in range(90)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[UNK]", eos_token="[UNK]"
    )


def test_a_text_generation_pipeline_runs_through_the_packages(store: CodecStore) -> None:
    from transformers import pipeline

    tokenizer = word_tokenizer()
    options = {"max_new_tokens": 12, "min_new_tokens": 12, "do_sample": False}
    texts = ["w1 w7 w3 w4 w5", "w9 w8 w2 w6 w5 w4 w3 w1"]  # prompt lengths 5 and 8
    model = _zoo.build("gpt2")
    want = [
        pipeline("text-generation", model=model, tokenizer=tokenizer)(t, **options) for t in texts
    ]
    # The way to hand a compiled model to a pipeline: compiled in place, it is the model.
    cct.compile(model, store=store, inplace=True)
    try:
        got = [
            pipeline("text-generation", model=model, tokenizer=tokenizer)(t, **options)
            for t in texts
        ]
        assert got == want
        stats = cct.stats(model)
        # Every step through packages (a pipeline's calls are their own specializations:
        # compiled once here, at most three).
        assert stats["hits"] >= 2 * 12 - 3 and stats["misses"] <= 3, stats
        assert stats["fallbacks"] == {} and set(stats["entries by mode"]) == {"aot"}, stats
    finally:
        cct.restore(model)
    # The wrapper works too (transformers logs that it does not know the class).
    fast = cct.compile(model, store=store)
    wrapped = pipeline("text-generation", model=fast, tokenizer=tokenizer)
    assert [wrapped(t, **options) for t in texts] == want
    assert cct.stats(fast)["hits"] > 0


STATIC = {"cache_implementation": "static"}


def test_a_static_cache_generation_runs_through_two_packages_and_equals_eager(
    store: CodecStore,
) -> None:
    """A StaticCache is updated in place by index (an input mutation inside the package);
    its length is fixed, only batch is dynamic, so one prefill and one decode package serve
    both prompt lengths (transformers keeps the longest ``max_cache_len`` across calls)."""
    cases = ((8, 2), (5, 2))
    model = _zoo.build("gpt2")
    want = [generateworker.greedy(model, *case, **STATIC) for case in cases]
    fast = cct.compile(model, store=store)
    assert [generateworker.greedy(fast, *case, **STATIC) for case in cases] == want
    stats = cct.stats(fast)
    assert stats["entries by mode"] == ["aot", "aot"] and stats["fallbacks"] == {}, stats
    assert stats["hits"] == 2 * generateworker.NEW_TOKENS - 2, stats  # every step compiled
    again = cct.compile(_zoo.build("gpt2"), store=store)  # loads what was stored
    assert [generateworker.greedy(again, *case, **STATIC) for case in cases] == want
    assert cct.stats(again)["aot compiles"] == 0 and cct.stats(again)["aot loads"] == 2


def test_assisted_decoding_equals_eager_with_its_varying_int_counted(store: CodecStore) -> None:
    """Assisted decoding: an assistant proposes tokens, the model checks them in one call with
    a cache that ``crop`` left as a view with gaps (made dense before the call, so every
    length shares a package) and ``logits_to_keep`` = the number of candidates + 1, an int
    that varies: that specialization runs under torch.compile, with the reason counted."""
    model = _zoo.build("gpt2")
    assistant = _zoo.build("gpt2")
    with torch.no_grad():
        for parameter in assistant.parameters():  # another model: it proposes wrong tokens too
            parameter.add_(torch.randn_like(parameter) * 0.05)
    options = {"assistant_model": assistant}
    want = [generateworker.greedy(model, length, 1, **options) for length in (8, 5)]
    fast = cct.compile(model, store=store)
    assert [generateworker.greedy(fast, length, 1, **options) for length in (8, 5)] == want
    stats = cct.stats(fast)
    assert stats["eager_runs"] == 0 and len(stats["entries by mode"]) <= 5, stats
    assert stats["hits"] > 3 * stats["misses"], stats
    assert list(stats["fallbacks"]) == [
        "an int input varies between calls (AOT packages bake ints in; pass it as a tensor, "
        "or mark it static)"
    ], stats


def _sampled(model: Any, seed: int) -> list[list[int]]:
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            **generateworker.prompt(8, 2),
            max_new_tokens=12,
            min_new_tokens=12,
            do_sample=True,
            top_k=20,
            temperature=0.9,
        )
    return out.tolist()  # type: ignore[no-any-return]


def test_seeded_sampling_draws_the_same_tokens_as_eager(store: CodecStore) -> None:
    model = _zoo.build("gpt2")
    fast = cct.compile(model, store=store)
    assert _sampled(fast, 3) == _sampled(model, 3)
    assert _sampled(fast, 4) == _sampled(model, 4)
    assert _sampled(fast, 3) != _sampled(fast, 4)  # the seed matters: sampling really ran
    stats = cct.stats(fast)
    assert stats["aot compiles"] == 0 and stats["aot loads"] >= 2, stats


def test_beam_search_reorders_the_cache_outside_the_packages_and_equals_eager(
    store: CodecStore,
) -> None:
    model = _zoo.build("gpt2")
    fast = cct.compile(model, store=store)
    options = {"num_beams": 3, "early_stopping": True}
    # Batch 2 with 3 beams: the packages see batch 6, served by the dynamic ones.
    assert generateworker.greedy(fast, 8, 2, **options) == generateworker.greedy(
        model, 8, 2, **options
    )
    stats = cct.stats(fast)
    assert stats["fallbacks"] == {} and stats["hits"] > 0, stats


def test_routing_is_undone_after_a_generate_and_when_it_raises(store: CodecStore) -> None:
    model = _zoo.build("gpt2")
    fast = cct.compile(model, store=store)
    generateworker.greedy(fast, 5, 1)
    assert "_compiled_call_impl" not in model.__dict__
    hits = cct.stats(fast)["hits"]
    with torch.no_grad():
        model(**generateworker.prompt(5, 1))  # the original module: eager, not routed
    assert cct.stats(fast)["hits"] == hits
    with pytest.raises(RuntimeError, match="negative dimension"):  # raised inside generate
        fast.generate(**generateworker.prompt(5, 1), max_new_tokens=2, num_beams=-1)
    assert "_compiled_call_impl" not in model.__dict__
    assert fast.generate.__name__ == "generate"
    assert fast.train is not model.train  # nn.Module's own methods are not routed


def test_inplace_compile_routes_the_model_itself_until_restored(store: CodecStore) -> None:
    model = _zoo.build("gpt2")
    want = generateworker.greedy(model, 8, 2)
    same = cct.compile(model, store=store, inplace=True)
    assert same is model
    assert generateworker.greedy(model, 8, 2) == want
    stats = cct.stats(model)
    assert stats["hits"] > 0 and stats["aot loads"] >= 1, stats
    with pytest.raises(CacheUsageError, match="already compiled in place"):
        cct.compile(model, store=store, inplace=True)
    cct.restore(model)
    assert "_compiled_call_impl" not in model.__dict__
    assert generateworker.greedy(model, 8, 2) == want
    with pytest.raises(CacheUsageError, match="not compiled in place"):
        cct.restore(model)


def test_a_sliding_window_cache_keeps_an_int_length_and_its_decode_falls_back_counted(
    store: CodecStore,
) -> None:
    """Mistral's sliding-window cache returns its length (``cumulative_length``, symbolic in
    the prefill package) as an output: it comes back as a Python int, as eager gives it.
    Each decode step passes a new length, an int that AOTInductor cannot take as a dynamic
    input, so decode falls back to torch.compile with the reason counted: tokens equal."""
    from transformers import DynamicCache

    model = _zoo.build("mistral-cache")
    fast = cct.compile(model, store=store)
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        out = fast(**generateworker.prompt(8, 2), past_key_values=cache, use_cache=True)
    assert out.past_key_values is cache
    length = cache.get_seq_length()
    assert type(length) is int and length == 8, length
    assert cct.stats(fast)["entries by mode"] == ["aot"], cct.stats(fast)
    want = generateworker.greedy(model, 8, 2)
    assert generateworker.greedy(fast, 8, 2) == want
    stats = cct.stats(fast)
    assert stats["eager_runs"] == 0 and "aot" in stats["entries by mode"], stats
    assert list(stats["fallbacks"]) == [
        "an int input varies between calls (AOT packages bake ints in; pass it as a tensor, "
        "or mark it static)"
    ], stats
