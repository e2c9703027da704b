"""GAN losses on discriminator scores: hinge, non-saturating, and the R1 penalty.

References:
    Lim & Ye, "Geometric GAN", 2017 (hinge); Goodfellow et al., 2014 (non-saturating);
    Mescheder et al., "Which Training Methods for GANs do actually Converge?", ICML 2018 (R1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError

__all__ = ["d_loss", "g_loss", "r1_penalty"]


def d_loss(real: Tensor, fake: Tensor, kind: str = "hinge") -> Tensor:
    """Discriminator loss on scores (B,) of real and generated pairs.

    hinge: E[relu(1 - D(x, c))] + E[relu(1 + D(G(z, c), c))];
    nonsaturating: E[softplus(-D(x, c))] + E[softplus(D(G(z, c), c))].
    """
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if kind == "nonsaturating":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    raise ConfigError(f"unknown GAN loss {kind!r}")


def g_loss(fake: Tensor, kind: str = "hinge") -> Tensor:
    """Generator loss on scores (B,) of generated pairs: -E[D] (hinge) or E[softplus(-D)]."""
    if kind == "hinge":
        return -fake.mean()
    if kind == "nonsaturating":
        return F.softplus(-fake).mean()
    raise ConfigError(f"unknown GAN loss {kind!r}")


def r1_penalty(scores: Tensor, x: Tensor) -> Tensor:
    """E ||grad_x D(x, c)||^2 over the batch (``x`` must require grad; scores (B,))."""
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
