"""Invertible maps between code spaces, with log-determinants: the exact elementwise ones.

Every map is a :class:`Bijection` on (n, d) tensors:

- ``forward(x) -> (y, logdet)``: source space -> target space, ``logdet[i] = log|det dy_i/dx_i|``;
- ``inverse(y) -> (x, logdet)``: target -> source, ``logdet[i] = log|det dx_i/dy_i|``.

:class:`ElementwiseMap` is the probability-integral transform ``y = G^-1(F(x))`` per coordinate
(F the source CDF, G the target CDF): it pushes the source law exactly onto the target law, so it
needs no training. It computes in float64 through tail masses (see :class:`~.targets.Law1D`) and
carries no gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import DataError
from .targets import Law1D, source_law

__all__ = [
    "UNIFORM_FLOOR",
    "Bijection",
    "Composite",
    "ElementwiseMap",
    "Identity",
    "as_codes",
    "prior_map",
]

UNIFORM_FLOOR = 2.0**-24
"""Smallest tail mass given to a uniform code: float32 codes cannot resolve 1 - u below ~2^-24,
so a stored code of exactly 0 or 1 means "beyond the last level" and maps to |z| ~ 5.3 (Gaussian)
rather than to infinity. Round trips of such codes still agree to 2^-24 < 1e-5."""

_TINY = float(np.finfo(np.float64).tiny)


def as_codes(x: Any, dim: int, name: str = "codes") -> Tensor:
    """Check and convert (n, dim) array-likes to a float64 CPU tensor; one clear error otherwise."""
    t = x.detach().to("cpu") if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise DataError(f"{name} must be numeric, got {t.dtype}")
    if t.ndim != 2 or t.shape[1] != dim:
        raise DataError(f"{name} must have shape (n, {dim}), got {tuple(t.shape)}")
    t = t.to(torch.float64)
    if not torch.isfinite(t).all():
        bad = torch.nonzero(~torch.isfinite(t).all(1)).flatten()[:10].tolist()
        raise DataError(f"{name} contain NaN or Inf (rows {', '.join(map(str, bad))})")
    return t


class Bijection(nn.Module):
    """Base class: an invertible map on R^d (or a subset) with log|det J| in both directions."""

    dim: int

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # (n, d) -> (n, d), (n,)
        raise NotImplementedError

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:  # (n, d) -> (n, d), (n,)
        raise NotImplementedError


class Identity(Bijection):
    """The identity on R^d (an encoder's own prior)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x, x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        return y, y.new_zeros(y.shape[0])


class ElementwiseMap(Bijection):
    """Exact per-coordinate map y = G^-1(F(x)) from one 1-D law to another (no parameters).

    Args:
        source: law of each source coordinate (F).
        target: law of each target coordinate (G).
        dim: number of coordinates d.
        floor: smallest tail mass used in ``forward`` (keeps boundary codes finite); see
            :data:`UNIFORM_FLOOR`.

    Raises:
        DataError: on inputs with NaN/Inf or outside the support of the law they belong to.

    Example:
        >>> phi = ElementwiseMap(source_law("gaussian"), source_law("uniform"), dim=2)
        >>> u, _ = phi(torch.zeros(1, 2))
        >>> u.tolist()
        [[0.5, 0.5]]
    """

    def __init__(self, source: Law1D, target: Law1D, dim: int, floor: float = _TINY) -> None:
        super().__init__()
        self.source, self.target, self.dim, self.floor = source, target, dim, float(floor)

    @staticmethod
    def _check_support(v: np.ndarray, law: Law1D, name: str) -> None:
        lo, hi = law.support()
        bad = (v < lo) | (v > hi)
        if bad.any():
            raise DataError(
                f"{name}: {int(bad.sum())} value(s) outside the support [{lo:g}, {hi:g}] of "
                f"{law.name} (min {v.min():.6g}, max {v.max():.6g})"
            )

    def clamped(self, x: Tensor) -> Tensor:
        """(n, d) bool: coordinates whose tail mass ``forward`` raises to ``floor``."""
        v = as_codes(x, self.dim).numpy()
        self._check_support(v, self.source, f"codes ({self.source.name} prior)")
        with np.errstate(all="ignore"):
            p, _ = self.source.to_tail(v)
        return torch.from_numpy(p < self.floor)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        v = as_codes(x, self.dim).numpy()
        self._check_support(v, self.source, f"codes ({self.source.name} prior)")
        with np.errstate(all="ignore"):
            p, upper = self.source.to_tail(v)
            y = self.target.from_tail(np.maximum(p, self.floor), upper)
            logdet = (self.source.logpdf(v) - self.target.logpdf(y)).sum(1)
        return torch.from_numpy(y), torch.from_numpy(logdet)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        v = as_codes(y, self.dim, "target-space codes").numpy()
        self._check_support(v, self.target, "target-space codes")
        with np.errstate(all="ignore"):
            p, upper = self.target.to_tail(v)
            x = self.source.from_tail(np.maximum(p, _TINY), upper)
            logdet = (self.target.logpdf(v) - self.source.logpdf(x)).sum(1)
        return torch.from_numpy(x), torch.from_numpy(logdet)


class Composite(Bijection):
    """Maps applied in order: forward runs ``maps[0]`` first, inverse runs them in reverse."""

    def __init__(self, maps: Sequence[Bijection]) -> None:
        super().__init__()
        if not maps:
            raise ValueError("Composite needs at least one map")
        self.maps = nn.ModuleList(maps)
        self.dim = maps[0].dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0], dtype=torch.float64)
        for m in self.maps:
            x, ld = m(x)
            total = total + ld.to(torch.float64)
        return x, total

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        total = y.new_zeros(y.shape[0], dtype=torch.float64)
        for m in reversed(self.maps):
            y, ld = m.inverse(y)
            total = total + ld.to(torch.float64)
        return y, total


def prior_map(source_prior: str, target: Law1D, dim: int) -> ElementwiseMap:
    """The exact map from an encoder prior (``gaussian``/``uniform``) to i.i.d. ``target``."""
    floor = UNIFORM_FLOOR if source_prior == "uniform" else _TINY
    return ElementwiseMap(source_law(source_prior), target, dim, floor)
