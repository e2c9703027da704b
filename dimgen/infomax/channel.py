"""The noise channel: normalise the encoder's output to the prior's scale, then add noise.

Gaussian(sigma): batch-norm without affine (E[f_i^2] = 1), + N(0, sigma^2 I) while training.
Uniform(eps):    u = squash(batch-norm(h)) in [0, 1]^d, + U[-eps, eps]^d while training, with
                 one of the squashes in :data:`SQUASHES`:

                 - ``phi``: u = Phi(s), the normal CDF of the standardised output. Uniform codes
                   exactly when s ~ N(0, 1), but E[Phi^-1(u)] = 0 and E[Phi^-1(u)^2] = 1 are
                   forced and no mass reaches 0 or 1, so the capacity-achieving grid
                   {0, 2 eps, ..., 1} (Butakov et al., uniform matching) is out of reach.
                 - ``sigmoid``: u = sigmoid(a * s + b) with a learned gain and offset per axis
                   (initialised so that u ~ Phi(s)); a growing gain saturates codes at 0 and 1,
                   so every grid point can be reached. The theorem needs only u in [0, 1]^d.
                 - ``clamp``: u = clamp(a * s + b, 0, 1), learned a, b per axis (initialised to
                   1/sqrt(12) and 1/2: mean and variance of U[0, 1]); reaches 0 and 1 exactly,
                   with zero gradient beyond them.
                 - ``steps``: a soft staircase onto the grid, z = a * s + b (learned a, b per
                   axis, z spanning [0, K - 1]), u = 2 eps * sum_k sigmoid(T (z - k + 1/2)),
                   k = 1..K-1. T = 1 is a smooth ramp; as the training loop anneals T upwards
                   the codes are pushed onto the K grid points (a differentiable version of
                   FSQ's rounding). The temperature is a buffer the trained channel keeps.
With ``whiten`` the standardisation is batch whitening instead (codes with covariance I, not only
unit variances; E[f_i^2] = 1 still holds, so the capacity bound is unchanged).
At inference the channel returns the normalised codes without noise, using statistics that
:meth:`NoiseChannel.calibrate` recomputes exactly over the training data after training.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, Uniform

from ..config import LEGACY_SQUASH, SQUASHES  # torch-free, so configs validate fast
from ..errors import ConfigError, TrainingError

__all__ = [
    "SQUASHES",
    "GaussianChannel",
    "NoiseChannel",
    "UniformChannel",
    "axis_channel_mi",
    "grid_fraction",
    "grid_points",
    "make_channel",
    "token_ids",
    "token_usage",
]

# sigmoid(1.702 s) matches Phi(s) within 0.0095 (Haley 1952, the logistic approximation).
_LOGISTIC_GAIN = 1.702


def _no_autocast(x: Tensor) -> torch.autocast:
    """Whitening in ``x``'s precision even under ``amp``: bf16 autocast would run the covariance
    and the whitening matmuls in bf16 (a code variance of 0.73 instead of 1 on correlated
    outputs); standardisation needs no guard (element-wise moments are not autocast)."""
    return torch.autocast(x.device.type, enabled=False)


class NoiseChannel(nn.Module):
    """Shared machinery: feature-wise standardisation (with ``whiten``: batch whitening, codes
    with covariance I) and exact post-training statistics.

    Args:
        dim: code dimension d.
        whiten: whiten instead of standardising (adds the ``running_cov`` (d, d) buffer).
    """

    def __init__(self, dim: int, whiten: bool = False) -> None:
        super().__init__()
        if dim < 1:
            raise ConfigError(f"code dimension must be >= 1, got {dim}")
        self.dim = dim
        # affine=False: the normalisation must not be undone by learned scale/shift.
        self.norm = nn.BatchNorm1d(dim, affine=False, momentum=0.1)
        # Data-parallel training: batch statistics over all processes' shards (see
        # `dimgen.training.distributed.global_batch_norm`); set by the training loop.
        self.data_parallel = False
        self.whiten = bool(whiten)
        if self.whiten:  # only then: standardising channels keep their state dict (old runs load)
            self.register_buffer("running_cov", torch.eye(dim))

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
        if self.whiten:
            x = h.float() if h.dtype in (torch.float16, torch.bfloat16) else h
            with _no_autocast(x):
                mean, w = self._batch_whitening(x) if self.training else self.running_whitening()
                return self.squash((x - mean.to(x)) @ w.to(x).T)
        if self.training and self.data_parallel:
            from ..training.distributed import global_batch_norm, is_active

            if is_active():
                return self.squash(global_batch_norm(h, self.norm))
        return self.squash(self.norm(h))

    def normalise_views(
        self, h: Tensor, h_aug: Tensor, mode: str = "shared"
    ) -> tuple[Tensor, Tensor]:
        """(B, d) outputs of X and X' -> their (B, d) codes without noise, through ONE map.

        The certificate (held-out MI bound, KL bound) maps both views with the fixed,
        calibrated statistics; training should climb that same quantity. Modes (training only;
        at evaluation both views use the running statistics):

        - ``shared``: both views standardised with the clean view's batch mean and variance
          (global under data-parallel training); the noisy view keeps E f_i^2 = 1 on every
          batch, so the capacity bound holds batch by batch (Butakov et al., Gaussian matching).
        - ``renorm``: both views mapped with the running statistics taken before this batch's
          update, gradients through the clean view's batch statistics (batch renormalisation,
          Ioffe 2017, with r and d unclipped).
        - ``per-view``: each view standardised with its own batch statistics (dimgen <= 0.2).
          It hides a narrower, shifted augmented cloud from the critic, so the training bound
          rises while the certified one falls (measured on MNIST in the docs).

        The running statistics are updated once, from the clean view (``per-view``: twice).

        Raises:
            ValueError: inputs not (B, d) with this channel's d; an unknown ``mode``.
        """
        for t in (h, h_aug):
            if t.ndim != 2 or t.shape[1] != self.dim:
                raise ValueError(
                    f"channel expects (batch, {self.dim}) inputs, got {tuple(t.shape)}"
                )
        if not self.training or mode == "per-view":
            return self.normalise(h), self.normalise(h_aug)
        if mode not in ("shared", "renorm"):
            raise ValueError(f"unknown view normalisation {mode!r} (shared, renorm or per-view)")
        from ..training.distributed import global_moments, is_active, track_running_stats

        x = h.float() if h.dtype in (torch.float16, torch.bfloat16) else h
        if self.whiten:
            if mode == "renorm":
                raise ValueError("view_norm renorm is not defined for a whitening channel")
            with _no_autocast(x):
                mean, w = self._batch_whitening(x)
                return self.squash((x - mean) @ w.T), self.squash((h_aug.to(x) - mean) @ w.T)
        if self.data_parallel and is_active():
            mean, var, n = global_moments(x)
        else:
            mean, var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        inv = torch.rsqrt(var + self.norm.eps)
        if mode == "renorm":  # value of the running map, gradient of the batch map
            run_sd = torch.sqrt(self.norm.running_var + self.norm.eps).to(x)
            r = (1.0 / (inv * run_sd)).detach()
            shift = ((mean - self.norm.running_mean.to(x)) / run_sd).detach()
            track_running_stats(self.norm, mean, var, n)
            return tuple(self.squash((v - mean) * inv * r + shift) for v in (x, h_aug))  # type: ignore[return-value]
        track_running_stats(self.norm, mean, var, n)
        return self.squash((x - mean) * inv), self.squash((h_aug - mean) * inv)

    # -- batch whitening (``whiten``) -------------------------------------------------------------
    def _whitener(self, cov: Tensor) -> Tensor:
        """(d, d) covariance -> (d, d) lower-triangular W = L^-1 with L L^T = cov + eps I, so that
        W cov W^T = I (Cholesky whitening: Ermolov et al. 2021, W-MSE; Huang et al. 2018,
        decorrelated batch normalisation). Differentiable in ``cov``.

        Raises:
            TrainingError: ``cov + eps I`` has no Cholesky factor at ``cov``'s precision (outputs
                that diverged to a huge scale or to NaN make the batch covariance indefinite
                in float32).
        """
        eye = torch.eye(self.dim, device=cov.device, dtype=cov.dtype)
        chol, info = torch.linalg.cholesky_ex(cov + self.norm.eps * eye)
        if int(info) != 0:  # one sync, as torch.linalg.cholesky's own check
            diag = cov.detach().diagonal()
            what = (f"largest variance {float(diag.max()):.3g}" if bool(torch.isfinite(diag).all())
                    else "non-finite outputs")  # fmt: skip
            raise TrainingError(
                f"whitening failed: the covariance of the encoder's outputs is not "
                f"positive-definite in {str(cov.dtype).removeprefix('torch.')} ({what}; the "
                "training diverged): lower lr, or set whiten false"
            )
        return torch.linalg.solve_triangular(chol, eye, upper=False)

    def _batch_whitening(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, d) outputs -> the batch's mean (d,) and whitening matrix (d, d), global under
        data-parallel training; updates the running mean, variance and covariance once."""
        from ..training.distributed import global_covariance, is_active, track_running_stats

        if self.data_parallel and is_active():
            mean, cov, n = global_covariance(x)
        else:
            centred = x - x.mean(0)
            mean, cov, n = x.mean(0), centred.T @ centred / x.shape[0], x.shape[0]
        track_running_stats(self.norm, mean, torch.diagonal(cov), n)
        with torch.no_grad():
            m, count = self.norm.momentum, float(n)
            unbiased = cov.detach() * (count / max(count - 1.0, 1.0))
            self.running_cov.mul_(1 - m).add_(unbiased.to(self.running_cov), alpha=m)
        try:
            return mean, self._whitener(cov)
        except TrainingError as exc:  # the global covariance is the same in every process
            from ..training.distributed import everywhere

            raise (everywhere(exc) if self.data_parallel and is_active() else exc) from None

    def running_whitening(self) -> tuple[Tensor, Tensor]:
        """The fixed map used outside training: running mean (d,) and whitening matrix (d, d)."""
        if not self.whiten:
            raise ValueError("this channel standardises each coordinate; it has no whitening")
        return self.norm.running_mean, self._whitener(self.running_cov)

    @torch.no_grad()
    def check_statistics(self) -> None:
        """Check the inference statistics of a channel loaded from a file: running variances
        >= 0 and, when whitening, a symmetric running covariance whose ``cov + eps I`` has a
        Cholesky factor (what :meth:`running_whitening` needs).

        Raises:
            ValueError: naming the buffer and what is wrong with it.
        """
        if bool((self.norm.running_var < 0).any()):
            raise ValueError("channel.norm.running_var holds a negative variance")
        if not self.whiten:
            return
        cov = self.running_cov
        scale = float(cov.diagonal().abs().max())
        if float((cov - cov.T).abs().max()) > 1e-4 * scale:  # EMA and calibration keep it so
            raise ValueError("channel.running_cov is not symmetric")
        eye = torch.eye(self.dim, dtype=cov.dtype, device=cov.device)
        if int(torch.linalg.cholesky_ex(cov + self.norm.eps * eye).info) != 0:
            raise ValueError("channel.running_cov is not positive-definite")

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
        outer = torch.zeros(self.dim, self.dim, dtype=torch.float64) if self.whiten else None
        for h in outputs:
            h = h.detach().to("cpu", torch.float64)
            total += h.shape[0]
            s1 += h.sum(0)
            s2 += (h * h).sum(0)
            if outer is not None:
                outer += h.T @ h
        if total < 2:
            raise ValueError("calibration needs at least 2 samples")
        mean = s1 / total
        var = (s2 / total - mean * mean).clamp_min(0.0)
        self.norm.running_mean.copy_(mean.to(self.norm.running_mean))
        self.norm.running_var.copy_(var.to(self.norm.running_var))
        self.norm.num_batches_tracked.fill_(total)
        if outer is not None:  # the exact covariance: training codes get covariance I exactly
            cov = outer / total - torch.outer(mean, mean)
            self.running_cov.copy_(((cov + cov.T) / 2).to(self.running_cov))


