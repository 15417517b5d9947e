"""compilecache.torch: AOT packages with live weights, structural keys, JIT fallback, warm
starts in fresh processes, module state (submodules, parameters, buffers, flags) never served
stale, the wrapper as an nn.Module. Real torch (CPU) and real AOTInductor compiles: marked slow."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from torchhelpers import require_torch, run_worker, shared_remote, worker_env

torch = require_torch()

import compilecache.torch as cct  # noqa: E402
import torchmodels  # noqa: E402
from compilecache.stores import DiskStore  # noqa: E402

pytestmark = pytest.mark.slow


def close(a: Any, b: Any, tol: float = 1e-5) -> bool:
    return bool((a - b).abs().max() <= tol)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("torch-store")


@pytest.fixture
def store(store_dir: Path) -> DiskStore:
    return DiskStore(store_dir)


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
def test_aot_outputs_equal_eager(name: str, store: DiskStore) -> None:
    model = torchmodels.make(name)
    compiled = cct.compile(model, store=store)
    x = torchmodels.example(name)
    with torch.no_grad():
        assert close(compiled(x), model(x))
        assert close(compiled(x), model(x))  # the hit
    stats = cct.stats(compiled)
    assert stats["entries by mode"] == ["aot"]
    assert stats["hits"] == 1
    assert stats["fallbacks"] == {}


def test_one_dynamic_package_serves_batch_sizes_1_to_64(store: DiskStore) -> None:
    model = torchmodels.make("mlp")
    compiled = cct.compile(model, store=store)
    with torch.no_grad():
        for batch in (2, 3, 1, 7, 16, 33, 64):
            x = torchmodels.example("mlp", batch)
            assert close(compiled(x), model(x)), batch
    stats = cct.stats(compiled)
    # Batch 2 (static), then batch 3 made the batch dimension dynamic: one more entry, which
    # serves every other size.
    assert stats["entries"] == 2
    assert stats["misses"] == 2
    assert stats["hits"] == 5


def test_weights_are_read_live(store: DiskStore) -> None:
    model = torchmodels.make("mlp")
    compiled = cct.compile(model, store=store)
    x = torchmodels.example("mlp")
    with torch.no_grad():
        compiled(x)
        # In place, on a bias small enough that Inductor would inline it as a literal.
        model.fc2.bias.add_(1.5)
        assert close(compiled(x), model(x))
        model.fc1.weight.mul_(-2.0)
        assert close(compiled(x), model(x))
        # A replaced parameter object is re-bound.
        model.fc2.weight = torch.nn.Parameter(torch.randn_like(model.fc2.weight))
        assert close(compiled(x), model(x))
        # A new checkpoint of the same architecture reuses the package.
        other = torchmodels.make("mlp", seed=7)
        model.load_state_dict(other.state_dict())
        assert close(compiled(x), other(x))
    assert cct.stats(compiled)["entries"] == 1


def test_dtype_change_is_a_new_key(store: DiskStore) -> None:
    model = torchmodels.make("mlp")
    compiled = cct.compile(model, store=store)
    with torch.no_grad():
        x = torchmodels.example("mlp")
        assert close(compiled(x), model(x))
        model.double()
        assert close(compiled(x.double()), model(x.double()), 1e-9)
    stats = cct.stats(compiled)
    assert stats["aot compiles"] + stats["aot loads"] == 2


def test_wrapper_behaves_as_the_module(store: DiskStore) -> None:
    model = torchmodels.make("mlp")
    compiled = cct.compile(model, store=store)
    assert isinstance(compiled, torch.nn.Module)
    assert compiled.module is model
    assert list(compiled.state_dict()) == list(model.state_dict())
    assert [p is q for p, q in zip(compiled.parameters(), model.parameters(), strict=True)] == [
        True
    ] * 4
    assert compiled.fc1 is model.fc1
    assert compiled.train() is compiled and model.training
    assert compiled.eval() is compiled and not model.training
    compiled.extra = 3
    assert model.extra == 3
    with pytest.raises(TypeError, match="not picklable"):
        import pickle

        pickle.dumps(compiled)


def test_training_mode_is_guarded_and_falls_back(store: DiskStore) -> None:
    model = torchmodels.make("mlp")
    compiled = cct.compile(model, store=store)
    x = torchmodels.example("mlp")
    with torch.no_grad():
        compiled(x)
        compiled.train()
        assert close(compiled(x), model(x))
    stats = cct.stats(compiled)
    assert sorted(stats["entries by mode"]) == ["aot", "jit"]
    assert any("training mode" in reason for reason in stats["fallbacks"])


def test_unexportable_model_falls_back_once_and_says_why(store: DiskStore) -> None:
    model = torchmodels.make("branchy")
    compiled = cct.compile(model, store=store)
    exports = []
    original = torch.export.export

    def counting(*args: Any, **kwargs: Any) -> Any:
        exports.append(1)
        return original(*args, **kwargs)

    torch.export.export = counting
    try:
        with torch.no_grad():
            for batch in (2, 3, 5):
                x = torchmodels.example("branchy", batch)
                assert close(compiled(x), model(x))
    finally:
        torch.export.export = original
    assert len(exports) == 1  # not retried for the dynamic specialization
    stats = cct.stats(compiled)
    assert set(stats["entries by mode"]) == {"jit"}
    (reason,) = stats["fallbacks"]
    assert reason.startswith("torch.export failed")
    report = cct.explain(compiled, torchmodels.example("branchy"))
    assert reason in report.fallbacks


def test_aot_mode_raises_naming_the_reason(store: DiskStore) -> None:
    compiled = cct.compile(torchmodels.make("mlp").train(), mode="aot", store=store)
    x = torchmodels.example("mlp")
    with torch.no_grad(), pytest.raises(cct.AOTUnavailableError, match="training mode"):
        compiled(x)  # train mode, and no gradients: neither inference nor training


def test_function_compiles_ahead_of_time(store: DiskStore) -> None:
    def gelu_mix(a: Any, b: Any) -> Any:
        return torch.nn.functional.gelu(a) * b + 1

    compiled = cct.compile(gelu_mix, store=store)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    with torch.no_grad():
        assert close(compiled(a, b), gelu_mix(a, b))
    assert cct.stats(compiled)["entries by mode"] == ["aot"]
    assert compiled.__name__ == "gelu_mix"


def test_bad_mode_is_a_usage_error() -> None:
    from compilecache import CacheUsageError

    with pytest.raises(CacheUsageError, match="mode must be one of"):
        cct.compile(torchmodels.make("mlp"), mode="fast")
    with pytest.raises(CacheUsageError, match=r"nn\.Module or a Python function"):
        cct.compile(42)


# -- fresh processes ---------------------------------------------------------------------
def test_warm_start_in_a_fresh_process_compiles_nothing(tmp_path: Path) -> None:
    env = worker_env(tmp_path / "cache", tmp_path / "inductor")
    cold = run_worker("mlp", env, "--batches", "2")
    assert cold["stats"]["aot compiles"] == 1
    warm = run_worker("mlp", env, "--batches", "2")
    assert warm["stats"]["aot loads"] == 1 and warm["stats"]["aot compiles"] == 0
    assert not warm["inductor_imported"]
    assert max(warm["errors"]) <= 1e-5
    patched = run_worker("mlp", env, "--batches", "2", "--forbid-compile")
    assert patched["calls"] == {"export": 0, "aoti": 0, "torch.compile": 0}
    assert max(patched["errors"]) <= 1e-5


def test_jit_fallback_is_carried_to_a_fresh_process(tmp_path: Path) -> None:
    env = worker_env(tmp_path / "cache", tmp_path / "inductor")
    cold = run_worker("branchy", env, "--count")
    assert cold["stats"]["jit compiles"] == 1
    assert cold["calls"]["export"] == 1
    warm_env = worker_env(tmp_path / "cache", tmp_path / "inductor-empty")
    warm = run_worker("branchy", warm_env, "--count")
    assert warm["stats"]["jit loads"] == 1
    assert warm["calls"]["export"] == 0  # the stored reason says export fails: not retried
    assert max(warm["errors"]) <= 1e-5


def test_structural_changes_miss(tmp_path: Path, store: DiskStore) -> None:
    """A changed hidden size, line of forward, or helper function is a different key; the
    same source again is the same key. Each variant is the module ``structural_net`` as a
    later run would import it, from its own file."""
    import importlib.util

    variants = {
        "base": ("32", "torch.relu(self.fc1(x))", "x * 2"),
        "hidden": ("48", "torch.relu(self.fc1(x))", "x * 2"),
        "forward": ("32", "torch.tanh(self.fc1(x))", "x * 2"),
        "helper": ("32", "torch.relu(self.fc1(x))", "x * 3"),
        "base again": ("32", "torch.relu(self.fc1(x))", "x * 2"),
    }
    keys = {}
    try:
        for number, (label, (hidden, body, helper)) in enumerate(variants.items()):
            path = tmp_path / str(number) / "structural_net.py"
            path.parent.mkdir()
            path.write_text(
                "import torch\n"
                f"def helper(x):\n    return {helper}\n"
                "class Net(torch.nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                f"        self.fc1 = torch.nn.Linear(8, {hidden})\n"
                f"        self.fc2 = torch.nn.Linear({hidden}, 2)\n"
                "    def forward(self, x):\n"
                f"        return self.fc2(helper({body}))\n"
            )
            spec = importlib.util.spec_from_file_location("structural_net", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules["structural_net"] = module
            spec.loader.exec_module(module)
            compiled = cct.compile(module.Net().eval(), store=store)
            keys[label] = cct.explain(compiled, torch.randn(2, 8)).key
    finally:
        sys.modules.pop("structural_net", None)
    assert keys["base again"] == keys["base"]
    assert len({keys[label] for label in ("base", "hidden", "forward", "helper")}) == 4


def test_hyperparameters_and_tensor_metadata_are_keyed(store: DiskStore) -> None:
    def key(model: Any, x: Any) -> str:
        return cct.explain(cct.compile(model, store=store), x).key  # type: ignore[no-any-return]

    x = torch.randn(2, 4, 8)
    base = key(torch.nn.LayerNorm(8).eval(), x)
    assert key(torch.nn.LayerNorm(8).eval(), x) == base
    assert key(torch.nn.LayerNorm(8, eps=1e-3).eval(), x) != base
    assert key(torch.nn.LayerNorm(8).double().eval(), x) != base
    assert key(torch.nn.LayerNorm(8).train(), x) != base
    changed = torch.nn.LayerNorm(8).eval()
    with torch.no_grad():
        changed.weight.mul_(3)  # weights are bound live, not keyed
    assert key(changed, x) == base
    dropout = key(torch.nn.Dropout(0.1).eval(), x)
    assert key(torch.nn.Dropout(0.2).eval(), x) != dropout


@pytest.mark.redis
def test_second_machine_warm_starts_from_redis(tmp_path: Path, redis_url: str) -> None:
    first = worker_env(tmp_path / "a", tmp_path / "inductor-a", **shared_remote(redis_url))
    cold = run_worker("cnn", first)
    assert cold["stats"]["aot compiles"] == 1
    # Another "machine": empty local cache directory, empty Inductor cache, the same Redis.
    second = worker_env(tmp_path / "b", tmp_path / "inductor-b", **shared_remote(redis_url))
    warm = run_worker("cnn", second, "--forbid-compile")
    assert warm["stats"]["aot loads"] == 1
    assert warm["calls"] == {"export": 0, "aoti": 0, "torch.compile": 0}
    assert max(warm["errors"]) <= 1e-5


def test_cold_processes_compile_once(tmp_path: Path) -> None:
    from torchhelpers import report_of, start_worker

    env = worker_env(tmp_path / "cache", tmp_path / "inductor")
    go = tmp_path / "go"
    workers = [start_worker("mlp", env, "--wait-file", str(go)) for _ in range(3)]
    go.touch()
    reports = [report_of(worker) for worker in workers]
    compiles = sum(report["stats"]["aot compiles"] for report in reports)
    loads = sum(report["stats"]["aot loads"] for report in reports)
    assert (compiles, loads) == (1, 2)
    assert all(max(report["errors"]) <= 1e-5 for report in reports)


def test_the_demo_runs_end_to_end(tmp_path: Path) -> None:
    """The main job: every case in a fresh process, compilecache's warm start loaded."""
    import json
    import subprocess

    env = worker_env(tmp_path / "cache", tmp_path / "inductor")
    done = subprocess.run(
        [sys.executable, "-m", "compilecache", "demo", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert list(results) == [
        "eager",
        "torch.compile, cold",
        "torch.compile, warm",
        "compilecache, cold",
        "compilecache, warm",
    ]
    warm = results["compilecache, warm"]
    assert warm["stats"]["aot loads"] == 1 and warm["stats"]["aot compiles"] == 0
    assert not warm["inductor_imported"]
    assert all(r["max_error"] <= 1e-5 for r in results.values())


class _SumLast(torch.nn.Module):
    def forward(self, x: Any) -> Any:
        return x.sum(-1) * 2.0


def test_a_dense_input_in_another_memory_order_is_not_read_as_the_compiled_one(
    store: DiskStore,
) -> None:
    # Batch and sequence dynamic: a head-major input of the same shape as the batch-major
    # ones compiled for passes every stride guard but the order; the package would compute
    # its strides from the compiled order (this returned wrong values before it was guarded).
    model = _SumLast().eval()
    compiled = cct.compile(model, store=store, mode="aot")
    with torch.no_grad():
        for b, n in ((2, 5), (3, 6), (4, 7)):
            x = torch.randn(b, 2, n, 4)
            assert close(compiled(x), model(x))
        head_major = torch.randn(2, 5, 7, 4).transpose(0, 1)
        assert close(compiled(head_major), model(head_major))
        assert cct.stats(compiled)["compiles"] == 3  # static, dynamic, dynamic head-major


class Pairs(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(2, -1) * 2  # specializes dim 0 to 2: a dynamic export of it fails


def test_a_failed_dynamic_export_leaves_no_marks_and_the_fallback_runs(tmp_path: Path) -> None:
    """torch.export marks the dims it is given dynamic on the caller's tensors and leaves the
    marks there; the fallback's torch.compile then read them as the user's and raised a
    ConstraintViolationError into the call."""
    import compilecache

    fast = cct.compile(Pairs().eval(), store=DiskStore(tmp_path))
    x = torch.randn(2, 3)
    compilecache.mark_dynamic(x, 0)
    with torch.no_grad():
        y = fast(x)
    assert torch.equal(y, x.reshape(2, -1) * 2)
    assert [name for name in vars(x) if "dynamo" in name] == []
    stats = cct.stats(fast)
    assert stats["entries by mode"] == ["jit"]
    assert any("Constraints violated" in reason for reason in stats["fallbacks"]), stats


# == module state, from a review: each test's docstring states the bug it caught (all fixed); the
# pinned-behaviour ones at the end pass. The models of one kind share a key, so after the first
# compile of ``Net`` every other test loads its package from the module's store.
def close_same_shape(a: Any, b: Any, tol: float = 1e-5) -> bool:
    return bool(a.shape == b.shape and (a - b).abs().max() <= tol)


class Net(torch.nn.Module):
    """Linear, BatchNorm (eval: running statistics), Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 16)
        self.bn = torch.nn.BatchNorm1d(16)
        self.fc2 = torch.nn.Linear(16, 4)

    def forward(self, x: Any) -> Any:
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


def make_net() -> Net:
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1.0, 1.0)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


def example() -> Any:
    return torch.randn(5, 8, generator=torch.Generator().manual_seed(1))


def warm(store: DiskStore) -> tuple[Net, Any, Any]:
    """A fresh Net, its wrapper and an input, after one AOT call (compiled once per module,
    loaded from the store afterwards)."""
    model = make_net()
    compiled = cct.compile(model, store=store)
    x = example()
    with torch.no_grad():
        assert close_same_shape(compiled(x), model(x))
    assert cct.stats(compiled)["entries by mode"] == ["aot"]
    return model, compiled, x


# -- module state: stale weights ----------------------------------------------------------------
def test_replaced_submodule_is_not_served_stale(store: DiskStore) -> None:
    """Replacing a submodule (``model.fc2 = nn.Linear(...)`` of the same shape) keeps serving
    the old submodule's weights: AotRunner.weights_current re-checks only the old holder dicts
    it resolved at bind time, which still hold the old (identical) tensors."""
    model, compiled, x = warm(store)
    model.fc2 = torch.nn.Linear(16, 4)
    with torch.no_grad():
        assert close_same_shape(compiled(x), model(x))


def test_parameter_set_to_none_is_not_served_stale(store: DiskStore) -> None:
    """``model.fc2.bias = None`` is not noticed (nn.Module.register_parameter(name, None) fires
    no registration hook and the TensorGuards check only looks at the old tensors), so the
    removed bias keeps being added."""
    model, compiled, x = warm(store)
    model.fc2.bias = None
    with torch.no_grad():
        assert close_same_shape(compiled(x), model(x))


def test_parameter_set_to_none_does_not_leak_an_internal_exception(store: DiskStore) -> None:
    """After ``model.fc2.bias = None`` and any later parameter registration in the process,
    the next call raises the internal ExportUnsupported (resolve_tensor in AotRunner.refresh)
    into the user's call instead of treating the entry as stale and recompiling."""
    model, compiled, x = warm(store)
    model.fc2.bias = None
    torch.nn.Linear(1, 1)  # any module built anywhere registers parameters
    with torch.no_grad():
        assert close_same_shape(compiled(x), model(x))


def test_submodule_training_flag_is_guarded(store: DiskStore) -> None:
    """Only the root module's ``training`` flag is passed to (and guarded by) the dispatch
    layer, so ``model.bn.train()`` after an AOT call keeps serving the eval-mode package
    (running statistics) although eager now normalizes with the batch's statistics."""
    model, compiled, x = warm(store)
    model.bn.train()
    with torch.no_grad():
        assert close_same_shape(compiled(x), model(x))


def test_requires_grad_toggle_is_seen(store: DiskStore) -> None:
    """A package compiled while no parameter required grad keeps serving after
    ``model.requires_grad_(True)`` with grad enabled (the runner's TensorGuards check fails on
    the flag, but refresh() re-binds because _meta ignores requires_grad), so the output has no
    grad_fn and training silently gets no gradients."""
    model = make_net()
    model.requires_grad_(False)
    compiled = cct.compile(model, store=store)
    x = example()
    compiled(x)  # grad enabled, nothing requires grad: an inference call, AOT
    assert cct.stats(compiled)["entries by mode"] == ["aot"]
    model.requires_grad_(True)
    out = compiled(x)
    assert model(x).requires_grad
    assert out.requires_grad and out.grad_fn is not None


class Normalize(torch.nn.Module):
    """Buffers only (a preprocessing module: no parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((6,), 0.5))
        self.register_buffer("std", torch.full((6,), 2.0))

    def forward(self, x: Any) -> Any:
        return (x - self.mean) / self.std


def test_buffers_replaced_by_to_are_not_served_stale(store: DiskStore) -> None:
    """``model.double()`` (nn.Module._apply) replaces buffers by writing ``_buffers[name]``
    directly, which fires no registration hook, so a parameterless module's runner keeps
    reading the old float32 buffers (the TensorGuards check sees the old, unchanged tensors):
    later in-place changes of the new buffers are ignored and the output dtype is wrong."""
    model = Normalize().eval()
    compiled = cct.compile(model, store=store)
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert close_same_shape(compiled(x), model(x))
        model.double()
        model.mean.fill_(3.0)
        expected = model(x)  # float32 input, float64 buffers: a float64 result
        got = compiled(x)
    assert got.dtype == expected.dtype
    assert close_same_shape(got.double(), expected)


# -- module state: keys --------------------------------------------------------------------------
class Tied(torch.nn.Module):
    def __init__(self, tie: bool) -> None:
        super().__init__()
        self.enc = torch.nn.Linear(6, 6)
        self.dec = torch.nn.Linear(6, 6)
        if tie:
            self.dec.weight = self.enc.weight

    def forward(self, x: Any) -> Any:
        return self.dec(torch.relu(self.enc(x)))


def test_tied_parameters_are_part_of_the_key(store: DiskStore) -> None:
    """Parameter tying is not in the structural fingerprint (_fingerprint._submodule records
    each parameter's metadata, not which ones are the same tensor), so a package exported from
    a tied model (one deduplicated constant for enc.weight and dec.weight) is loaded for an
    untied model of the same class and computes with enc.weight in place of dec.weight."""
    torch.manual_seed(0)
    tied, untied = Tied(tie=True).eval(), Tied(tie=False).eval()
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(3))
    first = cct.compile(tied, store=store)
    with torch.no_grad():
        assert close_same_shape(first(x), tied(x))
    second = cct.compile(untied, store=store)
    with torch.no_grad():
        assert close_same_shape(second(x), untied(x))


class ZeroDimScale(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.scale = torch.tensor(2.0)  # a plain 0-dim tensor attribute

    def forward(self, x: Any) -> Any:
        return self.fc(x) * self.scale


def test_zero_dim_tensor_attribute_can_be_keyed(store: DiskStore) -> None:
    """Keying a module with a plain 0-dim float tensor attribute raises RuntimeError
    (_fingerprint._tensor_value does ``data.view(torch.uint8)``, which torch refuses for a
    0-dim tensor of a wider dtype), so explain() raises and calls are never persisted."""
    compiled = cct.compile(ZeroDimScale().eval(), store=store)
    report = cct.explain(compiled, torch.randn(2, 4))
    assert report.key


class Scaled(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.scale = torch.tensor([2.0, 3.0, 4.0, 5.0])  # a plain tensor attribute

    def forward(self, x: Any) -> Any:
        return self.fc(x) * self.scale


def test_plain_tensor_attribute_compiles_ahead_of_time(store: DiskStore) -> None:
    """docs/torch.md says plain tensor attributes are compiled in as constants and keyed by
    value, but AOTInductor names the lifted constant ``_tensor_constant0`` (export names it
    ``scale``), AotRunner.bind cannot resolve that name on the module, and the call falls back
    after a full AOT compile (in mode="aot": AOTUnavailableError)."""
    torch.manual_seed(0)
    model = Scaled().eval()
    compiled = cct.compile(model, mode="aot", store=store)
    x = torch.randn(2, 4)
    with torch.no_grad():
        assert close_same_shape(compiled(x), model(x))


# -- module state: fallbacks ---------------------------------------------------------------------
class Masked(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x: Any, mask: Any = None) -> Any:
        y = self.fc(x)
        return y if mask is None else y * mask


def test_none_input_compiles_ahead_of_time(store: DiskStore) -> None:
    """docs/torch.md says AOT calls take tensors and None, but _package.check_inputs rejects
    every non-tensor leaf and torch's tree_leaves yields None as a leaf, so ``model(x, None)``
    is "an input is a NoneType" (AOTUnavailableError in mode="aot", JIT in auto)."""
    torch.manual_seed(0)
    model = Masked().eval()
    compiled = cct.compile(model, mode="aot", store=store)
    x = torch.randn(2, 4)
    with torch.no_grad():
        assert close_same_shape(compiled(x, None), model(x, None))


def test_one_bad_call_does_not_disable_aot_for_the_model(store: DiskStore) -> None:
    """A single (static) call with a wrong input shape, which raises in eager too, makes
    torch.export fail, and TorchBackend remembers that failure in ``export_failure`` for the
    model's lifetime (reset() does not clear it): every later, correct specialization is
    refused ahead of time (mode="aot") or sent to torch.compile (auto)."""
    model = make_net()
    compiled = cct.compile(model, mode="aot", store=store)
    with torch.no_grad():
        with pytest.raises(Exception):  # noqa: B017  (eager raises a RuntimeError)
            compiled(torch.randn(5, 7))
        x = example()
        assert close_same_shape(compiled(x), model(x))


def test_bind_failure_is_not_retried_per_specialization(
    store: DiskStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a package cannot be bound (a tensor read from a global), the failure is a property
    of the code like an export failure, but only reasons starting "torch.export failed" are
    remembered (TorchBackend.__call__), so every new specialization runs export and
    AOTInductor again (seconds each) only to fall back again."""
    from compilecache.torch import _backend

    compiles: list[int] = []
    original = _backend.compile_package

    def counting(*args: Any, **kwargs: Any) -> Any:
        compiles.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(_backend, "compile_package", counting)
    compiled = cct.compile(_uses_global_tensor, mode="aot", store=store)
    with torch.no_grad():
        for batch in (2, 3):
            with pytest.raises(cct.AOTUnavailableError, match="needs a tensor"):
                compiled(torch.randn(batch, 4))
    assert len(compiles) == 0  # found before AOTInductor runs, and remembered


_GLOBAL_WEIGHT = torch.randn(4, 4, generator=torch.Generator().manual_seed(4))


def _uses_global_tensor(x: Any) -> Any:
    return x @ _GLOBAL_WEIGHT


# -- persistence ---------------------------------------------------------------------------------
class FullDisk(DiskStore):
    """A disk store whose writes fail (a full disk)."""

    def put(self, key: str, value: bytes) -> None:
        raise OSError(28, "No space left on device")


def test_jit_save_failure_does_not_break_the_call(tmp_path: Path) -> None:
    """A JIT entry is saved from inside the user's first call (JitRunner.__call__ runs the
    on_ready callback, TorchHooks.save_when_ready -> ArtifactHooks.save, which has no except),
    so a failing store write (or save_torch_artifacts raising) propagates into a call that
    computed its result fine; the AOT path's save is wrapped by the dispatcher instead."""

    def doubled_sine(a: Any) -> Any:
        return torch.sin(a) * 2

    compiled = cct.compile(doubled_sine, mode="jit", store=FullDisk(tmp_path))
    a = torch.randn(4)
    assert close_same_shape(compiled(a), doubled_sine(a))


def test_jit_entry_compile_seconds_include_the_compile(tmp_path: Path) -> None:
    """A JIT entry's compile_seconds is the time TorchBackend.__call__ took to return a lazy
    JitRunner (microseconds once the backend's torch.compile wrapper exists), not the seconds
    torch.compile spends at its first call, so an Admission(min_compile_seconds=...) rejects
    every JIT entry after the first and manifests/telemetry record ~0 s."""
    from compilecache.artifacts import Admission
    from compilecache.torch._hooks import TorchHooks

    hooks = TorchHooks(DiskStore(tmp_path), admission=Admission(min_compile_seconds=0.02))

    def cos_plus_one(a: Any) -> Any:
        return torch.cos(a) + 1

    compiled = cct.compile(cos_plus_one, mode="jit", store=hooks)
    for a in (torch.randn(4), torch.randn(3, 5)):  # two entries, each compiled by torch
        assert close_same_shape(compiled(a), cos_plus_one(a))
    assert hooks.stats.admission_skips == {}
    assert hooks.stats.saved == 2


class SlicedLayers(torch.nn.Module):
    """Slices its ModuleList in forward, as transformers' decoders do (``self.layers[:n]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(2))

    def forward(self, x: Any) -> Any:
        for layer in self.layers[:2]:
            x = layer(x)
        return x


def test_a_jit_entry_of_a_forward_that_slices_a_module_list_compiles_once(
    store: DiskStore,
) -> None:
    """Slicing a ModuleList builds a new one, which fires the module registration hook the AOT
    runners count registrations with. Traced by torch.compile, the counter was a global that
    forward mutated, guarded on by value: every call recompiled (Mistral's decode hit Dynamo's
    recompile limit of 8 and then ran eagerly)."""
    from torch._dynamo.utils import counters

    model = SlicedLayers().eval()
    compiled = cct.compile(model, mode="jit", store=store)
    x = torch.randn(3, 4)
    before = counters["stats"]["unique_graphs"]
    with torch.no_grad():
        for _ in range(4):
            assert close_same_shape(compiled(x), model(x))
    assert counters["stats"]["unique_graphs"] - before == 1


# -- the wrapper as an nn.Module -----------------------------------------------------------------
def test_parent_of_a_compiled_submodule_loads_its_state_dict(store: DiskStore) -> None:
    """A model holding a CompiledModule as a submodule cannot load its own state_dict: the
    delegated get_extra_state/set_extra_state make nn.Module._load_from_state_dict (run on the
    wrapper, being private) expect a "<prefix>_extra_state" key, so load_state_dict raises
    'Missing key(s) in state_dict: "encoder._extra_state"'."""
    torch.manual_seed(0)
    parent = torch.nn.Module()
    parent.encoder = cct.compile(torch.nn.Linear(4, 4).eval(), store=store)
    parent.head = torch.nn.Linear(4, 2)
    state = parent.state_dict()
    assert sorted(state) == ["encoder.bias", "encoder.weight", "head.bias", "head.weight"]
    parent.load_state_dict(state)


# -- pinned behaviour (passes) -------------------------------------------------------------------
def test_in_place_buffer_changes_two_wrappers_and_reset(store: DiskStore) -> None:
    """BatchNorm running statistics are read live; two wrappers of one model agree; reset()
    drops the entries and the next call loads the package from the store again."""
    model, compiled, x = warm(store)
    other = cct.compile(model, store=store)
    with torch.no_grad():
        model.bn.running_mean.add_(0.5)
        model.bn.running_var.mul_(3.0)
        assert close_same_shape(compiled(x), model(x))
        assert close_same_shape(other(x), model(x))
        loads = cct.stats(compiled)["aot loads"]
        compiled.reset()
        assert cct.stats(compiled)["entries"] == 0
        assert close_same_shape(compiled(x), model(x))
    assert cct.stats(compiled)["aot loads"] == loads + 1
    assert cct.stats(compiled)["aot compiles"] == 0


class Multi(torch.nn.Module):
    """Keyword-only tensor inputs, a nested dict output with a None in it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(6, 6)

    def forward(self, x: Any, *, bias: Any, gain: Any) -> Any:
        y = self.fc(x) * gain + bias
        return {"y": y, "parts": (y.sum(1), [y.relu()]), "none": None}


def test_kwargs_nested_outputs_and_root_hook(store: DiskStore) -> None:
    """Keyword inputs in either order, a nested dict output (None kept) and a root forward
    hook behave as in eager mode, from one AOT entry."""
    torch.manual_seed(0)
    model = Multi().eval()
    model.register_forward_hook(lambda module, args, out: {**out, "y": out["y"] * 10})
    compiled = cct.compile(model, store=store)
    x, bias, gain = torch.randn(3, 6), torch.randn(6), torch.randn(6)
    with torch.no_grad():
        got = compiled(x, bias=bias, gain=gain)
        again = compiled(x, gain=gain, bias=bias)
        expected = model(x, bias=bias, gain=gain)
    assert cct.stats(compiled)["entries by mode"] == ["aot"]
    for out in (got, again):
        assert set(out) == {"y", "parts", "none"} and out["none"] is None
        assert close_same_shape(out["y"], expected["y"])
        assert close_same_shape(out["parts"][0], expected["parts"][0])
        assert close_same_shape(out["parts"][1][0], expected["parts"][1][0])


class Counter(torch.nn.Module):
    """A forward that updates 0-dim and 1-dim buffers in place (step counters)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.register_buffer("steps", torch.zeros(()))
        self.register_buffer("hits", torch.zeros(4))

    def forward(self, x: Any) -> Any:
        self.steps.add_(1)
        self.hits.add_(1)
        return self.fc(x) + self.steps + self.hits


def test_zero_dim_buffer_mutated_in_forward_is_read_live(store: DiskStore) -> None:
    """A forward that updates a 0-dim buffer in place computes, in the AOT package, from the
    buffer's value at bind time on every call (the 1-dim buffer beside it is read live), so
    the counter is stuck at 1 and the output ignores the updated/changed value: the "weights
    are never stale" promise fails for mutated scalar buffers."""
    torch.manual_seed(0)
    model = Counter().eval()
    compiled = cct.compile(model, store=store)
    x = torch.randn(2, 4)
    with torch.no_grad():
        compiled(x)
        compiled(x)
        assert float(model.hits[0]) == 2.0  # the 1-dim buffer: read and written live
        assert float(model.steps) == 2.0
        model.steps.fill_(100.0)
        model.hits.fill_(100.0)
        got = compiled(x)
        assert float(model.steps) == 101.0
        assert close_same_shape(got, model.fc(x) + 202.0, 1e-4)  # float32 at 202: 1.5e-5 apart


def test_rebinding_waits_for_a_call_running_in_another_thread(store: DiskStore) -> None:
    """A call in one thread rebinding replaced weights rewrote the constants a call running
    in another thread was reading (AOTInductor's constant update takes no lock against
    runs). Now a runner's calls and rebinds are one at a time: here a slow run (0.4 s) in one
    thread, and a call after a replaced parameter in another, whose rebinding must start
    only once the run ended."""
    import threading
    import time

    from compilecache.dispatch import cache_entries

    model = Net().eval()
    compiled = cct.compile(model, store=store)
    x = torch.randn(4, 8)
    with torch.no_grad():
        compiled(x)
    (entry,) = cache_entries(compiled._cc_call)
    runner = entry.compiled
    events: list[tuple[str, float]] = []
    run, loader = runner._run, runner.loader

    def slow_run(inputs: Any) -> Any:
        events.append(("run starts", time.monotonic()))
        time.sleep(0.4)
        result = run(inputs)
        events.append(("run ends", time.monotonic()))
        return result

    class RecordingLoader:
        def __getattr__(self, name: str) -> Any:
            return getattr(loader, name)

        def load_constants(self, *args: Any) -> Any:
            events.append(("rebind", time.monotonic()))
            return loader.load_constants(*args)

    runner._run, runner.loader = slow_run, RecordingLoader()

    def call_without_grad() -> None:
        with torch.no_grad():  # (grad mode is per thread)
            compiled(x)

    first = threading.Thread(target=call_without_grad)
    with torch.no_grad():
        first.start()
        deadline = time.monotonic() + 30
        while not events and time.monotonic() < deadline:
            time.sleep(0.01)
        assert events, "the first call never reached the package"
        model.fc2.weight = torch.nn.Parameter(model.fc2.weight.detach() * 2)
        runner._run = run  # the second call runs at full speed once it may
        assert close_same_shape(compiled(x), model(x))
        first.join()
    order = [name for name, _ in events]
    assert order.index("rebind") > order.index("run ends"), events
