"""Training through AOT packages: a call that needs gradients runs a forward and a backward
package (mode ``"aot-train"``), with gradients, losses and optimizer steps equal to eager's,
autograd's rules kept (accumulation, one backward per graph, no double backward), and a fresh
process that loads both packages and compiles nothing. Real torch and AOTInductor compiles,
kept few: the tests share one store, so each model's entry is compiled once."""

from __future__ import annotations

import itertools
import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest

from torchhelpers import report_of, require_torch, shared_remote, start_worker, worker_env

torch = require_torch()

import compilecache.torch as cct  # noqa: E402
import trainmodels  # noqa: E402
from compilecache.stores import DiskStore  # noqa: E402
from compilecache.torch import _artifact as artifact  # noqa: E402

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("trainworker.py")


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("training-store")


@pytest.fixture
def store(store_dir: Path) -> DiskStore:
    return DiskStore(store_dir)


def close(a: Any, b: Any, tol: float = 1e-5) -> bool:
    return bool(a.shape == b.shape and (a - b).abs().max() <= tol)


def test_gradients_equal_eager_for_parameters_and_inputs_and_frozen_ones_stay_none(
    store: DiskStore,
) -> None:
    model, eager = trainmodels.build("mlp"), trainmodels.build("mlp")
    fast = cct.compile(model, store=store)
    x, target = trainmodels.batch("mlp")
    x_eager = x.clone().requires_grad_()
    x.requires_grad_()
    trainmodels.loss(fast(x), target).backward()
    trainmodels.loss(eager(x_eager), target).backward()
    assert cct.stats(fast)["entries by mode"] == ["aot-train"], cct.stats(fast)
    assert model.fc1.bias.grad is None and eager.fc1.bias.grad is None
    for (name, mine), theirs in zip(model.named_parameters(), eager.parameters(), strict=True):
        if mine.requires_grad:
            assert close(mine.grad, theirs.grad), name
    assert close(x.grad, x_eager.grad)


@pytest.mark.parametrize("name", ["mlp", "transformer", "cnn", "dropout", "gpt2"])
def test_twenty_optimizer_steps_track_eager(name: str, store: DiskStore) -> None:
    """Parameters, BatchNorm's running statistics (and its step count, exactly), dropout's
    masks (seeded per step: drawn from torch's generator, as eager draws them) and the
    losses GPT-2 computes from ``labels`` inside forward, all as eager's."""
    model, eager = trainmodels.build(name), trainmodels.build(name)
    fast = cct.compile(model, store=store)
    losses = trainmodels.train(fast, model.parameters(), name, 20)
    want = trainmodels.train(eager, eager.parameters(), name, 20)
    assert max(abs(a - b) for a, b in zip(losses, want, strict=True)) <= 1e-4, (losses, want)
    assert losses[-1] < losses[0]  # it learned: the updates reached the module's parameters
    for mine, theirs in zip(model.parameters(), eager.parameters(), strict=True):
        assert close(mine, theirs, 1e-4)
    for (buffer, mine), theirs in zip(model.named_buffers(), eager.buffers(), strict=True):
        if buffer.endswith("num_batches_tracked"):
            assert int(mine) == int(theirs) == 20
        else:
            assert close(mine, theirs, 1e-4), buffer
    stats = cct.stats(fast)
    assert stats["entries by mode"] == ["aot-train"] and stats["fallbacks"] == {}, stats
    assert stats["aot compiles"] + stats["aot loads"] == 1, stats


def test_dropout_masks_come_from_torchs_generator_and_the_backward_reuses_them(
    store: DiskStore,
) -> None:
    model, eager = trainmodels.build("dropout"), trainmodels.build("dropout")
    fast = cct.compile(model, store=store)
    x, _ = trainmodels.batch("dropout")
    outputs = {}
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        outputs.setdefault(seed, []).append(fast(x))
    assert torch.equal(outputs[7][0], outputs[7][1])
    assert not torch.equal(outputs[7][0], outputs[8][0])
    torch.manual_seed(7)
    want = eager(x)
    assert close(outputs[7][0], want)
    outputs[7][0].sum().backward()
    want.sum().backward()
    for mine, theirs in zip(model.parameters(), eager.parameters(), strict=True):
        assert close(mine.grad, theirs.grad)


