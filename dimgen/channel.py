"""The noise channel: normalise the encoder's output to the prior's scale, then add noise.

Gaussian(sigma): batch-norm without affine (E[f_i^2] = 1), + N(0, sigma^2 I) while training.
Uniform(eps):    u = Phi(batch-norm(h)) in [0, 1]^d (the normal CDF of the standardised output),
                 + U[-eps, eps]^d while training.
At inference the channel returns the normalised codes without noise, using statistics that
:meth:`NoiseChannel.calibrate` recomputes exactly over the training data after training.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, Uniform

from .errors import ConfigError

__all__ = ["GaussianChannel", "NoiseChannel", "UniformChannel", "make_channel"]


class NoiseChannel(nn.Module):
    """Shared machinery: feature-wise standardisation with exact post-training statistics."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise ConfigError(f"code dimension must be >= 1, got {dim}")
        self.dim = dim
        # affine=False: the normalisation must not be undone by learned scale/shift.
        self.norm = nn.BatchNorm1d(dim, affine=False, momentum=0.1)
        # Data-parallel training: batch statistics over all processes' shards (see
        # `dimgen.distributed.global_batch_norm`); set by the training loop.
        self.data_parallel = False

    # -- subclasses ---------------------------------------------------------------------------
    def squash(self, s: Tensor) -> Tensor:
        """Map standardised outputs to the prior's support."""
        raise NotImplementedError

    def noise(self, c: Tensor) -> Tensor:
        """Draw channel noise with the shape of ``c``."""
        raise NotImplementedError

    def capacity(self) -> float:
        """Upper bound on I(f(X'); f(X)+Z) in nats."""
        raise NotImplementedError

    @property
    def prior(self) -> Distribution:
        """The target distribution of the codes, as a ``torch.distributions`` object."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def normalise(self, h: Tensor) -> Tensor:
        """Codes without noise: (B, d) encoder outputs -> (B, d) codes under the prior's scale."""
        if h.ndim != 2 or h.shape[1] != self.dim:
            raise ValueError(f"channel expects (batch, {self.dim}) inputs, got {tuple(h.shape)}")
        if self.training and self.data_parallel:
            from .distributed import global_batch_norm, is_active

            if is_active():
                return self.squash(global_batch_norm(h, self.norm))
        return self.squash(self.norm(h))

    def forward(self, h: Tensor, noise: Tensor | None = None) -> Tensor:
        """(B, d) -> (B, d): normalised codes, plus channel noise in training mode only.

        ``noise`` replaces the random draw (reproducible tests, sharded batches).
        """
        c = self.normalise(h)
        if self.training:
            c = c + (self.noise(c) if noise is None else noise)
        return c

    @torch.no_grad()
    def calibrate(self, outputs: Iterable[Tensor]) -> None:
        """Set the normalisation to the exact mean and variance of ``outputs`` (pre-norm, (n, d)).

        Running averages lag behind a network that is still changing; recomputing them once over
        the training data makes the inference codes satisfy the constraint on that data.
        """
        total = 0
        s1 = torch.zeros(self.dim, dtype=torch.float64)
        s2 = torch.zeros(self.dim, dtype=torch.float64)
        for h in outputs:
            h = h.detach().to("cpu", torch.float64)
            total += h.shape[0]
            s1 += h.sum(0)
            s2 += (h * h).sum(0)
        if total < 2:
            raise ValueError("calibration needs at least 2 samples")
        mean = s1 / total
        var = (s2 / total - mean * mean).clamp_min(0.0)
        self.norm.running_mean.copy_(mean.to(self.norm.running_mean))
        self.norm.running_var.copy_(var.to(self.norm.running_var))
        self.norm.num_batches_tracked.fill_(total)


class GaussianChannel(NoiseChannel):
    """Gaussian matching: codes ~ N(0, I) at the optimum, channel noise N(0, sigma^2 I)."""

    def __init__(self, dim: int, sigma: float) -> None:
        super().__init__(dim)
        if not (math.isfinite(sigma) and sigma > 0):
            raise ConfigError(f"sigma must be a finite number > 0, got {sigma}")
        self.sigma = float(sigma)

    def squash(self, s: Tensor) -> Tensor:
        return s

    def noise(self, c: Tensor) -> Tensor:
        return self.sigma * torch.randn_like(c)

    def capacity(self) -> float:
        """(d / 2) log(1 + 1 / sigma^2) nats."""
        return 0.5 * self.dim * math.log1p(1.0 / self.sigma**2)

    @property
    def prior(self) -> Distribution:
        dev = self.norm.running_mean.device
        return Independent(
            Normal(torch.zeros(self.dim, device=dev), torch.ones(self.dim, device=dev)), 1
        )


class UniformChannel(NoiseChannel):
    """Uniform matching: codes Phi(standardised output) in [0,1]^d, noise U[-eps, eps]^d."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__(dim)
        if not (math.isfinite(eps) and 0 < eps <= 0.5):
            raise ConfigError(f"eps must lie in (0, 0.5], got {eps}")
        self.eps = float(eps)

    def squash(self, s: Tensor) -> Tensor:
        # The normal CDF: if the standardised output is N(0,1), the code is exactly U[0,1].
        return 0.5 * (1.0 + torch.erf(s / math.sqrt(2.0)))

    def noise(self, c: Tensor) -> Tensor:
        return (2.0 * torch.rand_like(c) - 1.0) * self.eps

    def capacity(self) -> float:
        """d log(1 + 1 / (2 eps)) nats."""
        return self.dim * math.log1p(1.0 / (2.0 * self.eps))

    @property
    def prior(self) -> Distribution:
        dev = self.norm.running_mean.device
        return Independent(
            Uniform(torch.zeros(self.dim, device=dev), torch.ones(self.dim, device=dev)), 1
        )


def make_channel(prior: str, dim: int, sigma: float = 0.2, eps: float = 0.1) -> NoiseChannel:
    """Build the channel for ``prior`` (``gaussian`` or ``uniform``)."""
    if prior == "gaussian":
        return GaussianChannel(dim, sigma)
    if prior == "uniform":
        return UniformChannel(dim, eps)
    raise ConfigError(f"unknown prior {prior!r} (expected gaussian or uniform)")
