"""Critics T(x, y) evaluated on all B x B pairs of a batch, giving the score matrix for `dimgen.mi`.

The paper's critic is a 3-layer MLP on the concatenation [x; y]. Its first layer splits:
W [x; y] + b = (W_x x + b) + W_y y, so the B x B x 2d concatenation is never built: the two
halves are computed once per sample and broadcast-added, (B, 1, H) + (1, B, H).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .errors import ConfigError

__all__ = ["ConcatCritic", "SeparableCritic", "build_critic"]


class ConcatCritic(nn.Module):
    """3-layer MLP critic on concatenated pairs, with a split first layer.

    ``chunk`` > 0 evaluates that many rows of the score matrix at a time, with activation
    checkpointing when gradients are needed, so peak memory is O(chunk * B * hidden).
    """

    def __init__(self, dim_x: int, dim_y: int, hidden: int = 256, chunk: int = 0) -> None:
        super().__init__()
        self.dim_x, self.dim_y, self.hidden, self.chunk = dim_x, dim_y, hidden, chunk
        self.first = nn.Linear(dim_x + dim_y, hidden)  # weight = [W_x | W_y]
        self.rest = nn.Sequential(
            nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def pair(self, x: Tensor, y: Tensor) -> Tensor:
        """Scores of matched pairs: (N, dx), (N, dy) -> (N,). The plain concatenated form."""
        return self.rest(self.first(torch.cat([x, y], dim=-1))).squeeze(-1)

    def _rows(self, ax: Tensor, ay: Tensor) -> Tensor:
        return self.rest(ax[:, None, :] + ay[None, :, :]).squeeze(-1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """(B, dx), (B, dy) -> (B, B) scores with ``scores[i, j] = T(x_i, y_j)``."""
        if x.ndim != 2 or y.ndim != 2 or x.shape[1] != self.dim_x or y.shape[1] != self.dim_y:
            raise ValueError(
                f"critic expects (B, {self.dim_x}) and (B, {self.dim_y}), got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        w_x, w_y = self.first.weight[:, : self.dim_x], self.first.weight[:, self.dim_x :]
        ax = x @ w_x.T + self.first.bias  # (B, H)
        ay = y @ w_y.T  # (B, H)
        if self.chunk <= 0 or self.chunk >= x.shape[0]:
            return self._rows(ax, ay)
        parts = []
        for start in range(0, x.shape[0], self.chunk):
            block = ax[start : start + self.chunk]
            if torch.is_grad_enabled() and (block.requires_grad or ay.requires_grad):
                parts.append(checkpoint(self._rows, block, ay, use_reentrant=False))
            else:
                parts.append(self._rows(block, ay))
        return torch.cat(parts, dim=0)


class SeparableCritic(nn.Module):
    """Dot-product critic T(x, y) = <g(x), h(y)> / sqrt(k) with two small MLP heads."""

    def __init__(self, dim_x: int, dim_y: int, hidden: int = 256, out: int = 64) -> None:
        super().__init__()
        self.dim_x, self.dim_y = dim_x, dim_y
        self.g = nn.Sequential(nn.Linear(dim_x, hidden), nn.ReLU(), nn.Linear(hidden, out))
        self.h = nn.Sequential(nn.Linear(dim_y, hidden), nn.ReLU(), nn.Linear(hidden, out))
        self.scale = out**-0.5

    def pair(self, x: Tensor, y: Tensor) -> Tensor:
        """Scores of matched pairs: (N, dx), (N, dy) -> (N,)."""
        return (self.g(x) * self.h(y)).sum(-1) * self.scale

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """(B, dx), (B, dy) -> (B, B) scores."""
        if x.ndim != 2 or y.ndim != 2 or x.shape[1] != self.dim_x or y.shape[1] != self.dim_y:
            raise ValueError(
                f"critic expects (B, {self.dim_x}) and (B, {self.dim_y}), got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        return self.g(x) @ self.h(y).T * self.scale


def build_critic(kind: str, dim: int, hidden: int, chunk: int = 0) -> nn.Module:
    """Critic on pairs of ``dim``-dimensional codes."""
    if kind == "mlp":
        return ConcatCritic(dim, dim, hidden, chunk)
    if kind == "separable":
        return SeparableCritic(dim, dim, hidden)
    raise ConfigError(f"unknown critic {kind!r} (expected mlp or separable)")
