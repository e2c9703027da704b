"""Noise-injected Deep InfoMax: maximise I(f(X'); f(X) + Z) through a critic and an MI bound."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .bounds import MIBound
from .channel import NoiseChannel

__all__ = ["NoisyInfoMax"]


class NoisyInfoMax(nn.Module):
    """Encoder + noise channel + critic + bound; ``forward`` gives the batch's MI lower bound.

    X is the clean batch; X' = augment(X). The channel normalises both views (batch statistics
    while training) and adds noise Z to the clean view only, as in the paper's Markov chain
    f(X) + Z <- X -> X' -> f(X').

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
    ) -> None:
        super().__init__()
        self.encoder, self.channel, self.critic, self.augment = encoder, channel, critic, augment
        self.bound = MIBound(bound)

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
        noisy = self.channel(h[:b], noise=noise)  # normalised + noise in training mode
        clean_aug = self.channel.normalise(h[b:])  # f(X'), no noise
        if not self.training:  # evaluation of the bound: the channel still carries noise
            noisy = noisy + (self.channel.noise(noisy) if noise is None else noise)
        if self._sharded():
            from ..training.distributed import all_gather_rows

            noisy = all_gather_rows(noisy)  # (W * B, d): negatives from every process
        return self.critic(clean_aug, noisy)

    def forward(
        self, x: Tensor, x_aug: Tensor | None = None, noise: Tensor | None = None
    ) -> Tensor:
        """(B, ...) batch -> scalar MI lower bound in nats (maximise; the loss is its negative)."""
        s = self.scores(x, x_aug, noise)
        if not self._sharded():
            return self.bound(s)
        from ..training.distributed import all_gather_rows, rank

        if self.bound.row_separable:  # InfoNCE, NWJ: the mean over shards is the global bound
            return self.bound(s, offset=rank() * s.shape[0])
        # DV is the log of a global mean: evaluate it on the whole (W*B, W*B) score matrix,
        # which is cheap next to the critic that produced it.
        return self.bound(all_gather_rows(s))
