"""The standard SSL image augmentations, batched on the training device (torchvision v2).

SimCLR's CIFAR set (random resized crop, horizontal flip, colour jitter 0.4/0.4/0.4/0.1 with
p 0.8, grayscale with p 0.2; no blur at 32x32). torchvision's v2 transforms draw one set of
parameters per call, so a batch is augmented in ``groups`` chunks (each chunk shares its draw):
the work stays tensor-side on the device, with no per-image CPU pipeline. ``groups = batch``
gives per-image parameters.

Reference: Chen et al., SimCLR (ICML 2020), appendix A.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import DataError

__all__ = ["SSLAugment"]


class SSLAugment(nn.Module):
    """(B, 3, H, W) in [0, 1] -> (B, 3, size, size) in [0, 1], a random view per group.

    Args:
        size: output side; scale: crop area range of the random resized crop;
        groups: chunks of the batch that get independent parameters (0: one per image).
    """

    def __init__(self, size: int = 32, scale: tuple[float, float] = (0.08, 1.0),
                 groups: int = 16) -> None:  # fmt: skip
        super().__init__()
        from torchvision.transforms import v2

        self.groups = groups
        self.transform = v2.Compose([
            v2.RandomResizedCrop(size, scale=scale, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
        ])  # fmt: skip

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment ``x``; with ``generator`` the draws are reproducible (the global RNG is
        forked, seeded from it, and restored)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise DataError(f"SSL augmentation expects (B, 3, H, W) images, got {tuple(x.shape)}")
        if generator is None:
            return self._apply(x)
        seed = int(torch.randint(2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            return self._apply(x)

    def _apply(self, x: Tensor) -> Tensor:
        groups = len(x) if self.groups <= 0 else min(self.groups, len(x))
        return torch.cat([self.transform(c) for c in x.tensor_split(groups)]).clamp_(0.0, 1.0)
