"""Batched augmentations as modules, run on the training device."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["GaussianPixelNoise"]


class GaussianPixelNoise(nn.Module):
    """X' = X + std * N(0, I): the paper's MNIST augmentation (data scaled to [0, 1])."""

    def __init__(self, std: float) -> None:
        super().__init__()
        if std < 0:
            raise ValueError(f"augmentation std must be >= 0, got {std}")
        self.std = float(std)

    def forward(self, x: Tensor) -> Tensor:
        """Any (B, ...) batch -> a noisy copy of the same shape."""
        if self.std == 0:
            return x
        return x + self.std * torch.randn_like(x)
