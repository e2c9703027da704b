"""The diffusion generator's typed config and its validation (one set of defaults for API and CLI)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import RunConfig, bounded, one_of, register_validator
from ..errors import ConfigError
from ..gan.config import MIN_EVAL_SAMPLES

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
    width: int = bounded(16, 1, 4096)
    """UNet base width: block_out_channels = (width, 2 width, 4 width, ...)."""
    levels: int = bounded(2, 1, 8)
    """UNet resolution levels (H and W must be divisible by 2^(levels-1))."""
    layers_per_block: int = bounded(1, 1, 16)
    """ResNet layers per UNet block."""
    norm_groups: int = bounded(8, 1, 1024)
    """GroupNorm groups (every width must be a multiple)."""
    num_train_timesteps: int = bounded(1000, 1, 100_000)
    """Diffusion steps T of the DDPM noise schedule."""
    beta_schedule: str = one_of("squaredcos_cap_v2", "linear", "scaled_linear", "squaredcos_cap_v2")
    """``diffusers`` beta schedule: ``linear``, ``scaled_linear`` or ``squaredcos_cap_v2`` (cosine)."""
    p_uncond: float = bounded(0.1, 0.0, 1.0, high_open=True)
    """Probability of replacing a training code by the null code (classifier-free guidance)."""
    steps: int = bounded(2000, 1, 10**8)
    """Optimiser steps."""
    batch_size: int = bounded(64, 2, 2**20, why="batch-norm-free UNet, but EMA and losses need 2")
    lr: float = bounded(1e-3, 0.0, 10.0, low_open=True)
    ema_decay: float = bounded(0.995, 0.0, 1.0, high_open=True)
    """Decay of the weights' EMA (0: none); warmed up as min(decay, (1+t)/(10+t))."""
    scheduler: str = one_of("ddim", "ddim", "ddpm")
    """Sampler: ``ddim`` (deterministic, few steps) or ``ddpm`` (ancestral)."""
    sample_steps: int = bounded(25, 1, 100_000)
    """Denoising steps when sampling."""
    guidance_scale: float = bounded(1.0, 0.0, 100.0)
    """Classifier-free guidance s (0: null code only, 1: code only, > 1: stronger adherence)."""
    sample_every: int = bounded(1000, 0, 10**8)
    """Save a sample grid to ``samples/`` every N steps (0: only at the end)."""
    checkpoint_every: int = bounded(500, 0, 10**8)
    """Save a full, resumable checkpoint every N steps (0: only at the end)."""
    log_every: int = bounded(100, 1, 10**8)
    """Average the loss over windows of N steps for the history (and divergence checks)."""
    classifier_epochs: int = bounded(20, 0, 10**4)
    """Epochs of the evaluation classifier (labelled data only; 0: no classifier, no label metrics)."""
    eval_samples: int = bounded(500, 0, 10**6)
    """Held-out images (and as many unconditional samples) evaluated at the end (0: skip; else
    at least ``MIN_EVAL_SAMPLES``)."""
    devices: int = bounded(1, 1, 1024)
    """Data-parallel processes to spawn: one per GPU, or gloo processes on the CPU (DDP). The
    global batch stays ``batch_size``. Under ``torchrun`` the launcher decides: leave it at 1."""
    fid_extractor: str | None = None
    """The reference classifier file (safetensors) for FID / KID and label metrics, as for the
    GAN: used if it exists, else trained once and written there. None: the cache, one per data
    set (:mod:`dimgen.fidelity.extractor`), so the GAN and the diffusion model on the same data and
    ``classifier_epochs`` are measured in the same feature space."""


def _check(cfg: DiffusionConfig) -> None:
    """Cross-field rules; types, finiteness and ranges are checked from the field declarations."""
    if cfg.batch_size % cfg.devices:
        raise ConfigError(
            f"batch_size {cfg.batch_size} must be divisible by devices {cfg.devices} "
            "(each process takes an equal shard of every batch)"
        )
    if cfg.width % cfg.norm_groups:
        raise ConfigError(
            f"width ({cfg.width}) must be a multiple of norm_groups ({cfg.norm_groups})"
        )
    if 0 < cfg.eval_samples < MIN_EVAL_SAMPLES:
        raise ConfigError(
            f"eval_samples must be 0 (no evaluation) or >= {MIN_EVAL_SAMPLES} (FID / KID need "
            f"that many images), got {cfg.eval_samples}"
        )
    if cfg.sample_steps > cfg.num_train_timesteps:
        raise ConfigError(
            f"sample_steps ({cfg.sample_steps}) cannot exceed num_train_timesteps "
            f"({cfg.num_train_timesteps})"
        )


register_validator(DiffusionConfig, _check)