class GaussianChannel(NoiseChannel):
    """Gaussian matching: codes ~ N(0, I) at the optimum, channel noise N(0, sigma^2 I)."""

    def __init__(self, dim: int, sigma: float, whiten: bool = False) -> None:
        super().__init__(dim, whiten)
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
    """Uniform matching: codes squash(standardised output) in [0,1]^d, noise U[-eps, eps]^d.

    Args:
        dim: code dimension d.
        eps: noise half-width, in (0, 0.5].
        squash: ``phi`` (normal CDF, moment-constrained), ``sigmoid``, ``clamp`` or ``steps``
            (learned gain and offset per axis; these can reach the grid {0, 2 eps, ..., 1} where
            the capacity is attained; ``steps`` is a soft staircase onto it).
        temperature: starting staircase temperature T of ``steps`` (a buffer, saved with the
            weights; :meth:`set_temperature` changes it); unused by the other squashes.

    Raises:
        ConfigError: ``dim < 1``, ``eps`` outside (0, 0.5], an unknown ``squash`` or a
            temperature that is not a finite number > 0.
    """

    def __init__(
        self,
        dim: int,
        eps: float,
        squash: str = LEGACY_SQUASH,
        temperature: float = 1.0,
        whiten: bool = False,
    ) -> None:
        super().__init__(dim, whiten)
        if not (math.isfinite(eps) and 0 < eps <= 0.5):
            raise ConfigError(f"eps must lie in (0, 0.5], got {eps}")
        if squash not in SQUASHES:
            raise ConfigError(f"squash must be one of {', '.join(SQUASHES)}, got {squash!r}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"squash temperature must be a finite number > 0, got {temperature}")
        self.eps = float(eps)
        self.squash_name = squash
        if squash != "phi":
            # (d,) learned gain and offset; phi has none, so old runs' state dicts load strictly.
            k = len(grid_points(eps))
            gain, offset = {
                "sigmoid": (_LOGISTIC_GAIN, 0.0),
                "clamp": (12**-0.5, 0.5),
                "steps": ((k - 1) * 12**-0.5, (k - 1) / 2),  # z with the moments of U[0, K-1]
            }[squash]
            self.gain = nn.Parameter(torch.full((dim,), gain))
            self.offset = nn.Parameter(torch.full((dim,), offset))
        if squash == "steps":
            grid = torch.as_tensor(grid_points(eps), dtype=torch.float32)
            self.grid_step = float(grid[1] - grid[0])
            # (K-1,) staircase thresholds 1/2, 3/2, ..., K - 3/2 on the z scale
            self.register_buffer("thresholds", torch.arange(1, len(grid)) - 0.5, persistent=False)
            self.register_buffer("temperature", torch.tensor(float(temperature)))

    def set_temperature(self, value: float) -> None:
        """Set the ``steps`` staircase temperature T (the training loop anneals it).

        Raises:
            ConfigError: this channel has no staircase, or ``value`` is not finite and > 0.
        """
        if self.squash_name != "steps":
            raise ConfigError(f"the {self.squash_name} squash has no temperature (only steps)")
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"squash temperature must be a finite number > 0, got {value}")
        self.temperature.fill_(float(value))

    def squash(self, s: Tensor) -> Tensor:
        """(B, d) standardised outputs -> (B, d) codes in [0, 1]."""
        if self.squash_name == "sigmoid":
            return torch.sigmoid(s * self.gain + self.offset)
        if self.squash_name == "clamp":
            return (s * self.gain + self.offset).clamp(0.0, 1.0)
        if self.squash_name == "steps":
            z = (s * self.gain + self.offset).unsqueeze(-1)  # (B, d, 1)
            t = self.temperature.to(z.dtype)
            return self.grid_step * torch.sigmoid(t * (z - self.thresholds.to(z.dtype))).sum(-1)
        # The normal CDF: if the standardised output is N(0,1), the code is exactly U[0,1].
        return 0.5 * (1.0 + torch.erf(s / math.sqrt(2.0)))

    def noise(self, c: Tensor) -> Tensor:
        return (2.0 * torch.rand_like(c) - 1.0) * self.eps

    def capacity(self) -> float:
        """d log(1 + 1 / (2 eps)) nats (Butakov et al., uniform matching; attained on the grid
        {0, 2 eps, ..., 1} per axis when 1 / eps is a natural number)."""
        return self.dim * math.log1p(1.0 / (2.0 * self.eps))

    @property
    def prior(self) -> Distribution:
        dev = self.norm.running_mean.device
        return Independent(
            Uniform(torch.zeros(self.dim, device=dev), torch.ones(self.dim, device=dev)), 1
        )


