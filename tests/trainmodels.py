"""Models for the training tests, each built from a seed (two builds are equal), with a batch
and a loss: ``build(name)``, ``batch(name, size, seed)``, ``loss(name, output, batch)``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from compilecache.torch._demo_model import TinyTransformer


class MLP(nn.Module):
    """Two layers, the first one's bias frozen (it must get no gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 32)
        self.fc2 = nn.Linear(32, 4)
        self.fc1.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc2(torch.relu(self.fc1(x)))
        return out


class CNN(nn.Module):
    """Convolution, BatchNorm (running statistics updated in train mode), a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))
        return out


class Dropped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 32)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc2(self.drop(torch.relu(self.fc1(x))))
        return out


class Several(nn.Module):
    """A dict of outputs: two differentiable, a view of an intermediate, an index (no
    gradient) and a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        y = self.fc(x)
        return {
            "y": y,
            "norm": y.square().sum(dim=1),
            "doubled_t": (y * 2).t()[:2],
            "best": y.argmax(dim=1),
            "classes": 4,
        }


def _gpt2() -> nn.Module:
    import transformers

    config = transformers.GPT2Config(
        n_embd=32,
        n_layer=2,
        n_head=4,
        vocab_size=100,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip (dropout 0.1 everywhere, the default)
    return transformers.GPT2LMHeadModel(config)


BUILDERS = {
    "mlp": MLP,
    "transformer": lambda: TinyTransformer(dim=32, heads=4, blocks=2),
    "cnn": CNN,
    "dropout": Dropped,
    "several": Several,
    "gpt2": _gpt2,
}


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return BUILDERS[name]().train()


def batch(name: str, size: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    if name in ("mlp", "dropout", "several"):
        return torch.randn(size, 8, generator=generator), torch.randn(size, 4, generator=generator)
    if name == "cnn":
        x = torch.randn(size, 3, 6, 6, generator=generator)
        return x, torch.randn(size, 4, generator=generator)
    if name == "gpt2":
        ids = torch.randint(1, 100, (2, 8), generator=generator)
        return ids, ids
    x = torch.randn(size, 6, 32, generator=generator)
    return x, torch.randn(size, 6, 32, generator=generator)


def call(model: Any, name: str, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The model's loss on one batch (GPT-2 computes it inside forward, from ``labels``)."""
    if name == "gpt2":
        return model(input_ids=x, labels=target).loss  # type: ignore[no-any-return]
    out = model(x)
    if name == "several":
        out = out["y"] + out["norm"][:, None]
    return loss(out, target)


def loss(output: Any, target: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(output, target)


def train(model: Any, params: Any, name: str, steps: int, lr: float = 0.05) -> list[float]:
    """``steps`` SGD steps of ``model`` (compiled or not) on fixed batches, each step's
    random ops seeded by the step; the losses."""
    optimizer = torch.optim.SGD(params, lr=lr)
    losses = []
    for step in range(steps):
        x, target = batch(name, seed=step % 4)
        optimizer.zero_grad(set_to_none=True)
        torch.manual_seed(step)
        value = call(model, name, x, target)
        value.backward()
        optimizer.step()
        losses.append(float(value.detach()))
    return losses
