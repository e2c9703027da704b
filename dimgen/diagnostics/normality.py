"""Normality family: is the code distribution Gaussian, with any mean and covariance?

References:
    Henze & Zirkler (1990), A class of invariant consistent tests for multivariate normality,
    Comm. Statist. Theory Methods 19(10), 3595-3617.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import linalg, stats

from ..errors import DataError
from .checks import _need, check_codes
from .projections import coordinate_pvalues, projection_pvalues
from .pvalues import fisher_combination, simes
from .results import HZResult, NormalityResult
from .settings import EvalConfig

__all__ = ["henze_zirkler", "hz_resolvable", "normality_tests"]

#: Henze-Zirkler runs only where its null standard deviation, relative to its null mean, is at
#: least this: HZ = 1 + O(exp(-c d)) and float64 cannot resolve the spread beyond d ~ 100.
HZ_MIN_RELATIVE_SD = 1e-11


def _hz_b2(n: int, d: int) -> float:
    """Squared smoothing parameter b^2, b = ((2d + 1) n / 4)^(1 / (d + 4)) / sqrt 2."""
    return ((((2 * d + 1) * n / 4) ** (1 / (d + 4))) / math.sqrt(2)) ** 2


def _hz_null_moments(n: int, d: int) -> tuple[float, float]:
    """Mean and variance of HZ under multivariate normality (Henze & Zirkler 1990, as in R's
    MVN and pingouin)."""
    b2 = _hz_b2(n, d)
    a = 1 + 2 * b2
    wb = (1 + b2) * (1 + 3 * b2)
    mu = 1 - a ** (-d / 2) * (1 + d * b2 / a + d * (d + 2) * b2**2 / (2 * a**2))
    var = (
        2 * (1 + 4 * b2) ** (-d / 2)
        + 2 * a ** (-d) * (1 + 2 * d * b2**2 / a**2 + 3 * d * (d + 2) * b2**4 / (4 * a**4))
        - 4 * wb ** (-d / 2) * (1 + 3 * d * b2**2 / (2 * wb) + d * (d + 2) * b2**4 / (2 * wb**2))
    )
    return mu, var


def hz_resolvable(n: int, d: int) -> bool:
    """Whether Henze-Zirkler on n codes of dimension d is meaningful in float64: n > d and a
    null spread (sd / mean) of at least :data:`HZ_MIN_RELATIVE_SD`. Beyond d ~ 100 the statistic
    is 1 up to rounding for any data (measured: p = 1.000 on N(0, I) and on t(5) at d = 512)."""
    if n < max(d + 1, 3):
        return False
    mu, var = _hz_null_moments(n, d)
    return var > 0 and math.sqrt(var) / mu >= HZ_MIN_RELATIVE_SD


def henze_zirkler(x: Any) -> HZResult:
    """Henze-Zirkler test of multivariate normality (any mean and covariance).

    HZ = (1/n) sum_jk exp(-b^2 D_jk / 2) - 2 (1+b^2)^(-d/2) sum_j exp(-b^2 D_j / (2 (1+b^2)))
    + n (1+2b^2)^(-d/2), with D_jk the squared Mahalanobis distance between codes j and k and D_j
    that of code j to the mean (covariance normalised by n), b = ((2d+1) n / 4)^(1/(d+4)) / sqrt 2.
    The p-value uses Henze & Zirkler's log-normal approximation with the null mean and variance
    of HZ, as in R's MVN and pingouin (checked against their published values in the tests).
    A singular covariance gives HZ = 4n (MVN's convention) and p ~ 0.

    Args:
        x: (n, d) data with n > d.

    Returns:
        :class:`HZResult`.
    """
    x = check_codes(x, "data")
    n, d = x.shape
    if n < d + 1 or n < 3:
        raise DataError(
            f"too few codes for the Henze-Zirkler test: it needs more codes than dimensions "
            f"(at least {max(d + 1, 3)} for d = {d}), got {n}"
        )
    b2 = _hz_b2(n, d)
    b = math.sqrt(b2)
    xc = x - x.mean(0)
    cov = xc.T @ xc / n
    eig = np.linalg.eigvalsh(cov)
    degenerate = bool(eig[0] <= 1e-12 * max(eig[-1], 1e-300))
    if degenerate:
        hz = 4.0 * n
    else:
        chol = np.linalg.cholesky(cov)
        y = linalg.solve_triangular(chol, xc.T, lower=True).T  # whitened: D_jk = |y_j - y_k|^2
        dj = (y * y).sum(1)
        pair_sum = 0.0
        step = max(1, 4_000_000 // n)  # bounded memory for the (n, n) pair matrix
        for i in range(0, n, step):
            djk = dj[i : i + step, None] + dj[None, :] - 2.0 * (y[i : i + step] @ y.T)
            pair_sum += float(np.exp(-0.5 * b2 * np.maximum(djk, 0.0)).sum())
        hz = (
            pair_sum / n
            - 2.0 * (1 + b2) ** (-d / 2) * float(np.exp(-b2 * dj / (2 * (1 + b2))).sum())
            + n * (1 + 2 * b2) ** (-d / 2)
        )
    mu, var = _hz_null_moments(n, d)
    log_mu = math.log(math.sqrt(mu**4 / (var + mu**2)))
    log_sd = math.sqrt(math.log1p(var / mu**2))
    p = float(stats.lognorm.sf(hz, log_sd, scale=math.exp(log_mu)))
    return HZResult(float(hz), p, n, d, float(b), degenerate)


def normality_tests(x: Any, config: EvalConfig | None = None) -> NormalityResult:
    """Is ``x`` Gaussian with some mean and covariance? Projections, marginals, Henze-Zirkler.

    Henze-Zirkler runs on at most ``cfg.hz_max_n`` codes, and only where :func:`hz_resolvable`
    (else its fields are None, ``hz_n`` is 0, and Simes merges the other three p-values).
    """
    cfg = config or EvalConfig()
    x = check_codes(x)
    n, d = x.shape
    _need(n, "dagostino")
    k = min(cfg.n_projections, d)
    kw = {"subsample": cfg.subsample, "n_subsamples": cfg.n_subsamples}
    # Same seed -> same subsamples and frames for both tests; marginals use their own subsamples.
    dag = projection_pvalues(
        x, "dagostino", n_directions=k, rng=np.random.default_rng([cfg.seed, 1]), **kw
    )
    sha = projection_pvalues(
        x, "shapiro", n_directions=k, rng=np.random.default_rng([cfg.seed, 1]), **kw
    )
    mdag = coordinate_pvalues(x, "dagostino", rng=np.random.default_rng([cfg.seed, 2]), **kw)
    msha = coordinate_pvalues(x, "shapiro", rng=np.random.default_rng([cfg.seed, 2]), **kw)
    hz_x = x
    if n > cfg.hz_max_n:
        hz_x = x[np.random.default_rng([cfg.seed, 3]).choice(n, cfg.hz_max_n, replace=False)]
    # Skipped (None) where float64 cannot resolve it (large d) or there are too few codes.
    hz = henze_zirkler(hz_x) if hz_resolvable(*hz_x.shape) else None
    dag_p, sha_p = fisher_combination(dag), fisher_combination(sha)
    marg_p = simes([fisher_combination(mdag), fisher_combination(msha)])
    p = simes([dag_p, sha_p, marg_p] + ([] if hz is None else [hz.p_value]))
    return NormalityResult(
        dagostino_p=dag_p,
        shapiro_p=sha_p,
        henze_zirkler_p=None if hz is None else hz.p_value,
        henze_zirkler_stat=None if hz is None else hz.statistic,
        marginal_p=marg_p,
        coordinate_dagostino_p=[fisher_combination(c) for c in mdag.T],
        coordinate_shapiro_p=[fisher_combination(c) for c in msha.T],
        p=p,
        passes=p >= cfg.alpha,
        n=n,
        n_projections=k,
        n_subsamples=dag.shape[0],
        subsample_size=min(n, cfg.subsample),
        hz_n=0 if hz is None else hz.n,
    )