def test_several_outputs_keep_their_structure_and_only_differentiable_ones_carry_grads(
    store: DiskStore,
) -> None:
    model, eager = trainmodels.build("several"), trainmodels.build("several")
    fast = cct.compile(model, store=store)
    x, _ = trainmodels.batch("several")
    out, want = fast(x), eager(x)
    assert list(out) == list(want) and out["classes"] == 4
    assert out["y"].requires_grad and out["norm"].requires_grad
    assert not out["best"].requires_grad and out["best"].dtype == torch.int64
    assert torch.equal(out["best"], want["best"])
    assert out["doubled_t"].shape == want["doubled_t"].shape == (2, 4)
    assert out["doubled_t"].stride() == want["doubled_t"].stride()  # a view, laid out as eager's
    # Through some outputs only: the others' gradients are zero.
    (out["norm"].sum() + out["doubled_t"].sum()).backward()
    (want["norm"].sum() + want["doubled_t"].sum()).backward()
    for mine, theirs in zip(model.parameters(), eager.parameters(), strict=True):
        assert close(mine.grad, theirs.grad)


def test_gradients_accumulate_and_autograd_refuses_a_second_or_double_backward(
    store: DiskStore,
) -> None:
    model, eager = trainmodels.build("mlp"), trainmodels.build("mlp")
    fast = cct.compile(model, store=store)
    x, target = trainmodels.batch("mlp")
    for _ in range(2):  # .grad accumulates, as in eager
        trainmodels.loss(fast(x), target).backward()
        trainmodels.loss(eager(x), target).backward()
    assert close(model.fc2.weight.grad, eager.fc2.weight.grad)
    # A gradient from .sum() is expanded (stride 0): the backward package reads it dense.
    model.zero_grad()
    eager.zero_grad()
    fast(x).sum().backward()
    eager(x).sum().backward()
    assert close(model.fc1.weight.grad, eager.fc1.weight.grad)
    value = trainmodels.loss(fast(x), target)
    value.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        value.backward()
    (grad,) = torch.autograd.grad(
        trainmodels.loss(fast(x), target), model.fc2.weight, create_graph=True
    )
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()


def test_calls_without_gradients_keep_using_inference_packages(store: DiskStore) -> None:
    model = trainmodels.build("mlp")
    fast = cct.compile(model, store=store)
    x, target = trainmodels.batch("mlp")
    trainmodels.loss(fast(x), target).backward()
    training = cct.explain(fast, x)  # explain keys a training call like any other
    assert training.key and any(not match.differences for match in training.stored), training
    fast.eval()
    with torch.no_grad():
        assert close(fast(x), model(x))
        assert cct.explain(fast, x).key != training.key
    assert sorted(cct.stats(fast)["entries by mode"]) == ["aot", "aot-train"]


