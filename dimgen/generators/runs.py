"""Load the generator of any complete generator run folder (GAN or diffusion)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..io import read_run
from .protocol import GENERATOR_KINDS, Generator

__all__ = ["load_generator"]


def load_generator(
    path: str | Path, device: str | torch.device = "cpu", ema: bool = True
) -> Generator:
    """The generator of a complete GAN or diffusion run folder (the EMA weights if ``ema``).

    Raises :class:`~dimgen.errors.RunFolderError` for a missing, incomplete or foreign folder
    and :class:`~dimgen.errors.ConfigError` when a diffusion run needs ``dimgen[diffusers]``.
    """
    _, record = read_run(path, GENERATOR_KINDS)
    if record.get("kind") == "diffusion":
        from ..diffusion.model import DiffusionModel

        return DiffusionModel.from_pretrained(path, device=device, ema=ema)
    from ..gan.model import GAN

    return GAN.from_pretrained(path, device=device, ema=ema)
