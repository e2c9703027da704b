"""Settings of the diagnostics: :class:`EvalConfig` (shared by API and CLI) and sample minima."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import MAX_SEED, bounded, one_of

__all__ = ["MIN_SAMPLES", "EvalConfig"]

#: Fewest samples each test accepts (D'Agostino-Pearson's kurtosis test is invalid below 20).
MIN_SAMPLES = {"dagostino": 20, "shapiro": 3, "ks": 2}


@dataclass
class EvalConfig:
    """Settings shared by :func:`evaluate`, ``dimgen evaluate`` and ``dimgen sweep``.

    Types, finiteness and ranges are declared with :func:`dimgen.config.bounded` and checked by
    :func:`dimgen.config.validate`.
    """

    alpha: float = bounded(0.05, 0.0, 1.0, low_open=True, high_open=True)
    """Significance level of every verdict."""
    seed: int = bounded(0, 0, MAX_SEED)
    """Seed for projection directions, subsamples and probes (results are reproducible)."""
    n_projections: int = bounded(16, 1, 10_000)
    """Random 1-D projections per subsample (at most d: one random orthonormal frame)."""
    subsample: int = bounded(
        1000,
        MIN_SAMPLES["dagostino"],
        5000,
        why="D'Agostino-Pearson needs 20 samples, Shapiro-Wilk's p-value is accurate up to 5000",
    )
    """Size of each random subsample for the univariate normality tests (<= 5000). The tests'
    null at each new size is simulated once per process (about a second per 1000)."""
    n_subsamples: int = bounded(8, 1, 10_000)
    """Disjoint subsamples drawn when there are more codes than ``subsample`` (else all codes
    once); at most n // subsample."""
    hz_max_n: int = bounded(2000, 1, 100_000)
    """Henze-Zirkler runs on at most this many codes (its cost is quadratic in n)."""
    probe_max_train: int = bounded(20000, 1, 10**8)
    """Probes train on at most this many codes (a stratified random subset)."""
    silhouette_max_n: int = bounded(2000, 1, 100_000)
    """Silhouette is computed on at most this many held-out codes (its cost is quadratic in n)."""
    paper_subsample: int = bounded(
        100, MIN_SAMPLES["dagostino"], 5000, why="D'Agostino-Pearson needs 20 samples"
    )
    """Codes per subsample of the paper's protocol (its "small bootstrap subsamples")."""
    paper_resamples: int = bounded(100, 1, 100_000)
    """Random subsamples of the paper's protocol whose p-values are averaged."""
    protocol: str = one_of("calibrated", "calibrated", "paper")
    """Which p-values lead the printed summary and the sweep figure: ``calibrated`` (the
    Fisher/Simes tests, the verdict) or ``paper`` (the Figure-1 means). Both are always computed
    and written; the verdict is always the calibrated one."""