class Hooked(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.fc.register_forward_hook(lambda module, args, out: out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(x).sum(dim=1)
        return out


class TensorHooked(torch.nn.Module):
    """Forward registers a hook on an intermediate tensor: Python that runs in backward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.fc(x)
        hidden.register_hook(lambda grad: grad * 3)
        out: torch.Tensor = hidden.sum(dim=1)
        return out


class Branchy(torch.nn.Module):
    """Data-dependent control flow: which branch runs depends on the values."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.fc(x)
        out: torch.Tensor = hidden.sum(dim=1) if hidden.sum() > 0 else hidden.amax(dim=1)
        return out


@pytest.mark.parametrize(
    "kind, reason",
    [
        (Hooked, "forward or backward hooks"),
        (TensorHooked, "register_hook"),
        (Branchy, "tracing forward and backward failed"),
    ],
)
def test_what_a_training_package_cannot_serve_falls_back_with_the_reason_warned_once(
    kind: type, reason: str, store: DiskStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Never a silently dropped hook: such calls fall back, their grads eager's."""
    model = kind()
    fast = cct.compile(model, store=store)
    with caplog.at_level(logging.WARNING, logger="compilecache.torch"):
        for size in (3, 5):
            x = torch.randn(size, 4)
            model.zero_grad()
            fast(x).sum().backward()
            grad = model.fc.weight.grad.clone()
            model.zero_grad()
            model(x).sum().backward()  # eager, the hook included
            assert close(grad, model.fc.weight.grad)
    stats = cct.stats(fast)
    (recorded,) = stats["fallbacks"]
    assert reason in recorded and set(stats["entries by mode"]) == {"jit"}, stats
    assert sum(reason in record.getMessage() for record in caplog.records) == 1


@pytest.mark.redis
def test_cold_processes_compile_once_and_another_machine_trains_warm_from_redis(
    tmp_path: Path, redis_url: str
) -> None:
    """Three processes start together on one directory and a shared Redis tier: one
    compiles, two wait and load. Then a fresh process on another "machine" (an empty
    directory, an empty Inductor cache, the same Redis) trains with compiling forbidden."""
    remote = shared_remote(redis_url)
    env = worker_env(tmp_path / "a", tmp_path / "inductor-a", **remote)
    go = tmp_path / "go"
    workers = [start_train_worker("transformer", env, "--wait-file", str(go)) for _ in range(3)]
    go.touch()
    reports = [report_of(worker) for worker in workers]
    counts = [(r["aot compiles"], r["aot loads"]) for r in reports]
    assert sorted(counts) == [(0, 1), (0, 1), (1, 0)], reports
    env = worker_env(tmp_path / "b", tmp_path / "inductor-b", **remote)
    warm = report_of(start_train_worker("transformer", env, "--forbid-compile"))
    assert warm["aot compiles"] == 0 and warm["aot loads"] == 1, warm
    assert warm["entries by mode"] == ["aot-train"] and warm["fallbacks"] == {}, warm
    assert warm["calls"] == {"export": 0, "aoti": 0, "torch.compile": 0}, warm
    for report in [*reports, warm]:
        gaps = [abs(a - b) for a, b in zip(report["losses"], report["eager losses"], strict=True)]
        assert max(gaps) <= 1e-4, report


def start_train_worker(name: str, env: dict[str, str], *options: str) -> subprocess.Popen[str]:
    return start_worker(name, env, *options, worker=WORKER)


@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_automatic_dynamic_batch_sizes_share_one_training_entry(
    name: str, store: DiskStore
) -> None:
    """The second batch size compiles a dynamic entry that serves the third: the
    transformer's backward needs the batch size as an int, which reaches the backward
    package as an empty tensor's first dimension (AOTInductor takes no int inputs)."""
    model, eager = trainmodels.build(name), trainmodels.build(name)
    fast = cct.compile(model, store=store)
    for size in (4, 6, 11):
        x, target = trainmodels.batch(name, size=size)
        model.zero_grad()
        eager.zero_grad()
        trainmodels.call(fast, name, x, target).backward()
        trainmodels.call(eager, name, x, target).backward()
        for mine, theirs in zip(model.parameters(), eager.parameters(), strict=True):
            if mine.requires_grad:
                assert close(mine.grad, theirs.grad), size
            else:
                assert mine.grad is None and theirs.grad is None
    stats = cct.stats(fast)
    assert stats["entries by mode"] == ["aot-train", "aot-train"], stats
    assert stats["fallbacks"] == {}, stats


@pytest.mark.parametrize(
    "header, problem",
    [
        ({"mode": "aot-train", "layout": {}, "forward bytes": 4}, "layout"),
        ({"mode": "aot-train", "layout": None, "forward bytes": 4}, "layout"),
        ({"mode": "aot-train", "layout": {}, "forward bytes": 0}, "sizes"),
        ({"mode": "aot-train", "layout": {}, "forward bytes": 99}, "sizes"),
        ({"mode": "aot-train", "layout": {}, "forward bytes": "4"}, "sizes"),
    ],
)
def test_a_malformed_training_entry_is_refused_with_what_is_wrong(
    header: dict[str, Any], problem: str
) -> None:
    data = artifact.pack(header, b"x" * 10)
    parsed, payload = artifact.unpack(data)
    with pytest.raises(artifact.TorchArtifactError, match=problem):
        artifact.read_train(parsed, payload)


def random_model(seed: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """A random stack (depth, widths, activations, LayerNorm, frozen tensors) and input."""
    generator = torch.Generator().manual_seed(seed)

    def pick(n: int) -> int:
        return int(torch.randint(0, n, (1,), generator=generator))

    torch.manual_seed(seed)
    widths = [3 + pick(10) for _ in range(2 + pick(3))]
    layers: list[torch.nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(widths):
        layers.append(torch.nn.Linear(fan_in, fan_out, bias=bool(pick(2))))
        layers.append([torch.nn.ReLU(), torch.nn.GELU(), torch.nn.Tanh()][pick(3)])
        if pick(2):
            layers.append(torch.nn.LayerNorm(fan_out))
    model = torch.nn.Sequential(*layers)
    params = list(model.parameters())
    params[pick(len(params))].requires_grad_(False)
    x = torch.randn(2 + pick(6), *([2] if pick(2) else []), widths[0], generator=generator)
    return model, x.requires_grad_(bool(pick(2)))


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_property_random_models_and_shapes_get_eager_gradients(seed: int, store: DiskStore) -> None:
    """Never a silent wrong gradient: random stacks and shapes, a random loss weighting."""
    model, x = random_model(seed)
    eager, x_eager = random_model(seed)
    weight = torch.randn(model(x).shape, generator=torch.Generator().manual_seed(seed))
    fast = cct.compile(model, store=store)
    (fast(x) * weight).sum().backward()
    (eager(x_eager) * weight).sum().backward()
    assert cct.stats(fast)["entries by mode"] == ["aot-train"], cct.stats(fast)
    for mine, theirs in zip(model.parameters(), eager.parameters(), strict=True):
        if mine.requires_grad:
            assert close(mine.grad, theirs.grad), seed
        else:
            assert mine.grad is None
    if x.requires_grad:
        assert close(x.grad, x_eager.grad)
