"""SIGReg: a differentiable sliced Epps-Pulley statistic of codes against N(0, I).

LeJEPA (Balestriero & LeCun, 2025) regularises embeddings towards an isotropic Gaussian by
testing random 1-D projections with the Epps-Pulley characteristic-function statistic
(Epps & Pulley, 1983). dimgen uses it two ways: as an optional objective term on the clean
codes (``EncoderConfig.sigreg``) and as a cheap prior-match statistic in per-epoch curves.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["SlicedEppsPulley", "epps_pulley", "prior_match_ratio"]


def epps_pulley(x: Tensor, t_max: float = 3.0, knots: int = 17) -> Tensor:
    """(n, m) samples of m projections -> (m,) Epps-Pulley divergences from N(0, 1).

    D = integral over t in R of |phi_n(t) - exp(-t^2 / 2)|^2 exp(-t^2 / 2) dt, with phi_n the
    empirical characteristic function, by the trapezoid rule on [0, t_max] (the integrand is
    even). n * D is the Epps-Pulley test statistic; D itself is >= 0 and 0 only when the
    empirical and normal characteristic functions agree on the knots. Differentiable in ``x``.

    Raises:
        ValueError: ``x`` not 2-D or with fewer than 2 rows.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"epps_pulley expects (n >= 2, m) projections, got {tuple(x.shape)}")
    t = torch.linspace(0.0, t_max, knots, device=x.device, dtype=x.dtype)  # (K,)
    tx = x.unsqueeze(-1) * t  # (n, m, K)
    gauss = torch.exp(-0.5 * t * t)  # the N(0, 1) characteristic function, also the weight
    err = (torch.cos(tx).mean(0) - gauss) ** 2 + torch.sin(tx).mean(0) ** 2  # (m, K)
    return 2.0 * torch.trapezoid(err * gauss, t, dim=-1)


class SlicedEppsPulley(nn.Module):
    """Mean Epps-Pulley divergence over random unit directions: ``forward(z) -> 0-d`` (SIGReg).

    Args:
        dim: code dimension d.
        slices: random directions per call (fresh each call, from the global torch RNG or
            ``generator``).
        t_max, knots: the quadrature of :func:`epps_pulley`.
    """

    def __init__(self, dim: int, slices: int = 64, t_max: float = 3.0, knots: int = 17) -> None:
        super().__init__()
        self.dim, self.slices, self.t_max, self.knots = dim, slices, t_max, knots

    def directions(self, generator: torch.Generator | None = None, device=None) -> Tensor:
        """(d, slices) random unit directions (uniform on the sphere)."""
        a = torch.randn(self.dim, self.slices, generator=generator)
        return (a / a.norm(dim=0, keepdim=True)).to(device)

    def forward(self, z: Tensor, directions: Tensor | None = None) -> Tensor:
        """(n, d) codes -> 0-d mean divergence of their projections from N(0, 1) (>= 0).

        Raises:
            ValueError: ``z`` not (n >= 2, d).
        """
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"SIGReg expects (batch, {self.dim}) codes, got {tuple(z.shape)}")
        a = self.directions(device=z.device) if directions is None else directions.to(z)
        return epps_pulley(z @ a.to(z.dtype), self.t_max, self.knots).mean()


@torch.no_grad()
def prior_match_ratio(codes: Tensor, seed: int = 0, slices: int = 64) -> float:
    """(n, d) codes -> sliced Epps-Pulley divergence of the codes / that of an N(0, I) sample of
    the same size, on the same directions (~1: as Gaussian as N(0, I) itself; >> 1: not).

    Deterministic given ``seed``; consumes no global RNG state (resume stays bit-exact).
    """
    z = codes.detach().to("cpu", torch.float64)
    g = torch.Generator().manual_seed(seed)
    stat = SlicedEppsPulley(z.shape[1], slices)
    a = stat.directions(g).double()
    ref = torch.randn(z.shape, generator=g, dtype=torch.float64)
    mine, base = float(stat(z, a)), float(stat(ref, a))
    return mine / base if base > 0 else math.inf
