"""The GAN's typed config and its validation (one set of defaults for the API and the CLI)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import RunConfig, register_validator
from ..errors import ConfigError

__all__ = ["GANConfig"]


@dataclass
class GANConfig(RunConfig):
    """Everything needed to train the code-conditional GAN; defaults are the quick digits run."""

    encoder_run: str | None = None
    """Encoder run folder whose frozen encoder supplies the codes (required)."""
    data: str | None = None
    """Training images (``digits``, ``mnist``, ``npz:PATH``, ...); None: the encoder run's data."""
    data_root: str | None = None
    """Folder for torchvision data sets; None: the encoder run's, else ``DIMGEN_DATA``."""
    arch: str = "auto"
    """``auto`` (dcgan for square images of side >= 16 and a multiple of 4, else mlp), ``mlp``, ``dcgan``."""
    conditioning: str = "concat"
    """How D sees the code: ``concat`` ([h(x), e(c)] -> head) or ``projection`` (<h(x), e(c)>)."""
    noise_dim: int = 32
    """Dimension of G's Gaussian noise input."""
    g_width: int = 128
    """Generator width (MLP hidden units; dcgan base channels)."""
    d_width: int = 128
    """Discriminator width (MLP hidden units; dcgan base channels)."""
    loss: str = "hinge"
    """``hinge`` or ``nonsaturating``."""
    spectral_norm: bool = True
    """Spectral norm on every discriminator layer."""
    r1_gamma: float = 0.0
    """Weight of the R1 penalty (gamma / 2) E||grad_x D(x, c)||^2 on real data (0: off)."""
    steps: int = 1000
    """Generator updates."""
    d_steps: int = 1
    """Discriminator updates per generator update."""
    batch_size: int = 128
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    beta1: float = 0.0
    beta2: float = 0.9
    ema_decay: float = 0.999
    """Decay of the generator EMA (0: no EMA); warmed up as min(decay, (1+t)/(10+t))."""
    sample_every: int = 500
    """Save a sample grid to ``samples/`` every N steps (0: only at the end)."""
    checkpoint_every: int = 500
    """Save a full, resumable checkpoint every N steps (0: only at the end)."""
    log_every: int = 100
    """Average the losses over windows of N steps for the history (and divergence checks)."""
    classifier_epochs: int = 20
    """Epochs of the evaluation classifier (labelled data only; 0: no classifier, no label metrics)."""
    eval_samples: int = 2000
    """Held-out images (and as many unconditional samples) evaluated at the end (0: skip)."""
    fid_extractor: str | None = None
    """The reference classifier file (safetensors) for FID / KID and label metrics: used if it
    exists, else trained once and written there. None: the cache (``$DIMGEN_CACHE``,
    :mod:`dimgen.fid_extractor`), one per data set."""


def _check_gan(cfg: GANConfig) -> None:
    if cfg.arch not in ("auto", "mlp", "dcgan"):
        raise ConfigError(f"arch must be auto, mlp or dcgan, got {cfg.arch!r}")
    if cfg.conditioning not in ("concat", "projection"):
        raise ConfigError(f"conditioning must be concat or projection, got {cfg.conditioning!r}")
    if cfg.loss not in ("hinge", "nonsaturating"):
        raise ConfigError(f"loss must be hinge or nonsaturating, got {cfg.loss!r}")
    for name in ("noise_dim", "g_width", "d_width", "steps", "d_steps", "batch_size", "log_every"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in (
        "sample_every",
        "checkpoint_every",
        "classifier_epochs",
        "eval_samples",
    ):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    for name in ("lr_g", "lr_d"):
        v = getattr(cfg, name)
        if not (math.isfinite(v) and v > 0):
            raise ConfigError(f"{name} must be > 0, got {v}")
    for name in ("beta1", "beta2", "ema_decay"):
        v = getattr(cfg, name)
        if not (math.isfinite(v) and 0 <= v < 1):
            raise ConfigError(f"{name} must lie in [0, 1), got {v}")
    if not (math.isfinite(cfg.r1_gamma) and cfg.r1_gamma >= 0):
        raise ConfigError(f"r1_gamma must be >= 0, got {cfg.r1_gamma}")


register_validator(GANConfig, _check_gan)
