"""Images on disk: PNG grids and sample files (``.png`` + ``.npz``), written atomically."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, DataError
from ..io import save_npz

__all__ = ["save_image_grid", "write_samples"]


def save_image_grid(images: Tensor | np.ndarray, path: str | Path, nrow: int = 8) -> None:
    """Write (N, C, H, W) images in [0, 1] as one PNG grid (tiles upscaled to >= 28 px, atomic)."""
    from PIL import Image
    from torchvision.utils import make_grid

    from ..io import atomic_path

    x = torch.as_tensor(np.asarray(images)) if not isinstance(images, Tensor) else images
    x = x.detach().float().cpu().clamp(0, 1)
    if x.ndim == 2:  # vectors: show as one row of pixels each
        x = x[:, None, None, :]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"cannot draw images of shape {tuple(x.shape)} (need N x 1|3 x H x W)")
    scale = max(1, math.ceil(28 / min(x.shape[2:])))
    if scale > 1:
        x = F.interpolate(x, scale_factor=scale, mode="nearest")
    grid = make_grid(x, nrow=max(1, nrow), padding=2, pad_value=1.0)  # (C, H', W')
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def write_samples(
    out: str | Path,
    images: Tensor,
    codes: Tensor,
    *,
    real: Tensor | None = None,
    labels: np.ndarray | None = None,
    seed: int | None = None,
    nrow: int = 8,
) -> tuple[Path, Path]:
    """Write a PNG grid and an ``.npz`` (``images``, ``codes``, [``real``, ``labels``]) beside it.

    With ``real``, the grid alternates columns real | generated (pairs side by side).
    Returns (png path, npz path).
    """
    png = Path(out)
    if png.suffix.lower() != ".png":
        raise ConfigError(f"--out must be a .png file, got {png}")
    npz = png.with_suffix(".npz")
    if real is not None:
        pairs = torch.stack([real.cpu(), images.cpu()], 1).flatten(0, 1)  # (2N, C, H, W)
        save_image_grid(pairs, png, nrow=2 * max(1, nrow // 2))
    else:
        save_image_grid(images, png, nrow=nrow)
    arrays: dict[str, np.ndarray] = {
        "images": images.cpu().numpy().astype(np.float32),
        "codes": codes.cpu().numpy().astype(np.float32),
    }
    if real is not None:
        arrays["real"] = real.cpu().numpy().astype(np.float32)
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64)
    if seed is not None:
        arrays["seed"] = np.asarray(seed, dtype=np.int64)
    save_npz(npz, **arrays)
    return png, npz