def make_channel(
    prior: str,
    dim: int,
    sigma: float = 0.2,
    eps: float = 0.1,
    squash: str = LEGACY_SQUASH,
    temperature: float = 1.0,
    whiten: bool = False,
) -> NoiseChannel:
    """Build the channel for ``prior`` (``gaussian`` or ``uniform``; ``squash`` and its
    starting ``temperature`` (``steps`` only) are for uniform). ``whiten``: batch whitening
    (codes with covariance I) instead of per-coordinate standardisation.

    Raises:
        ConfigError: an unknown prior or squash, or an impossible noise level.
    """
    if prior == "gaussian":
        return GaussianChannel(dim, sigma, whiten)
    if prior == "uniform":
        return UniformChannel(dim, eps, squash, temperature, whiten)
    raise ConfigError(f"unknown prior {prior!r} (expected gaussian or uniform)")


# -- the capacity-achieving grid (uniform prior) ----------------------------------------------


def grid_points(eps: float) -> np.ndarray:
    """(K,) grid {0, 2 eps, ..., 1} where the uniform channel's capacity is attained.

    K = 1/(2 eps) + 1 when 1/(2 eps) is an integer (up to 1e-6), else floor(1/(2 eps)) + 1 with
    the last point below 1 (as :attr:`dimgen.infomax.tokenizer.Tokenizer.grid_size`). Source: Butakov
    et al., uniform matching (equality iff f(X) is uniform on this grid and 1/eps is natural).

    Raises:
        ConfigError: ``eps`` outside (0, 0.5].
    """
    if not (math.isfinite(eps) and 0 < eps <= 0.5):
        raise ConfigError(f"eps must lie in (0, 0.5], got {eps}")
    ratio = 1.0 / (2.0 * eps)
    whole = abs(ratio - round(ratio)) < 1e-6
    k = (round(ratio) if whole else math.floor(ratio)) + 1
    return np.linspace(0.0, 1.0, k) if whole else np.arange(k) * 2.0 * eps


