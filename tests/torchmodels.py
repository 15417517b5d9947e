"""Small torch models for the torch integration tests (importable by worker processes)."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, inputs: int = 16, hidden: int = 32, outputs: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(inputs, hidden)
        self.fc2 = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.norm(self.conv(x))))
        return self.head(h.flatten(1))


class Branchy(nn.Module):
    """Data-dependent control flow: torch.export cannot export it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


MODELS = {"mlp": MLP, "cnn": SmallCNN, "branchy": Branchy}


def make(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if name == "transformer":
        from compilecache.torch._demo_model import demo_model

        return demo_model(seed)
    return MODELS[name]().eval()


def example(name: str, batch: int = 2, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = {
        "mlp": (batch, 16),
        "cnn": (batch, 3, 8, 8),
        "branchy": (batch, 8),
        "transformer": (batch, 16, 128),
    }[name]
    return torch.randn(*shape, generator=generator)
