"""Noise-injected Deep InfoMax: maximise I(f(X'); f(X) + Z) through a critic and an MI bound."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import VIEW_NORMS
from ..errors import ConfigError
from .bounds import MIBound
from .channel import NoiseChannel
from .sigreg import SlicedEppsPulley

__all__ = ["NoisyInfoMax"]


class NoisyInfoMax(nn.Module):
    """Encoder + noise channel + critic + bound; ``forward`` gives the batch's MI lower bound.

    X is the clean batch; X' = augment(X). The channel normalises both views with one map (the
    clean view's batch statistics while training, ``view_norm``; see
    :meth:`~dimgen.channel.NoiseChannel.normalise_views`) and adds noise Z to the clean view
    only, as in the paper's Markov chain f(X) + Z <- X -> X' -> f(X'). With ``sigreg`` > 0 the
    training objective subtracts ``sigreg`` x the sliced Epps-Pulley statistic of the clean
    codes (:mod:`dimgen.infomax.sigreg`) from the bound.

    With ``data_parallel`` set inside a process group, each process holds a shard of the global
    batch: normalisation statistics are global, the noisy codes of every shard are gathered as
    the critic's columns (negatives from all processes), and the process scores its own rows, so
    the mean of the processes' bounds is the bound of the global batch.
    """

    def __init__(
        self,
        encoder: nn.Module,
        channel: NoiseChannel,
        critic: nn.Module,
        augment: nn.Module,
        bound: str = "infonce",
        view_norm: str = "shared",
        sigreg: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder, self.channel, self.critic, self.augment = encoder, channel, critic, augment
        self.bound = MIBound(bound)
        if view_norm not in VIEW_NORMS:
            raise ConfigError(
                f"view_norm must be one of {', '.join(VIEW_NORMS)}, got {view_norm!r}"
            )
        self.view_norm = view_norm
        self.sigreg_weight = float(sigreg)
        self.sigreg = SlicedEppsPulley(channel.dim) if sigreg > 0 else None
        self._clean: Tensor | None = None  # the last training batch's clean codes (for SIGReg)

    @property
    def data_parallel(self) -> bool:
        """Whether training statistics and negatives span all processes of the process group."""
        return self.channel.data_parallel

    @data_parallel.setter
    def data_parallel(self, value: bool) -> None:
        self.channel.data_parallel = bool(value)

    def _sharded(self) -> bool:
        if not (self.training and self.data_parallel):
            return False
        from ..training.distributed import is_active

        return is_active()

    def scores(self, x: Tensor, x_aug: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
        """(B, ...) batch -> (B, B) critic scores T(f(x'_i), f(x_j) + z_j).

        ``x_aug`` and ``noise`` (B, d) replace the random augmentation and channel noise. When
        sharded (see the class docstring) the result is this process's (B, W * B) rows.
        """
        if x_aug is None:
            x_aug = self.augment(x)
        b = x.shape[0]
        h = self.encoder(torch.cat([x, x_aug]))  # one encoder pass for both views: (2B, d)
        clean, clean_aug = self.channel.normalise_views(h[:b], h[b:], self.view_norm)  # f(X), f(X')
        self._clean = clean if self.training and self.sigreg is not None else None
        noisy = clean + (self.channel.noise(clean) if noise is None else noise)  # f(X) + Z
        if self._sharded():
            from ..training.distributed import all_gather_rows

            noisy = all_gather_rows(noisy)  # (W * B, d): negatives from every process
        return self.critic(clean_aug, noisy)

    def forward(
        self,
        x: Tensor,
        x_aug: Tensor | None = None,
        noise: Tensor | None = None,
        with_penalty: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """(B, ...) batch -> scalar MI lower bound in nats (maximise; the loss is its negative).

        ``with_penalty`` (training): returns ``(bound, penalty)``, the penalty being
        ``sigreg`` x the SIGReg statistic of the clean codes (0 when ``sigreg`` is 0); the
        training loss is ``penalty - bound``.
        """
        s = self.scores(x, x_aug, noise)
        if not self._sharded():
            value = self.bound(s)
        else:
            from ..training.distributed import all_gather_rows, rank

            if self.bound.row_separable:  # InfoNCE, NWJ: the mean over shards is the global bound
                value = self.bound(s, offset=rank() * s.shape[0])
            else:  # DV is the log of a global mean: evaluate it on the whole (W*B, W*B) matrix,
                value = self.bound(all_gather_rows(s))  # cheap next to the critic
        if not with_penalty:
            return value
        return value, self.penalty()

    def penalty(self) -> Tensor:
        """0-d SIGReg penalty (``sigreg`` x sliced Epps-Pulley) of the last training batch's clean
        codes; 0 when ``sigreg`` is 0. Under data-parallel training each process tests its shard."""
        if self.sigreg is None or self._clean is None:
            return torch.zeros((), device=self.channel.norm.running_mean.device)
        clean, self._clean = self._clean, None
        return self.sigreg_weight * self.sigreg(clean)
