"""Noise-injected self-supervised pre-training: SimCLR, VICReg and Deep InfoMax with the Gaussian
channel on the embedding, a CIFAR ResNet-18, LARS, batched augmentations, and linear / kNN probes.

One job per module: :mod:`.config` (``PretrainConfig``, torch-free so the CLI checks arguments
before importing torch), :mod:`.losses` (NT-Xent, VICReg terms, DIM's InfoNCE, channel),
:mod:`.models` (ResNet-18 CIFAR stem, projectors), :mod:`.lars` (LARS, warm-up + cosine),
:mod:`.augment` (batched views), :mod:`.data` (sources and splits), :mod:`.trainer`
(``pretrain`` on :mod:`dimgen.training`), :mod:`.probe` (linear and kNN probes: scikit-learn's,
and the SSL literature's SGD linear head and weighted kNN).

Example:
    >>> cfg = PretrainConfig(method="vicreg", sigma=0.3, width=8, epochs=1)  # doctest: +SKIP
    >>> run = pretrain(cfg, "runs/c10-vicreg-s03")                           # doctest: +SKIP
    >>> probe_run("runs/c10-vicreg-s03")["top1"]                             # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .config import PretrainConfig

__all__ = [
    "LARS",
    "InfoMaxLoss",
    "NTXentLoss",
    "PretrainConfig",
    "PretrainRun",
    "PretrainTrainer",
    "SSLAugment",
    "SSLNet",
    "VICRegLoss",
    "covariance_loss",
    "invariance_loss",
    "knn_probe",
    "linear_probe",
    "linear_sgd_probe",
    "nt_xent",
    "pretrain",
    "probe_run",
    "resnet18_cifar",
    "variance_loss",
    "weighted_knn_probe",
]

_LAZY = {
    "LARS": "lars", "InfoMaxLoss": "losses", "NTXentLoss": "losses", "VICRegLoss": "losses", "covariance_loss": "losses",
    "invariance_loss": "losses", "nt_xent": "losses", "variance_loss": "losses",
    "SSLAugment": "augment", "SSLNet": "models", "resnet18_cifar": "models",
    "PretrainRun": "trainer", "PretrainTrainer": "trainer", "pretrain": "trainer",
    "knn_probe": "probe", "linear_probe": "probe", "probe_run": "probe",
    "linear_sgd_probe": "probe", "weighted_knn_probe": "probe",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    """Torch-backed names load on first use: ``import dimgen.ssl.config`` stays light."""
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
