"""Critics T(x, y) evaluated on all B x B pairs of a batch, giving the score matrix for `dimgen.infomax.bounds`.

The paper's critic is a 3-layer MLP on the concatenation [x; y]. Its first layer splits:
W [x; y] + b = (W_x x + b) + W_y y, so the B x B x 2d concatenation is never built: the two
halves are computed once per sample and broadcast-added, (B, 1, H) + (1, B, H).

The B x B x H hidden activations still dominate the cost of a training step. ``ConcatCritic``
evaluates them with a fused autograd function (``pair_mlp``): in-place activations, a hand-written
backward that reuses the saved activations as its own work buffers, and, for row chunks, a
recomputing mode that keeps nothing of size B x B x H between forward and backward.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError

__all__ = ["ConcatCritic", "SeparableCritic", "build_critic", "pair_mlp"]


def _compute_dtype(ax: Tensor, ay: Tensor) -> torch.dtype:
    """The autocast dtype when autocast is on (as ``nn.Linear`` would use), else the inputs'."""
    dev = ax.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return torch.promote_types(ax.dtype, ay.dtype)


def _hidden(
    ax: Tensor, ay: Tensor, w2: Tensor, b2: Tensor, dt: torch.dtype
) -> tuple[Tensor, Tensor]:
    """h1 = relu(ax_i + ay_j), h2 = relu(h1 W2^T + b2), both (R * C, H) in ``dt``, in place."""
    r, c, h = ax.shape[0], ay.shape[0], ax.shape[1]
    h1 = torch.add(ax[:, None, :].to(dt), ay[None, :, :].to(dt)).relu_().view(r * c, h)
    h2 = torch.addmm(b2.to(dt), h1, w2.to(dt).t()).relu_()
    return h1, h2


class _PairMLP(torch.autograd.Function):
    """Scores s_ij = w3 . relu(W2 relu(ax_i + ay_j) + b2) + b3 with a hand-written backward.

    ``keep=True`` saves h1 and h2 (fastest; the backward overwrites them in place, so a second
    backward through the same graph is refused by autograd's version check); ``keep=False`` saves
    only the (R, H) and (C, H) inputs and recomputes h1, h2 in the backward.
    """

    @staticmethod
    def forward(
        ctx: Any, ax: Tensor, ay: Tensor, w2: Tensor, b2: Tensor, w3: Tensor, b3: Tensor, keep: bool
    ) -> Tensor:
        dt = _compute_dtype(ax, ay)
        h1, h2 = _hidden(ax, ay, w2, b2, dt)
        s = torch.addmv(b3.to(dt), h2, w3[0].to(dt))  # (R * C,)
        ctx.keep, ctx.dt, ctx.shape = keep, dt, (ax.shape[0], ay.shape[0], ax.shape[1])
        if keep:
            ctx.save_for_backward(ax, ay, w2, b2, w3, h1, h2)
        else:
            ctx.save_for_backward(ax, ay, w2, b2, w3)
        return s.view(ax.shape[0], ay.shape[0])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        if ctx.keep:
            ax, ay, w2, b2, w3, h1, h2 = ctx.saved_tensors
        else:
            ax, ay, w2, b2, w3 = ctx.saved_tensors
            with torch.no_grad():
                h1, h2 = _hidden(ax, ay, w2, b2, ctx.dt)
        r, c, h = ctx.shape
        dt = ctx.dt
        g = grad.reshape(r * c).to(dt)
        dw3 = torch.mv(h2.t(), g)[None].to(w3.dtype)  # (1, H)
        db3 = g.sum().reshape(1)
        # dL/d(pre-activation 2) = 1[h2 > 0] * w3 * g, built in h2's own storage.
        dz2 = h2.sign_().mul_(w3[0].to(dt)).mul_(g[:, None])
        dw2 = torch.mm(dz2.t(), h1).to(w2.dtype)  # (H, H)
        db2 = dz2.sum(0).to(b2.dtype)
        dh1 = torch.mm(dz2, w2.to(dt)).mul_(h1.sign_()).view(r, c, h)  # 1[h1 > 0] * dz2 W2
        dax = dh1.sum(1).to(ax.dtype) if ctx.needs_input_grad[0] else None
        day = dh1.sum(0).to(ay.dtype) if ctx.needs_input_grad[1] else None
        return dax, day, dw2, db2, dw3, db3.to(w3.dtype), None


def pair_mlp(
    ax: Tensor, ay: Tensor, w2: Tensor, b2: Tensor, w3: Tensor, b3: Tensor, keep: bool = True
) -> Tensor:
    """(R, H) and (C, H) first-layer halves -> (R, C) scores of the 3-layer MLP critic.

    ``w2`` (H, H), ``b2`` (H,), ``w3`` (1, H), ``b3`` (1,) are the second and third layers.
    """
    return _PairMLP.apply(ax, ay, w2, b2, w3, b3, keep)


class ConcatCritic(nn.Module):
    """3-layer MLP critic on concatenated pairs, with a split first layer.

    ``chunk`` > 0 evaluates that many rows of the score matrix at a time and recomputes their
    activations in the backward, so peak memory is O(chunk * B * hidden) instead of O(B^2 hidden).
    ``fused=False`` uses plain autograd (broadcast add, ``nn.Sequential``, activation
    checkpointing for chunks): the reference the fused path is tested against.
    """

    def __init__(
        self, dim_x: int, dim_y: int, hidden: int = 256, chunk: int = 0, fused: bool = True
    ) -> None:
        super().__init__()
        self.dim_x, self.dim_y, self.hidden, self.chunk = dim_x, dim_y, hidden, chunk
        self.fused = fused
        self.first = nn.Linear(dim_x + dim_y, hidden)  # weight = [W_x | W_y]
        self.rest = nn.Sequential(
            nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def pair(self, x: Tensor, y: Tensor) -> Tensor:
        """Scores of matched pairs: (N, dx), (N, dy) -> (N,). The plain concatenated form."""
        return self.rest(self.first(torch.cat([x, y], dim=-1))).squeeze(-1)

    def _rows(self, ax: Tensor, ay: Tensor, keep: bool = True) -> Tensor:
        """(R, H) and (C, H) first-layer halves -> (R, C) scores."""
        if self.fused:
            l2, l3 = self.rest[1], self.rest[3]
            return pair_mlp(ax, ay, l2.weight, l2.bias, l3.weight, l3.bias, keep)
        return self.rest(ax[:, None, :] + ay[None, :, :]).squeeze(-1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """(R, dx), (C, dy) -> (R, C) scores with ``scores[i, j] = T(x_i, y_j)``.

        R = C = B for a batch; R < C for one process's rows in data-parallel training.
        """
        if x.ndim != 2 or y.ndim != 2 or x.shape[1] != self.dim_x or y.shape[1] != self.dim_y:
            raise ValueError(
                f"critic expects (B, {self.dim_x}) and (B, {self.dim_y}), got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        w_x, w_y = self.first.weight[:, : self.dim_x], self.first.weight[:, self.dim_x :]
        ax = x @ w_x.T + self.first.bias  # (R, H)
        ay = y @ w_y.T  # (C, H)
        if self.chunk <= 0 or self.chunk >= x.shape[0]:
            return self._rows(ax, ay)
        parts = []
        for start in range(0, x.shape[0], self.chunk):
            block = ax[start : start + self.chunk]
            if self.fused:  # recompute each block's activations in the backward
                parts.append(self._rows(block, ay, keep=False))
            elif torch.is_grad_enabled() and (block.requires_grad or ay.requires_grad):
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
        """(R, dx), (C, dy) -> (R, C) scores."""
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
