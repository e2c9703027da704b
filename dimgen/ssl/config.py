"""The typed config of SSL pre-training (``dimgen pretrain``) and its validation."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import RunConfig, bounded, one_of, register_validator
from ..data.folder import DEFAULT_SIDE, parse_folder_source  # torch-free
from ..errors import ConfigError, DataError

__all__ = ["METHODS", "SSL_SOURCES", "PretrainConfig"]

METHODS = ("simclr", "vicreg", "dim")
SSL_SOURCES = ("cifar10", "cifar100", "cifar10-test-lossy", "npz:PATH", "folder:PATH")
#: The projector's output dimension when ``proj_dim`` is 0 (the paper's appendix; DIM uses
#: SimCLR's head).
DEFAULT_PROJ_DIM = {"simclr": 256, "vicreg": 2048, "dim": 256}


@dataclass
class PretrainConfig(RunConfig):
    """Everything needed to pre-train a noise-injected SimCLR, VICReg or Deep InfoMax backbone.

    The defaults are a small CPU run; ``configs/cifar10-{simclr,vicreg}.yaml`` hold the paper's
    GPU recipe (ResNet-18, LARS, warm-up + cosine).
    """

    method: str = one_of("simclr", *METHODS)
    """``simclr`` (NT-Xent), ``vicreg`` (invariance + variance + covariance, 25/25/1) or ``dim``
    (noise-injected Deep InfoMax: InfoNCE between one view's noisy codes and the other's)."""
    sigma: float = bounded(0.0, 0.0, 100.0)
    """Std of the Gaussian channel noise on the embedding (0: no channel, the plain method)."""
    data: str = "cifar10-test-lossy"
    """``cifar10``, ``cifar100`` (torchvision), ``cifar10-test-lossy`` (the lossy CIFAR-10 test
    copy under the data root: ``CIFAR10/cifar10_test.npz``), ``npz:PATH`` (3-channel images) or
    ``folder:PATH`` (your images, RGB, resized to ``image_size``; the probe needs the ImageFolder
    layout ``PATH/<class>/<image>``, a flat folder pre-trains only)."""
    image_size: int = bounded(32, 4, 512)
    """Side of the square images a ``folder:`` source is resized and centre-cropped to (the
    other sources keep their own size: 32 for CIFAR)."""
    test_fraction: float = bounded(0.2, 0.0, 1.0, low_open=True, high_open=True)
    """Probe split held out of sources without an official test split (seeded by ``seed``)."""
    max_train: int = bounded(0, 0, 2**40)
    """Pre-train on the first N images of the training split only (0: all)."""
    width: int = bounded(64, 1, 4096)
    """ResNet-18 base width (64: the standard network; smaller: a narrow one for the CPU)."""
    proj_hidden: int = bounded(2048, 1, 65536)
    """Hidden width of the projector."""
    proj_dim: int = bounded(0, 0, 65536)
    """Projector output d (0: the paper's, 256 for SimCLR and 2048 for VICReg)."""
    temperature: float = bounded(0.5, 0.0, 100.0, low_open=True)
    """NT-Xent temperature (SimCLR only)."""
    critic: str = one_of("mlp", "mlp", "separable")
    """DIM only: ``mlp`` (the paper's 3-layer MLP on concatenated pairs) or ``separable``."""
    critic_hidden: int = bounded(256, 1, 65536)
    """DIM only: critic hidden width."""
    epochs: int = bounded(1, 1, 10**8)
    batch_size: int = bounded(256, 2, 2**20, why="in-batch negatives and batch-norm need 2")
    lr: float = bounded(0.3, 0.0, 100.0, low_open=True)
    """Peak learning rate (after warm-up)."""
    weight_decay: float = bounded(1e-5, 0.0, 10.0)
    momentum: float = bounded(0.9, 0.0, 1.0, high_open=True)
    eta: float = bounded(0.02, 0.0, 100.0)
    """LARS trust coefficient."""
    warmup_epochs: float = bounded(10.0, 0.0, 10**8)
    """Linear warm-up length in epochs (then cosine decay to 0)."""
    aug_groups: int = bounded(16, 0, 2**20)
    """Chunks of each batch with independent augmentation parameters (0: one per image)."""
    amp: bool = True
    """bf16 autocast on CUDA (ignored on the CPU)."""
    devices: int = bounded(1, 1, 1024)
    """Data-parallel processes to spawn (one per GPU); under ``torchrun``, leave at 1."""
    checkpoint_every: int = bounded(100, 0, 10**8)
    """Optimiser steps between resumable checkpoints (0: none)."""
    log_every: int = bounded(10, 1, 10**8)
    """Optimiser steps per logged loss window."""

    @property
    def out_dim(self) -> int:
        """The projector's output dimension d."""
        return self.proj_dim or DEFAULT_PROJ_DIM[self.method]


def _check_pretrain(cfg: PretrainConfig) -> None:
    """Cross-field rules; types, finiteness and ranges are checked from the field declarations."""
    if not (cfg.data in SSL_SOURCES[:3] or cfg.data.startswith(("npz:", "folder:"))):
        raise ConfigError(f"data must be one of {', '.join(SSL_SOURCES)}, got {cfg.data!r}")
    if cfg.data.startswith("folder:"):
        try:
            spec = parse_folder_source(cfg.data)
        except DataError as exc:
            raise ConfigError(f"data: {exc}") from None
        if spec.mode == "grey":
            raise ConfigError(f"data: {cfg.data}: SSL pre-training needs RGB images (mode=rgb)")
        if spec.side not in (DEFAULT_SIDE, cfg.image_size):
            raise ConfigError(
                f"data: {cfg.data}: side={spec.side} contradicts image_size {cfg.image_size}; "
                "set image_size only"
            )
    if cfg.batch_size % cfg.devices:
        raise ConfigError(f"batch_size {cfg.batch_size} must be divisible by devices {cfg.devices}")


register_validator(PretrainConfig, _check_pretrain)
