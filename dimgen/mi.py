"""Variational lower bounds on mutual information from a critic score matrix.

``scores[i, j] = T(x_i, y_j)``: the diagonal holds the B positive pairs (samples of the joint),
the off-diagonal entries stand in for the product of marginals. Every bound is in nats.

References:
    van den Oord et al. (2018), InfoNCE; Donsker & Varadhan (1983); Nguyen, Wainwright & Jordan
    (2010); Poole et al. (2019), "On Variational Bounds of Mutual Information".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["BOUNDS", "MIBound", "dv_bound", "infonce_bound", "nwj_bound"]


def _check(scores: Tensor) -> int:
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be a square (B, B) matrix, got {tuple(scores.shape)}")
    if scores.shape[0] < 2:
        raise ValueError("scores need B >= 2 (in-batch negatives)")
    return scores.shape[0]


def _off_diagonal(scores: Tensor) -> Tensor:
    b = scores.shape[0]
    mask = ~torch.eye(b, dtype=torch.bool, device=scores.device)
    return scores[mask]


def infonce_bound(scores: Tensor) -> Tensor:
    """InfoNCE: mean_i [ S_ii - log (1/B) sum_j exp S_ij ]; never exceeds log B."""
    b = _check(scores)
    return (scores.diagonal() - torch.logsumexp(scores, dim=1)).mean() + math.log(b)


def dv_bound(scores: Tensor) -> Tensor:
    """Donsker-Varadhan: E_P[T] - log E_{PxQ}[exp T], negatives = off-diagonal pairs."""
    b = _check(scores)
    neg = _off_diagonal(scores)
    return scores.diagonal().mean() - (torch.logsumexp(neg, dim=0) - math.log(b * (b - 1)))


def nwj_bound(scores: Tensor) -> Tensor:
    """NWJ (f-GAN KL): E_P[T] - E_{PxQ}[exp(T - 1)]; unbiased in mini-batches."""
    _check(scores)
    return scores.diagonal().mean() - torch.exp(_off_diagonal(scores) - 1.0).mean()


BOUNDS = {"infonce": infonce_bound, "dv": dv_bound, "nwj": nwj_bound}


class MIBound(nn.Module):
    """An MI lower bound as a module: ``forward(scores) -> scalar`` (maximise it)."""

    def __init__(self, kind: str = "infonce") -> None:
        super().__init__()
        if kind not in BOUNDS:
            raise ValueError(f"unknown bound {kind!r} (expected one of {', '.join(BOUNDS)})")
        self.kind = kind

    def forward(self, scores: Tensor) -> Tensor:
        """(B, B) critic scores -> scalar lower bound on the MI in nats."""
        return BOUNDS[self.kind](scores)
