"""The GAN's typed config and its validation (one set of defaults for the API and the CLI).

Torch-free, so ``dimgen train-gan`` checks its options before importing torch. Field types,
finiteness and ranges are declared with :func:`dimgen.config.bounded` / :func:`~dimgen.config.one_of`
and checked by :func:`dimgen.config.validate`; :func:`_check_gan` adds the cross-field rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import RunConfig, bounded, one_of, register_validator
from ..errors import ConfigError

__all__ = ["MIN_EVAL_SAMPLES", "GANConfig"]

#: Fewest held-out images the evaluation accepts: KID averages over subsets of n // 2 >= 2 images
#: and FID needs a covariance; ``eval_samples=1`` used to fail after the whole training.
MIN_EVAL_SAMPLES = 10
_BIG = 10**8


@dataclass
class GANConfig(RunConfig):
    """Everything needed to train the code-conditional GAN; defaults are the quick digits run."""

    encoder_run: str | None = None
    """Encoder run folder whose frozen encoder supplies the codes (required)."""
    data: str | None = None
    """Training images (``digits``, ``mnist``, ``npz:PATH``, ...); None: the encoder run's data."""
    data_root: str | None = None
    """Folder for torchvision data sets; None: the encoder run's, else ``DIMGEN_DATA``."""
    arch: str = one_of("auto", "auto", "mlp", "dcgan")
    """``auto`` (dcgan for square images of side >= 16 and a multiple of 4, else mlp), ``mlp``, ``dcgan``."""
    conditioning: str = one_of("concat", "concat", "projection")
    """How D sees the code: ``concat`` ([h(x), e(c)] -> head) or ``projection`` (<h(x), e(c)>)."""
    noise_dim: int = bounded(32, 1, 4096)
    """Dimension of G's Gaussian noise input."""
    g_width: int = bounded(128, 1, 8192)
    """Generator width (MLP hidden units; dcgan base channels)."""
    d_width: int = bounded(128, 1, 8192)
    """Discriminator width (MLP hidden units; dcgan base channels)."""
    loss: str = one_of("hinge", "hinge", "nonsaturating")
    """``hinge`` or ``nonsaturating``."""
    spectral_norm: bool = True
    """Spectral norm on every discriminator layer."""
    r1_gamma: float = bounded(0.0, 0.0, 1e6)
    """Weight of the R1 penalty (gamma / 2) E||grad_x D(x, c)||^2 on real data (0: off)."""
    steps: int = bounded(1000, 1, _BIG)
    """Generator updates."""
    d_steps: int = bounded(1, 1, 100)
    """Discriminator updates per generator update."""
    batch_size: int = bounded(128, 2, 2**20, why="batch-norm needs 2 samples per batch")
    lr_g: float = bounded(1e-3, 0.0, 10.0, low_open=True)
    lr_d: float = bounded(1e-3, 0.0, 10.0, low_open=True)
    beta1: float = bounded(0.0, 0.0, 1.0, high_open=True)
    beta2: float = bounded(0.9, 0.0, 1.0, high_open=True)
    ema_decay: float = bounded(0.999, 0.0, 1.0, high_open=True)
    """Decay of the generator EMA (0: no EMA); warmed up as min(decay, (1+t)/(10+t))."""
    sample_every: int = bounded(500, 0, _BIG)
    """Save a sample grid to ``samples/`` every N steps (0: only at the end)."""
    checkpoint_every: int = bounded(500, 0, _BIG)
    """Save a full, resumable checkpoint every N steps (0: only at the end)."""
    log_every: int = bounded(100, 1, _BIG)
    """Average the losses over windows of N steps for the history (and divergence checks)."""
    classifier_epochs: int = bounded(20, 0, 10**4)
    """Epochs of the evaluation classifier (labelled data only; 0: no classifier, no label metrics)."""
    eval_samples: int = bounded(2000, 0, 10**6)
    """Held-out images (and as many unconditional samples) evaluated at the end (0: skip; else
    at least ``MIN_EVAL_SAMPLES``)."""
    devices: int = bounded(1, 1, 1024)
    """Data-parallel processes to spawn: one per GPU, or gloo processes on the CPU (DDP). The
    global batch stays ``batch_size``. Under ``torchrun`` the launcher decides: leave it at 1."""
    fid_extractor: str | None = None
    """The reference classifier file (safetensors) for FID / KID and label metrics: used if it
    exists, else trained once and written there. None: the cache (``$DIMGEN_CACHE``,
    :mod:`dimgen.fidelity.extractor`), one per data set."""


def _check_gan(cfg: GANConfig) -> None:
    if cfg.batch_size % cfg.devices:
        raise ConfigError(
            f"batch_size {cfg.batch_size} must be divisible by devices {cfg.devices} "
            "(each process takes an equal shard of every batch)"
        )
    if 0 < cfg.eval_samples < MIN_EVAL_SAMPLES:
        raise ConfigError(
            f"eval_samples must be 0 (no evaluation) or >= {MIN_EVAL_SAMPLES} (FID / KID need "
            f"that many images), got {cfg.eval_samples}"
        )


register_validator(GANConfig, _check_gan)
