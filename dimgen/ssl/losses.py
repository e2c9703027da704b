"""SimCLR's NT-Xent, VICReg's three terms and noise-injected Deep InfoMax, each with the noise
channel on the embedding.

The terms are public pure functions on (B, d) embeddings (lightly's layout); the losses are
``nn.Module`` s that hold the coefficients and, for ``sigma > 0``, a
:class:`~dimgen.infomax.channel.GaussianChannel` applied to both views' embeddings before the loss
(batch-norm without affine, then + N(0, sigma^2 I) while training). ``sigma = 0`` switches the
channel off: the loss is then exactly the method's plain loss. :class:`InfoMaxLoss` is dimgen's
own objective (:class:`dimgen.infomax.objectives.NoisyInfoMax`: critic, InfoNCE bound, channel) on the
two views' embeddings; there ``sigma = 0`` keeps the batch-norm and drops the noise.

References:
    Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations"
    (SimCLR), ICML 2020, eq. (1) (NT-Xent).
    Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
    Self-Supervised Learning", ICLR 2022, eqs. (1)-(6), weights lambda = mu = 25, nu = 1.
    Butakov et al., "Efficient Distribution Matching of Representations via Noise-Injected Deep
    InfoMax", ICLR 2025, eq. (4) (InfoNCE between f(X') and f(X) + Z).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, DataError
from ..infomax.channel import GaussianChannel, NoiseChannel
from ..infomax.critics import build_critic
from ..infomax.objectives import NoisyInfoMax

__all__ = [
    "InfoMaxLoss",
    "NTXentLoss",
    "VICRegLoss",
    "covariance_loss",
    "invariance_loss",
    "make_loss",
    "nt_xent",
    "variance_loss",
]


def _check_pair(z_a: Tensor, z_b: Tensor, what: str) -> None:
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise DataError(
            f"{what} expects two (batch, dim) embeddings of the same shape, "
            f"got {tuple(z_a.shape)} and {tuple(z_b.shape)}"
        )
    if z_a.shape[0] < 2:
        raise DataError(f"{what} needs a batch of at least 2, got {z_a.shape[0]}")


def nt_xent(z_a: Tensor, z_b: Tensor, temperature: float = 0.5, *, gather: bool = False) -> Tensor:
    """NT-Xent (normalised temperature-scaled cross entropy), SimCLR eq. (1), in nats.

    Args:
        z_a, z_b: (B, d) embeddings of the two views; row i of each is the positive pair.
        gather: inside a process group, take the negatives from every process's rows
            (:func:`dimgen.training.distributed.all_gather_rows`, with gradient) and score this
            process's 2B anchors against all 2WB candidates; the mean of the processes' losses
            is then the loss of the global batch, as in lightly's and solo-learn's
            ``gather``. Without a group it changes nothing.
    Returns:
        0-d tensor: mean over the 2B (local) anchors of
        ``-log exp(s(i, p(i)) / t) / sum_{k != i} exp(s(i, k) / t)``, s the cosine similarity.
    """
    from ..training.distributed import all_gather_rows, is_active, rank

    b = z_a.shape[0]
    q_a, q_b = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    q = torch.cat([q_a, q_b])  # (2B, d): this process's anchors
    if gather and is_active():
        k_a, k_b = all_gather_rows(q_a), all_gather_rows(q_b)  # (WB, d) each, rank order
        offset, n = rank() * b, k_a.shape[0]
    else:
        k_a, k_b, offset, n = q_a, q_b, 0, b
    logits = q @ torch.cat([k_a, k_b]).T / temperature  # (2B, 2n): candidates a then b
    own = torch.arange(offset, offset + b, device=q.device)
    self_idx = torch.cat([own, own + n])  # each anchor's own column
    rows = torch.arange(2 * b, device=q.device)
    logits = logits.index_put((rows, self_idx), torch.tensor(-math.inf, dtype=logits.dtype,
                                                              device=q.device))  # fmt: skip
    targets = torch.cat([own + n, own])  # a_i's positive is b_i and vice versa
    return F.cross_entropy(logits, targets)


def invariance_loss(z_a: Tensor, z_b: Tensor) -> Tensor:
    """VICReg invariance s(Z, Z'): mean squared distance (B, d), (B, d) -> 0-d (eq. 5)."""
    return F.mse_loss(z_a, z_b)


def variance_loss(z: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """VICReg variance v(Z): mean_j max(0, gamma - sqrt(Var(z_j) + eps)), unbiased Var (eq. 1)."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_loss(z: Tensor) -> Tensor:
    """VICReg covariance c(Z): sum of squared off-diagonal covariances / d (eqs. 3-4)."""
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = zc.T @ zc / (n - 1)  # (d, d)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / d


def _channel(dim: int, sigma: float) -> GaussianChannel | None:
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ConfigError(f"sigma must be a finite number >= 0, got {sigma}")
    return GaussianChannel(dim, sigma) if sigma > 0 else None


class _ChannelLoss(nn.Module):
    """Shared: the optional channel on both views' (B, d) embeddings, and data parallelism.

    With ``data_parallel`` set (by the trainer) inside a process group, each process holds a
    shard of the global batch: the channel normalises with global statistics and the loss takes
    its batch-level terms (negatives, variance, covariance) over the gathered global batch, so
    the mean of the processes' losses is the loss of the global batch.
    """

    def __init__(self, dim: int, sigma: float) -> None:
        super().__init__()
        self.dim, self.sigma = dim, float(sigma)
        self.channel = _channel(dim, sigma)
        self._data_parallel = False

    @property
    def data_parallel(self) -> bool:
        """Whether statistics and negatives span every process of the process group."""
        return self._data_parallel

    @data_parallel.setter
    def data_parallel(self, value: bool) -> None:
        self._data_parallel = bool(value)
        if self.channel is not None:
            self.channel.data_parallel = bool(value)

    def _sharded(self) -> bool:
        from ..training.distributed import is_active

        return self.training and self._data_parallel and is_active()

    def codes(self, z: Tensor, noise: Tensor | None = None) -> Tensor:
        """(B, d) embedding -> (B, d) channel output (identity when sigma = 0)."""
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise DataError(
                f"{type(self).__name__} expects (batch, {self.dim}), got {tuple(z.shape)}"
            )
        return z if self.channel is None else self.channel(z, noise)

    def views(
        self, z_a: Tensor, z_b: Tensor, noise: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        _check_pair(z_a, z_b, type(self).__name__)
        if self.channel is None:
            return self.codes(z_a), self.codes(z_b)
        for z in (z_a, z_b):
            if z.ndim != 2 or z.shape[1] != self.dim:
                raise DataError(
                    f"{type(self).__name__} expects (batch, {self.dim}), got {tuple(z.shape)}"
                )
        n_a, n_b = noise if noise is not None else (None, None)
        # One map for both views (view a's batch statistics), as the certificate maps them.
        c_a, c_b = self.channel.normalise_views(z_a, z_b, "shared")
        if not self.channel.training:
            return c_a, c_b
        n_a = self.channel.noise(c_a) if n_a is None else n_a
        n_b = self.channel.noise(c_b) if n_b is None else n_b
        return c_a + n_a, c_b + n_b


class NTXentLoss(_ChannelLoss):
    """SimCLR's loss on the channel's outputs: ``forward(z_a, z_b) -> 0-d`` (nats).

    Args:
        dim: embedding dimension d (the projector's output, 256 in the paper).
        sigma: channel noise std (0: no channel, the plain NT-Xent).
        temperature: > 0 (0.5 in SimCLR's CIFAR set-up; 0.2 in solo-learn's).
    Raises:
        ConfigError: sigma < 0 or temperature <= 0; DataError: embeddings of the wrong shape.
    """

    def __init__(self, dim: int, sigma: float = 0.0, temperature: float = 0.5) -> None:
        super().__init__(dim, sigma)
        if not (math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(
        self, z_a: Tensor, z_b: Tensor, noise: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """(B, d), (B, d) -> 0-d NT-Xent; ``noise`` replaces the channel's draws (tests)."""
        c_a, c_b = self.views(z_a, z_b, noise)
        return nt_xent(c_a, c_b, self.temperature, gather=self._sharded())


class VICRegLoss(_ChannelLoss):
    """VICReg on the channel's outputs: lambda s + mu [v(Z) + v(Z')] / 2 + nu [c(Z) + c(Z')].

    The halved variance and summed covariance terms follow the authors' reference code
    (facebookresearch/vicreg, ``main_vicreg.py``), as lightly's ``VICRegLoss`` does.

    Args:
        dim: embedding dimension d (2048 in the paper).
        sigma: channel noise std (0: no channel, the plain VICReg loss).
        sim_weight, var_weight, cov_weight: lambda, mu, nu (25, 25, 1 as in the paper).
    Raises:
        ConfigError: a negative weight or sigma; DataError: embeddings of the wrong shape.
    """

    def __init__(
        self,
        dim: int,
        sigma: float = 0.0,
        sim_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
    ) -> None:
        super().__init__(dim, sigma)
        for name, w in (("sim_weight", sim_weight), ("var_weight", var_weight),
                        ("cov_weight", cov_weight)):  # fmt: skip
            if not (math.isfinite(w) and w >= 0):
                raise ConfigError(f"{name} must be >= 0, got {w}")
        self.weights = (float(sim_weight), float(var_weight), float(cov_weight))

    def forward(
        self, z_a: Tensor, z_b: Tensor, noise: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """(B, d), (B, d) -> 0-d VICReg loss; ``noise`` replaces the channel's draws (tests)."""
        c_a, c_b = self.views(z_a, z_b, noise)
        lam, mu, nu = self.weights
        invariance = invariance_loss(c_a, c_b)  # a mean over rows: the shards' mean is global
        if self._sharded():  # variance and covariance of the global batch (every process's rows)
            from ..training.distributed import all_gather_rows

            c_a, c_b = all_gather_rows(c_a), all_gather_rows(c_b)
        return (
            lam * invariance
            + mu * 0.5 * (variance_loss(c_a) + variance_loss(c_b))
            + nu * (covariance_loss(c_a) + covariance_loss(c_b))
        )


class _NoiselessChannel(NoiseChannel):
    """The Gaussian channel's batch-norm without noise: DIM's ``sigma = 0`` (infinite capacity)."""

    sigma = 0.0

    def squash(self, s: Tensor) -> Tensor:
        return s

    def noise(self, c: Tensor) -> Tensor:
        return torch.zeros_like(c)

    def capacity(self) -> float:
        return math.inf


class InfoMaxLoss(nn.Module):
    """Noise-injected Deep InfoMax on two views: ``forward(z_a, z_b) -> 0-d``, minus InfoNCE (nats).

    The existing objective :class:`~dimgen.infomax.objectives.NoisyInfoMax` with the SSL network in
    front of it (its own encoder and augmentation are identities: the trainer embeds both
    augmented views in one pass): the channel batch-normalises both (B, d) embeddings, adds
    N(0, sigma^2 I) to view a's codes only (the paper's f(X) + Z), and the critic scores
    T(c_b_i, c_a_j + z_j) on all B x B pairs; the loss is ``-infonce_bound(scores)``, which is
    >= -log B, and ``log B`` minus it is InfoNCE's cross-entropy (van den Oord et al. 2018).

    Args:
        dim: embedding dimension d.
        sigma: channel noise std (0: batch-norm without noise, the plain deterministic InfoNCE).
        critic: ``mlp`` (the paper's 3-layer MLP on concatenated pairs) or ``separable``.
        hidden: critic hidden width.
        bound: ``infonce`` (default), ``dv`` or ``nwj`` (:mod:`dimgen.infomax.bounds`).
    Raises:
        ConfigError: sigma < 0, an unknown critic or bound; DataError: embeddings of the wrong
        shape.
    """

    def __init__(
        self,
        dim: int,
        sigma: float = 0.0,
        critic: str = "mlp",
        hidden: int = 256,
        bound: str = "infonce",
    ) -> None:
        super().__init__()
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ConfigError(f"sigma must be a finite number >= 0, got {sigma}")
        if bound not in ("infonce", "dv", "nwj"):
            raise ConfigError(f"unknown bound {bound!r} (expected infonce, dv or nwj)")
        self.dim, self.sigma = dim, float(sigma)
        channel = GaussianChannel(dim, sigma) if sigma > 0 else _NoiselessChannel(dim)
        self.objective = NoisyInfoMax(
            nn.Identity(), channel, build_critic(critic, dim, hidden), nn.Identity(), bound
        )

    @property
    def channel(self) -> NoiseChannel:
        """The channel (batch-norm + noise); its statistics normalise the inference codes."""
        return self.objective.channel

    @property
    def data_parallel(self) -> bool:
        """Whether the channel's statistics and the critic's negatives span every process
        (:class:`~dimgen.infomax.objectives.NoisyInfoMax`'s sharded bound)."""
        return self.objective.data_parallel

    @data_parallel.setter
    def data_parallel(self, value: bool) -> None:
        self.objective.data_parallel = bool(value)

    def forward(
        self, z_a: Tensor, z_b: Tensor, noise: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """(B, d), (B, d) -> 0-d loss; ``noise`` (n_a, n_b) replaces the draws (n_b is unused:
        only view a passes through the noise)."""
        _check_pair(z_a, z_b, type(self).__name__)
        if z_a.shape[1] != self.dim:
            raise DataError(
                f"{type(self).__name__} expects (batch, {self.dim}), got {tuple(z_a.shape)}"
            )
        return -self.objective(z_a, z_b, None if noise is None else noise[0])


def make_loss(
    method: str,
    dim: int,
    sigma: float,
    temperature: float = 0.5,
    critic: str = "mlp",
    critic_hidden: int = 256,
) -> nn.Module:
    """``simclr`` -> :class:`NTXentLoss`, ``vicreg`` -> :class:`VICRegLoss` (paper weights),
    ``dim`` -> :class:`InfoMaxLoss` (InfoNCE with ``critic`` of width ``critic_hidden``)."""
    if method == "simclr":
        return NTXentLoss(dim, sigma, temperature)
    if method == "vicreg":
        return VICRegLoss(dim, sigma)
    if method == "dim":
        return InfoMaxLoss(dim, sigma, critic, critic_hidden)
    raise ConfigError(f"unknown method {method!r} (expected simclr, vicreg or dim)")
