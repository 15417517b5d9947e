"""The model of ``compilecache demo`` and the torch benchmark: a small two-block transformer.

Each block is ``LayerNorm`` -> ``MultiheadAttention`` (batch first) and ``LayerNorm`` -> MLP
(``Linear(d, 4d)`` -> ``GELU`` -> ``Linear(4d, d)``), with residual connections. The default
size (d=128, 4 heads, input (2, 16, 128)) is the reference model of docs/torch.md.
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        out: torch.Tensor = x + self.mlp(self.norm2(x))
        return out


class TinyTransformer(nn.Module):
    def __init__(self, dim: int = 128, heads: int = 4, blocks: int = 2) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(Block(dim, heads) for _ in range(blocks)))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.norm(self.blocks(x))
        return out


def demo_model(seed: int = 0) -> TinyTransformer:
    """The demo transformer in eval mode, its weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return TinyTransformer().eval()


def demo_input(batch: int = 2, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 16, 128, generator=generator)
