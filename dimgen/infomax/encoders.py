"""Encoders: the paper's MNIST ConvNet (any C x H x W image) and an MLP for vectors / tiny images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = ["ConvEncoder", "MLPEncoder", "build_encoder"]


class ConvEncoder(nn.Module):
    """Three conv blocks and two fully connected layers (Butakov et al., Appendix C).

    Works for 1x28x28 (MNIST) and 3x32x32 (CIFAR) alike: the flattened size is inferred.
    """

    def __init__(
        self, in_shape: Sequence[int], dim: int, hidden: int = 256, width: int = 32
    ) -> None:
        super().__init__()
        c, h, w = (int(v) for v in in_shape)
        self.in_shape = (c, h, w)
        act = nn.LeakyReLU(0.2)
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), act, nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), act, nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), act, nn.MaxPool2d(2),
        )  # fmt: skip
        with torch.no_grad():
            flat = self.features(torch.zeros(1, c, h, w)).numel()
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, hidden), act, nn.Linear(hidden, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) images -> (B, dim) un-normalised outputs."""
        return self.head(self.features(x))


class MLPEncoder(nn.Module):
    """Two hidden layers; flattens any input (vectors or tiny images such as 8x8 digits)."""

    def __init__(self, in_shape: Sequence[int], dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.in_shape = tuple(int(v) for v in in_shape)
        n_in = 1
        for v in self.in_shape:
            n_in *= v
        act = nn.LeakyReLU(0.2)
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(n_in, hidden), act, nn.Linear(hidden, hidden), act,
            nn.Linear(hidden, dim),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        """(B, *in_shape) -> (B, dim) un-normalised outputs."""
        return self.net(x)


def build_encoder(kind: str, in_shape: Sequence[int], dim: int, hidden: int = 256) -> nn.Module:
    """Build an encoder; ``auto`` picks the ConvNet for images of side >= 16, else the MLP."""
    in_shape = tuple(int(v) for v in in_shape)
    if kind == "auto":
        kind = "conv" if len(in_shape) == 3 and min(in_shape[1:]) >= 16 else "mlp"
    if kind == "conv":
        if len(in_shape) != 3 or min(in_shape[1:]) < 8:
            raise ConfigError(
                f"the conv encoder needs C x H x W images of side >= 8, got {in_shape}"
            )
        return ConvEncoder(in_shape, dim, hidden)
    if kind == "mlp":
        return MLPEncoder(in_shape, dim, hidden)
    raise ConfigError(f"unknown encoder {kind!r} (expected auto, conv or mlp)")


def resolve_encoder_kind(kind: str, in_shape: Sequence[int]) -> str:
    """The concrete encoder kind that :func:`build_encoder` would use."""
    in_shape = tuple(in_shape)
    if kind == "auto":
        return "conv" if len(in_shape) == 3 and min(in_shape[1:]) >= 16 else "mlp"
    return kind
