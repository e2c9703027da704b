"""``FlowConfig``: options of ``dimgen flow`` (map choice, flow architecture and training)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import register_validator
from ..errors import ConfigError

__all__ = ["METHODS", "FlowConfig"]

METHODS = ("auto", "exact", "maf", "rqs")


@dataclass
class FlowConfig:
    """How codes are mapped to a new prior. Defaults train a 2-D flow in a few CPU seconds."""

    backend: str = "nflows"
    """Flow library: ``nflows`` or ``zuko`` (optional extra ``dimgen[zuko]``)."""
    method: str = "auto"
    """``auto`` (``exact`` for i.i.d. 1-D laws, else ``rqs``), ``exact``, ``maf`` or ``rqs``."""
    layers: int = 3
    """Autoregressive layers (each followed by a reversal of the coordinates)."""
    hidden: int = 64
    """Hidden width of each layer's MADE network."""
    blocks: int = 2
    """Residual blocks per MADE network."""
    bins: int = 8
    """Rational-quadratic spline bins (``rqs``)."""
    tail_bound: float = 4.0
    """Spline interval [-B, B] in standardised units; linear tails outside (``rqs``)."""
    steps: int = 400
    """Adam steps of maximum-likelihood training."""
    batch_size: int = 256
    lr: float = 3e-3
    """Initial learning rate (cosine-annealed to 0)."""
    n_train: int = 20_000
    """Target samples drawn for training (a target given as a distribution)."""
    n_test: int = 5_000
    """Held-out target samples (log-likelihood, kNN references)."""
    test_fraction: float = 0.2
    """Held-out share of the samples when the target is given as samples."""
    knn_k: int = 5
    """Neighbours used by the kNN KL and entropy estimators."""
    seed: int = 0


def _check_flow(cfg: FlowConfig) -> None:
    if cfg.backend not in ("nflows", "zuko"):
        raise ConfigError(f"backend must be nflows or zuko, got {cfg.backend!r}")
    if cfg.method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    for name in ("layers", "hidden", "blocks", "steps", "batch_size", "n_train", "knn_k"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.bins < 2:
        raise ConfigError(f"bins must be >= 2, got {cfg.bins}")
    if cfg.n_test < 2 * cfg.knn_k + 2:
        raise ConfigError(f"n_test must be >= {2 * cfg.knn_k + 2}, got {cfg.n_test}")
    if not (math.isfinite(cfg.tail_bound) and cfg.tail_bound > 0):
        raise ConfigError(f"tail_bound must be > 0, got {cfg.tail_bound}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ConfigError(f"lr must be > 0, got {cfg.lr}")
    if not (0 < cfg.test_fraction < 1):
        raise ConfigError(f"test_fraction must lie in (0, 1), got {cfg.test_fraction}")


register_validator(FlowConfig, _check_flow)