def _codes_2d(codes: np.ndarray | Tensor) -> np.ndarray:
    c = np.asarray(codes.detach().cpu() if isinstance(codes, Tensor) else codes, dtype=float)
    if c.ndim != 2 or len(c) == 0:
        raise ValueError(f"codes must have shape (n, d) with n >= 1, got {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("codes contain NaN or Inf")
    return c


def grid_fraction(codes: np.ndarray | Tensor, eps: float) -> np.ndarray:
    """(n, d) codes -> (d,) fraction of codes within eps/2 of the grid :func:`grid_points`, per
    axis. Codes spread uniformly on [0, 1] score about 1/2; codes on the grid score 1.

    Raises:
        ValueError: codes not (n, d) or not finite. ConfigError: ``eps`` outside (0, 0.5].
    """
    c = _codes_2d(codes)
    g = grid_points(eps)
    dist = np.abs(c[:, :, None] - g[None, None, :]).min(-1)  # (n, d)
    return (dist <= eps / 2 + 1e-9).mean(0)


def axis_channel_mi(codes: np.ndarray | Tensor, eps: float) -> np.ndarray:
    """(n, d) codes -> (d,) exact I(C_i; C_i + Z_i) in nats, Z_i ~ U[-eps, eps], per axis, for
    C_i distributed as the codes' empirical distribution (no critic, no estimation bias).

    I = h(C + Z) - log(2 eps), with the density of C + Z piecewise constant between the points
    c_j +- eps. At most log(1 + 1/(2 eps)) per axis, attained by codes uniform on the grid.

    Raises:
        ValueError: codes not (n, d) or not finite. ConfigError: ``eps`` outside (0, 0.5].
    """
    c = _codes_2d(codes)
    grid_points(eps)  # validates eps
    n = len(c)
    out = np.empty(c.shape[1])
    for i in range(c.shape[1]):
        x = np.concatenate([c[:, i] - eps, c[:, i] + eps])
        step = np.concatenate([np.ones(n), -np.ones(n)])
        order = np.argsort(x, kind="stable")
        x, step = x[order], step[order]
        count = np.cumsum(step)[:-1]  # codes covering each interval [x_j, x_{j+1})
        length = np.diff(x)
        p = count / (n * 2.0 * eps)  # density of C + Z there
        keep = (count > 0) & (length > 0)
        h = -np.sum(length[keep] * p[keep] * np.log(p[keep]))
        out[i] = h - math.log(2.0 * eps)
    return out


def token_ids(codes: np.ndarray | Tensor, eps: float) -> np.ndarray:
    """(n, d) codes -> (n, d) int64 token ids in [0, K): the nearest point of
    :func:`grid_points` per axis, codes beyond the grid clipped to its ends.

    Raises:
        ValueError: codes not (n, d) or not finite. ConfigError: ``eps`` outside (0, 0.5].
    """
    c = _codes_2d(codes)
    k = len(grid_points(eps))
    return np.clip(np.rint(c / (2.0 * eps)), 0, k - 1).astype(np.int64)


def token_usage(ids: np.ndarray | Tensor, k: int) -> dict[str, object]:
    """How evenly (n, d) token ids in [0, k) use the vocabulary, per axis.

    Returns ``histogram`` ((d, k) counts, a list of lists), ``entropy_nats`` (d,),
    ``entropy_ratio`` (d,: entropy / log k; 1 for uniform use), ``perplexity`` (d,: exp of the
    entropy, the effective number of tokens in use per axis; k for uniform use),
    ``perplexity_mean`` (mean over axes) and ``used`` (d,: tokens seen at least once).
    Entropy is the plug-in estimate from the counts (nats).

    Raises:
        ValueError: ``ids`` not (n, d) integers in [0, k) with n >= 1, or ``k`` < 2.
    """
    a = np.asarray(ids.detach().cpu() if isinstance(ids, Tensor) else ids)
    if (type(k) is not int and not isinstance(k, np.integer)) or k < 2:
        raise ValueError(f"the vocabulary needs k >= 2 tokens per axis, got {k!r}")
    if a.ndim != 2 or len(a) == 0 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"token ids must be (n, d) integers with n >= 1, got {a.dtype} {a.shape}")
    if a.min() < 0 or a.max() >= k:
        raise ValueError(f"token ids must lie in [0, {k - 1}], got [{a.min()}, {a.max()}]")
    hist = np.stack([np.bincount(a[:, i], minlength=k) for i in range(a.shape[1])])  # (d, k)
    p = hist / len(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log(p), 0.0).sum(1)
    ppl = np.exp(ent)
    return {
        "histogram": hist.tolist(),
        "entropy_nats": ent.tolist(),
        "entropy_ratio": (ent / math.log(k)).tolist(),
        "perplexity": ppl.tolist(),
        "perplexity_mean": float(ppl.mean()),
        "used": (hist > 0).sum(1).tolist(),
    }
