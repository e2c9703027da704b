"""A Hugging Face ``diffusers`` diffusion model conditioned on dimgen codes.

The frozen encoder of an encoder run maps each training image to its code c; a ``diffusers``
``UNet2DModel`` learns to denoise under c (its class embedding, via
:mod:`dimgen.integrations.diffusers`), with a learned null code so that the same network
samples with and without a code (classifier-free guidance). As with the GAN, codes drawn from
the encoder's prior give unconditional generation with no extra network.

One job per module: :mod:`.config` (``DiffusionConfig``), :mod:`.model` (the trained
``DiffusionModel``, a :class:`dimgen.generators.Generator`), :mod:`.trainer`
(``train_diffusion`` on :mod:`dimgen.training`), :mod:`.report`, :mod:`.pipeline`
(``CodePipeline``: the run as a ``diffusers`` pipeline) and :mod:`.export` (``dimgen export``). Needs ``dimgen[diffusers]``.
Names are imported lazily, so ``dimgen.diffusion.config`` needs no torch (fast CLI checks).

Example:
    >>> run = train_diffusion(DiffusionConfig(encoder_run="runs/digits"), "runs/digits-ddpm")  # doctest: +SKIP
    >>> model = DiffusionModel.from_pretrained("runs/digits-ddpm")                           # doctest: +SKIP
    >>> images, codes = model.sample_unconditional(64, seed=0)                               # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "CodePipeline": ".pipeline",
    "DiffusionConfig": ".config",
    "DiffusionModel": ".model",
    "build_net": ".model",
    "diffusion_spec": ".model",
    "diffusion_report": ".report",
    "export_pipeline": ".export",
    "DiffusionRun": ".trainer",
    "DiffusionTrainer": ".trainer",
    "train_diffusion": ".trainer",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_LAZY[name], __name__), name)
