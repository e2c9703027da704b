"""Variational lower bounds on mutual information from a critic score matrix.

``scores[i, j] = T(x_i, y_j)``. In the square (B, B) form the diagonal holds the B positive pairs
(samples of the joint) and the off-diagonal entries stand in for the product of marginals.

The rectangular (R, C) form, chosen by an explicit ``offset``, serves data-parallel training: a
process holds R rows of the global C x C matrix (its own samples against every sample of the
global batch) and the positive of row i sits at column ``offset + i``. Averaged over equal row
shards, the InfoNCE and NWJ values of the shards equal the square bound of the whole matrix. DV
is the log of a global mean, not an average over rows: a shard's DV bounds that shard's pairs
only. Every bound is in nats.

References:
    van den Oord et al. (2018), InfoNCE; Donsker & Varadhan (1983); Nguyen, Wainwright & Jordan
    (2010); Poole et al. (2019), "On Variational Bounds of Mutual Information".

Example:
    >>> import torch
    >>> s = torch.randn(8, 8)
    >>> bool(torch.isclose(infonce_bound(s), infonce_bound(s[4:], offset=4) / 2
    ...                    + infonce_bound(s[:4], offset=0) / 2))
    True
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["BOUNDS", "MIBound", "dv_bound", "infonce_bound", "nwj_bound", "positives"]


def _check(scores: Tensor, offset: int | None) -> tuple[int, int, int]:
    """(rows, columns, offset) after checking the shape; ``offset=None`` demands a square."""
    if offset is None:
        if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
            raise ValueError(f"scores must be a square (B, B) matrix, got {tuple(scores.shape)}")
        if scores.shape[0] < 2:
            raise ValueError("scores need B >= 2 (in-batch negatives)")
        return scores.shape[0], scores.shape[1], 0
    if scores.ndim != 2:
        raise ValueError(f"scores must be an (R, C) matrix, got {tuple(scores.shape)}")
    r, c = scores.shape
    if r < 1 or offset < 0 or offset + r > c:
        raise ValueError(
            f"scores {tuple(scores.shape)} with offset {offset}: the positives (i, offset + i) "
            "must lie inside the matrix"
        )
    if c < 2:
        raise ValueError("scores need at least 2 columns (in-batch negatives)")
    return r, c, offset


def positives(scores: Tensor, offset: int = 0) -> Tensor:
    """The R positive scores ``scores[i, offset + i]`` (the diagonal when square)."""
    return scores.diagonal(offset)


def _negatives(scores: Tensor, offset: int) -> Tensor:
    """Every entry but the positives, flattened: R * (C - 1) values."""
    r, c = scores.shape
    cols = torch.arange(c, device=scores.device)
    rows = torch.arange(r, device=scores.device)
    mask = cols[None, :] != (rows[:, None] + offset)
    return scores[mask]


def infonce_bound(scores: Tensor, offset: int | None = None) -> Tensor:
    """InfoNCE: mean_i [ S_i,i+offset - log (1/C) sum_j exp S_ij ]; never exceeds log C."""
    _, c, k = _check(scores, offset)
    return (positives(scores, k) - torch.logsumexp(scores, dim=1)).mean() + math.log(c)


def dv_bound(scores: Tensor, offset: int | None = None) -> Tensor:
    """Donsker-Varadhan: E_P[T] - log E_{PxQ}[exp T], negatives = every non-positive pair."""
    r, c, k = _check(scores, offset)
    neg = _negatives(scores, k)
    return positives(scores, k).mean() - (torch.logsumexp(neg, dim=0) - math.log(r * (c - 1)))


def nwj_bound(scores: Tensor, offset: int | None = None) -> Tensor:
    """NWJ (f-GAN KL): E_P[T] - E_{PxQ}[exp(T - 1)]; unbiased in mini-batches."""
    _, _, k = _check(scores, offset)
    neg = _negatives(scores, k)
    return positives(scores, k).mean() - torch.exp(neg - 1.0).mean()


BOUNDS = {"infonce": infonce_bound, "dv": dv_bound, "nwj": nwj_bound}


class MIBound(nn.Module):
    """An MI lower bound as a module: ``forward(scores, offset=None) -> scalar`` (maximise it)."""

    def __init__(self, kind: str = "infonce") -> None:
        super().__init__()
        if kind not in BOUNDS:
            raise ValueError(f"unknown bound {kind!r} (expected one of {', '.join(BOUNDS)})")
        self.kind = kind

    @property
    def row_separable(self) -> bool:
        """True when the bound of a full matrix is the mean of its equal row shards' bounds."""
        return self.kind != "dv"

    def forward(self, scores: Tensor, offset: int | None = None) -> Tensor:
        """(B, B) scores, or (R, C) rows with their positives at ``offset + i`` -> scalar bound."""
        return BOUNDS[self.kind](scores, offset)
