"""Batched augmentations as modules, run on the training device.

The paper's MNIST set-up (Butakov et al., Appendix C) makes the second view X' with additive
Gaussian pixel noise only (:class:`GaussianPixelNoise`). :class:`RandomAffine` (small random
shifts, rotations and zooms) **departs from the paper's set-up**: it decides which information
the codes keep (the identity of a digit survives a 2-pixel shift, its exact position does not),
and on MNIST at d = 2 it raises held-out kNN accuracy markedly (see README, "MNIST on a CPU").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = ["GaussianPixelNoise", "RandomAffine", "build_augmentation"]


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


class RandomAffine(nn.Module):
    """An independent random affine warp per image, batched (one ``grid_sample`` call).

    Each image gets a rotation angle ~ U[-rotate, rotate] degrees, a zoom factor
    ~ U[1 - scale, 1 + scale] and a translation ~ U[-shift, shift] x image side along each axis;
    pixels from outside the image are 0 (MNIST's background), interpolation is bilinear. Not part
    of the paper's set-up (an extra lever; see the module docstring).

    Args:
        shift: largest translation as a fraction of the image side, in [0, 0.5).
        rotate: largest rotation in degrees, in [0, 180].
        scale: largest relative zoom, in [0, 0.5).

    Raises:
        ValueError: a parameter outside its range.
    """

    def __init__(self, shift: float = 0.0, rotate: float = 0.0, scale: float = 0.0) -> None:
        super().__init__()
        if not (math.isfinite(shift) and 0 <= shift < 0.5):
            raise ValueError(f"shift must lie in [0, 0.5), got {shift}")
        if not (math.isfinite(rotate) and 0 <= rotate <= 180):
            raise ValueError(f"rotate must lie in [0, 180] degrees, got {rotate}")
        if not (math.isfinite(scale) and 0 <= scale < 0.5):
            raise ValueError(f"scale must lie in [0, 0.5), got {scale}")
        self.shift, self.rotate, self.scale = float(shift), float(rotate), float(scale)

    @property
    def identity(self) -> bool:
        """True when every parameter is 0 (``forward`` returns its input)."""
        return self.shift == 0 and self.rotate == 0 and self.scale == 0

    def theta(self, n: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """(n, 2, 3) random affine matrices in ``affine_grid``'s normalised [-1, 1] coordinates."""

        def uniform(bound: float) -> Tensor:
            return (2 * torch.rand(n, device=device, dtype=dtype) - 1) * bound

        angle = uniform(math.radians(self.rotate))
        zoom = 1 + uniform(self.scale)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # Normalised coordinates span 2 per image side: a shift of s sides is 2 s.
        tx, ty = 2 * uniform(self.shift), 2 * uniform(self.shift)
        row0 = torch.stack([cos, -sin, tx], dim=1)
        row1 = torch.stack([sin, cos, ty], dim=1)
        return torch.stack([row0, row1], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) images -> warped (B, C, H, W) images (a new tensor unless identity).

        Raises:
            ValueError: ``x`` is not a 4-D (B, C, H, W) batch.
        """
        if x.dim() != 4:
            raise ValueError(
                f"RandomAffine expects (B, C, H, W) images, got shape {tuple(x.shape)}"
            )
        if self.identity:
            return x
        theta = self.theta(x.shape[0], x.device, x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def build_augmentation(
    noise: float,
    in_shape: Sequence[int],
    shift: float = 0.0,
    rotate: float = 0.0,
    scale: float = 0.0,
) -> nn.Module:
    """The view-making augmentation X -> X': an optional :class:`RandomAffine`, then pixel noise.

    With ``shift = rotate = scale = 0`` this is exactly the paper's :class:`GaussianPixelNoise`.

    Args:
        noise: pixel-noise std (data in [0, 1]), >= 0.
        in_shape: shape of one sample; the affine warp needs C x H x W images.
        shift, rotate, scale: see :class:`RandomAffine`.

    Raises:
        ConfigError: a parameter out of range, or an affine warp asked of non-image data.
    """
    try:
        pixel = GaussianPixelNoise(noise)
        affine = RandomAffine(shift, rotate, scale)
    except ValueError as exc:
        raise ConfigError(f"augmentation: {exc}") from None
    if affine.identity:
        return pixel
    if len(in_shape) != 3:
        raise ConfigError(
            f"aug_shift / aug_rotate / aug_scale need C x H x W images, got samples of shape "
            f"{tuple(in_shape)}"
        )
    return nn.Sequential(affine, pixel)
