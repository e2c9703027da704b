"""The diffusion generator's typed config and its validation (one set of defaults for API and CLI)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import RunConfig, register_validator
from ..errors import ConfigError

__all__ = ["DiffusionConfig"]


@dataclass
class DiffusionConfig(RunConfig):
    """Everything needed to train the code-conditioned diffusion model; defaults: the digits run."""

    encoder_run: str | None = None
    """Encoder run folder whose frozen encoder supplies the codes (required)."""
    data: str | None = None
    """Training images (``digits``, ``mnist``, ``npz:PATH``, ...); None: the encoder run's data."""
    data_root: str | None = None
    """Folder for torchvision data sets; None: the encoder run's, else ``DIMGEN_DATA``."""
    width: int = 16
    """UNet base width: block_out_channels = (width, 2 width, 4 width, ...)."""
    levels: int = 2
    """UNet resolution levels (H and W must be divisible by 2^(levels-1))."""
    layers_per_block: int = 1
    """ResNet layers per UNet block."""
    norm_groups: int = 8
    """GroupNorm groups (every width must be a multiple)."""
    num_train_timesteps: int = 1000
    """Diffusion steps T of the DDPM noise schedule."""
    beta_schedule: str = "squaredcos_cap_v2"
    """``diffusers`` beta schedule: ``linear``, ``scaled_linear`` or ``squaredcos_cap_v2`` (cosine)."""
    p_uncond: float = 0.1
    """Probability of replacing a training code by the null code (classifier-free guidance)."""
    steps: int = 2000
    """Optimiser steps."""
    batch_size: int = 64
    lr: float = 1e-3
    ema_decay: float = 0.995
    """Decay of the weights' EMA (0: none); warmed up as min(decay, (1+t)/(10+t))."""
    scheduler: str = "ddim"
    """Sampler: ``ddim`` (deterministic, few steps) or ``ddpm`` (ancestral)."""
    sample_steps: int = 25
    """Denoising steps when sampling."""
    guidance_scale: float = 1.0
    """Classifier-free guidance s (0: null code only, 1: code only, > 1: stronger adherence)."""
    sample_every: int = 1000
    """Save a sample grid to ``samples/`` every N steps (0: only at the end)."""
    checkpoint_every: int = 500
    """Save a full, resumable checkpoint every N steps (0: only at the end)."""
    log_every: int = 100
    """Average the loss over windows of N steps for the history (and divergence checks)."""
    classifier_epochs: int = 20
    """Epochs of the evaluation classifier (labelled data only; 0: no classifier, no label metrics)."""
    eval_samples: int = 500
    """Held-out images (and as many unconditional samples) evaluated at the end (0: skip)."""


def _check(cfg: DiffusionConfig) -> None:
    for name in ("width", "levels", "layers_per_block", "norm_groups", "num_train_timesteps",
                 "steps", "batch_size", "sample_steps", "log_every"):  # fmt: skip
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("sample_every", "checkpoint_every", "classifier_epochs", "eval_samples"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.width % cfg.norm_groups:
        raise ConfigError(
            f"width ({cfg.width}) must be a multiple of norm_groups ({cfg.norm_groups})"
        )
    if cfg.sample_steps > cfg.num_train_timesteps:
        raise ConfigError(
            f"sample_steps ({cfg.sample_steps}) cannot exceed num_train_timesteps "
            f"({cfg.num_train_timesteps})"
        )
    if cfg.beta_schedule not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        raise ConfigError(
            "beta_schedule must be linear, scaled_linear or squaredcos_cap_v2, "
            f"got {cfg.beta_schedule!r}"
        )
    if cfg.scheduler not in ("ddim", "ddpm"):
        raise ConfigError(f"scheduler must be ddim or ddpm, got {cfg.scheduler!r}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ConfigError(f"lr must be > 0, got {cfg.lr}")
    for name in ("p_uncond", "ema_decay"):
        v = getattr(cfg, name)
        if not (math.isfinite(v) and 0 <= v < 1):
            raise ConfigError(f"{name} must lie in [0, 1), got {v}")
    if not (math.isfinite(cfg.guidance_scale) and cfg.guidance_scale >= 0):
        raise ConfigError(f"guidance_scale must be >= 0, got {cfg.guidance_scale}")


register_validator(DiffusionConfig, _check)
