"""Load the generator of any complete generator run folder (GAN or diffusion)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import RunFolderError
from ..io import read_run, resolve_run_dir
from .protocol import GENERATOR_KINDS, Generator

__all__ = ["load_generator"]


def load_generator(
    path: str | Path, device: str | torch.device = "cpu", ema: bool = True
) -> Generator:
    """The generator of a complete GAN or diffusion run folder (the EMA weights if ``ema``).

    Raises :class:`~dimgen.errors.RunFolderError` for a missing, incomplete or foreign folder
    and :class:`~dimgen.errors.ConfigError` when a diffusion run needs ``dimgen[diffusers]``.
    """
    from ..folders import _kind

    if _kind(resolve_run_dir(path)) == "encoder":
        raise RunFolderError(
            f"{path} is an encoder run, not a generator: train one on its codes first "
            f"(`dimgen train-gan {path} --out runs/gan` or `dimgen train-diffusion {path} --out "
            "runs/diffusion`), then sample from that run"
        )
    _, record = read_run(path, GENERATOR_KINDS)
    if record.get("kind") == "diffusion":
        from ..diffusion.model import DiffusionModel

        return DiffusionModel.from_pretrained(path, device=device, ema=ema)
    from ..gan.model import GAN

    return GAN.from_pretrained(path, device=device, ema=ema)
