"""The typed config of SSL pre-training (``dimgen pretrain``) and its validation."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import RunConfig, register_validator
from ..errors import ConfigError

__all__ = ["METHODS", "SSL_SOURCES", "PretrainConfig"]

METHODS = ("simclr", "vicreg")
SSL_SOURCES = ("cifar10", "cifar100", "cifar10-test-lossy", "npz:PATH")
#: The projector's output dimension when ``proj_dim`` is 0 (the paper's appendix).
DEFAULT_PROJ_DIM = {"simclr": 256, "vicreg": 2048}


@dataclass
class PretrainConfig(RunConfig):
    """Everything needed to pre-train a noise-injected SimCLR or VICReg backbone.

    The defaults are a small CPU run; ``configs/cifar10-{simclr,vicreg}.yaml`` hold the paper's
    GPU recipe (ResNet-18, LARS, warm-up + cosine).
    """

    method: str = "simclr"
    """``simclr`` (NT-Xent) or ``vicreg`` (invariance + variance + covariance, 25/25/1)."""
    sigma: float = 0.0
    """Std of the Gaussian channel noise on the embedding (0: no channel, the plain method)."""
    data: str = "cifar10-test-lossy"
    """``cifar10``, ``cifar100`` (torchvision), ``cifar10-test-lossy`` (the lossy CIFAR-10 test
    copy under the data root: ``CIFAR10/cifar10_test.npz``), or ``npz:PATH`` (3-channel images)."""
    test_fraction: float = 0.2
    """Probe split held out of sources without an official test split (seeded by ``seed``)."""
    max_train: int = 0
    """Pre-train on the first N images of the training split only (0: all)."""
    width: int = 64
    """ResNet-18 base width (64: the standard network; smaller: a narrow one for the CPU)."""
    proj_hidden: int = 2048
    """Hidden width of the projector."""
    proj_dim: int = 0
    """Projector output d (0: the paper's, 256 for SimCLR and 2048 for VICReg)."""
    temperature: float = 0.5
    """NT-Xent temperature (SimCLR only)."""
    epochs: int = 1
    batch_size: int = 256
    lr: float = 0.3
    """Peak learning rate (after warm-up)."""
    weight_decay: float = 1e-5
    momentum: float = 0.9
    eta: float = 0.02
    """LARS trust coefficient."""
    warmup_epochs: float = 10.0
    """Linear warm-up length in epochs (then cosine decay to 0)."""
    aug_groups: int = 16
    """Chunks of each batch with independent augmentation parameters (0: one per image)."""
    amp: bool = True
    """bf16 autocast on CUDA (ignored on the CPU)."""
    devices: int = 1
    """Data-parallel processes to spawn (one per GPU); under ``torchrun``, leave at 1."""
    checkpoint_every: int = 100
    """Optimiser steps between resumable checkpoints (0: none)."""
    log_every: int = 10
    """Optimiser steps per logged loss window."""

    @property
    def out_dim(self) -> int:
        """The projector's output dimension d."""
        return self.proj_dim or DEFAULT_PROJ_DIM[self.method]


def _check_pretrain(cfg: PretrainConfig) -> None:
    if cfg.method not in METHODS:
        raise ConfigError(f"method must be simclr or vicreg, got {cfg.method!r}")
    if not (cfg.data in SSL_SOURCES[:3] or cfg.data.startswith("npz:")):
        raise ConfigError(f"data must be one of {', '.join(SSL_SOURCES)}, got {cfg.data!r}")
    for name in ("width", "proj_hidden", "epochs", "batch_size", "devices", "log_every"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("max_train", "proj_dim", "aug_groups", "checkpoint_every"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.batch_size < 2 or cfg.batch_size % cfg.devices:
        raise ConfigError(
            f"batch_size must be >= 2 and divisible by devices {cfg.devices}, got {cfg.batch_size}"
        )
    for name in ("sigma", "weight_decay", "eta", "warmup_epochs"):
        v = getattr(cfg, name)
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"{name} must be a finite number >= 0, got {v}")
    for name in ("lr", "temperature"):
        v = getattr(cfg, name)
        if not (math.isfinite(v) and v > 0):
            raise ConfigError(f"{name} must be > 0, got {v}")
    if not 0 <= cfg.momentum < 1:
        raise ConfigError(f"momentum must lie in [0, 1), got {cfg.momentum}")
    if not 0 < cfg.test_fraction < 1:
        raise ConfigError(f"test_fraction must lie in (0, 1), got {cfg.test_fraction}")


register_validator(PretrainConfig, _check_pretrain)
