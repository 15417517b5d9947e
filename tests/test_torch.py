"""compilecache.torch: AOT packages with live weights, structural keys, JIT fallback, warm
starts in fresh processes. Real torch (CPU) and real AOTInductor compiles: marked slow."""

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
