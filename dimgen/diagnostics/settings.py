"""Settings of the diagnostics: :class:`EvalConfig` (shared by API and CLI) and sample minima."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["MIN_SAMPLES", "EvalConfig"]

#: Fewest samples each test accepts (D'Agostino-Pearson's kurtosis test is invalid below 20).
MIN_SAMPLES = {"dagostino": 20, "shapiro": 3, "ks": 2}


@dataclass
class EvalConfig:
    """Settings shared by :func:`evaluate`, ``dimgen evaluate`` and ``dimgen sweep``."""

    alpha: float = 0.05
    """Significance level of every verdict."""
    seed: int = 0
    """Seed for projection directions, subsamples and probes (results are reproducible)."""
    n_projections: int = 16
    """Random 1-D projections per subsample (at most d: one random orthonormal frame)."""
    subsample: int = 1000
    """Size of each random subsample for the univariate normality tests (<= 5000). The tests'
    null at each new size is simulated once per process (about a second per 1000)."""
    n_subsamples: int = 8
    """Disjoint subsamples drawn when there are more codes than ``subsample`` (else all codes
    once); at most n // subsample."""
    hz_max_n: int = 2000
    """Henze-Zirkler runs on at most this many codes (its cost is quadratic in n)."""
    probe_max_train: int = 20000
    """Probes train on at most this many codes (a stratified random subset)."""
    silhouette_max_n: int = 2000
    """Silhouette is computed on at most this many held-out codes."""


def _check_eval_config(cfg: EvalConfig) -> None:
    if not (0 < cfg.alpha < 1):
        raise ConfigError(f"alpha must lie in (0, 1), got {cfg.alpha}")
    if cfg.n_projections < 1:
        raise ConfigError(f"n_projections must be >= 1, got {cfg.n_projections}")
    if not (MIN_SAMPLES["dagostino"] <= cfg.subsample <= 5000):
        raise ConfigError(
            f"subsample must lie in [20, 5000] (D'Agostino-Pearson needs 20 samples, "
            f"Shapiro-Wilk's p-value is accurate up to 5000), got {cfg.subsample}"
        )
    for name in ("n_subsamples", "hz_max_n", "probe_max_train", "silhouette_max_n"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")


def _register() -> None:
    from ..config import register_validator

    register_validator(EvalConfig, _check_eval_config)


_register()
