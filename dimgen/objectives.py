"""Noise-injected Deep InfoMax: maximise I(f(X'); f(X) + Z) through a critic and an MI bound."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .channel import NoiseChannel
from .mi import MIBound

__all__ = ["NoisyInfoMax"]


class NoisyInfoMax(nn.Module):
    """Encoder + noise channel + critic + bound; ``forward`` gives the batch's MI lower bound.

    X is the clean batch; X' = augment(X). The channel normalises both views (batch statistics
    while training) and adds noise Z to the clean view only, as in the paper's Markov chain
    f(X) + Z <- X -> X' -> f(X').
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

    def scores(self, x: Tensor) -> Tensor:
        """(B, ...) batch -> (B, B) critic scores T(f(x'_i), f(x_j) + z_j)."""
        x_aug = self.augment(x)
        b = x.shape[0]
        h = self.encoder(torch.cat([x, x_aug]))  # one encoder pass for both views: (2B, d)
        noisy = self.channel(h[:b])  # normalised + noise in training mode
        clean_aug = self.channel.normalise(h[b:])  # f(X'), no noise
        if not self.training:  # evaluation of the bound: the channel still carries noise
            noisy = noisy + self.channel.noise(noisy)
        return self.critic(clean_aug, noisy)

    def forward(self, x: Tensor) -> Tensor:
        """(B, ...) batch -> scalar MI lower bound in nats (maximise; the loss is its negative)."""
        return self.bound(self.scores(x))
