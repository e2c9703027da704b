"""Prior-match family: do the codes follow the prior itself (N(0, I), or U[0, 1]^d through
Phi^-1)? KS per coordinate and projection, a chi-square mean test, an LR covariance test."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from scipy import special, stats

from ..errors import ConfigError, DataError
from .checks import _check_unit_interval, _need, check_codes
from .projections import projection_pvalues
from .pvalues import _NULL_DRAWS, _mc_calibrate, _univariate_p, fisher_combination, simes
from .results import PriorMatchResult
from .settings import EvalConfig

__all__ = ["covariance_test", "mean_test", "prior_tests", "to_gaussian"]


def mean_test(z: np.ndarray) -> float:
    """p-value of E[z] = 0 when Cov[z] = I: n |mean|^2 ~ chi2_d exactly under N(0, I)."""
    n, d = z.shape
    return float(stats.chi2.sf(n * float(z.mean(0) @ z.mean(0)), d))


def _lr_cov(s: np.ndarray, nu: int) -> tuple[np.ndarray, np.ndarray]:
    """Bartlett-corrected LR statistic of Cov = I and its chi-square p-value, batched over the
    leading axis of ``s`` (..., d, d) (unbiased covariances on nu degrees of freedom)."""
    d = s.shape[-1]
    sign, logdet = np.linalg.slogdet(s)
    rho = 1 - (2 * d * d + 3 * d - 1) / (6 * nu * (d + 1))
    stat = rho * nu * (np.trace(s, axis1=-2, axis2=-1) - logdet - d)
    stat = np.where(sign > 0, stat, np.inf)
    return stat, stats.chi2.sf(stat, d * (d + 1) / 2)


def _lr_cov_bartlett(diag2: np.ndarray, off2: np.ndarray, nu: int) -> np.ndarray:
    """Chi-square p-values of the LR statistic from Bartlett factors, batched over draws.

    With (n - 1) S = T T^T, T lower triangular (Bartlett's decomposition of a Wishart(nu, I)
    matrix), tr S = (sum_i T_ii^2 + sum_{i>j} T_ij^2) / nu and log det S = sum_i log T_ii^2 -
    d log nu: the statistic of :func:`_lr_cov` without forming S. ``diag2`` (r, d) holds T_ii^2,
    ``off2`` (r,) the sum of the squared off-diagonal entries.
    """
    d = diag2.shape[-1]
    rho = 1 - (2 * d * d + 3 * d - 1) / (6 * nu * (d + 1))
    trace = (diag2.sum(-1) + off2) / nu
    logdet = np.log(diag2).sum(-1) - d * math.log(nu)
    stat = rho * nu * (trace - logdet - d)
    return stats.chi2.sf(stat, d * (d + 1) / 2)


@functools.lru_cache(maxsize=16)
def _cov_null(n: int, d: int) -> np.ndarray:
    """Sorted chi-square p-values of the covariance LR statistic under N(0, I) at (n, d).

    (n - 1) S is Wishart(n - 1, I); by Bartlett's decomposition (Muirhead 1982, Thm 3.2.14)
    T_ii^2 ~ chi2(nu - i + 1) and T_ij ~ N(0, 1) (i > j), all independent, so the trace and
    log-determinant the statistic needs are a sum of d chi-squares, one chi-square on
    d (d - 1) / 2 degrees of freedom and a sum of d log chi-squares: O(d) per draw, exact, at
    any n and d (the whole matrix, O(d^3) per draw, took hours at d = 2048).
    """
    rng = np.random.default_rng([20240918, n, d])
    nu = n - 1
    out = []
    for start in range(0, _NULL_DRAWS, 500):
        r = min(500, _NULL_DRAWS - start)
        diag2 = rng.chisquare(nu - np.arange(d), size=(r, d))
        off2 = rng.chisquare(d * (d - 1) / 2, size=r) if d > 1 else np.zeros(r)
        out.append(_lr_cov_bartlett(diag2, off2, nu))
    return np.sort(np.concatenate(out))


def covariance_test(z: np.ndarray) -> tuple[float, float]:
    """Likelihood-ratio test of Cov[z] = I (mean unknown) for Gaussian z: (statistic, p-value).

    With S the unbiased sample covariance and nu = n - 1 the statistic is
    rho nu (tr S - log det S - d), rho = 1 - (2d^2 + 3d - 1) / (6 nu (d + 1)) (Bartlett's
    correction; Muirhead 1982, Thm 8.4.7), asymptotically chi-square with d (d + 1) / 2 degrees
    of freedom. That approximation is liberal when d is not small against n (7% at alpha = 0.05
    for d = 64, n = 500), so the p-value comes from the exact null: under N(0, I), (n - 1) S is
    Wishart, simulated by Monte Carlo through Bartlett's decomposition in O(d) per draw
    (cached). A singular S (collapsed codes) gives p = 0.
    """
    n, d = z.shape
    if n < d + 2:
        raise DataError(
            f"too few codes for the covariance test: it needs at least d + 2 = {d + 2}, got {n}"
        )
    nu = n - 1
    s = np.atleast_2d(np.cov(z, rowvar=False))
    stat, p = _lr_cov(s, nu)
    if not np.isfinite(stat):
        return math.inf, 0.0
    return float(stat), float(_mc_calibrate(p, _cov_null(n, d)))


def to_gaussian(u: np.ndarray) -> np.ndarray:
    """Probability-integral transform of codes in [0, 1] to N(0, 1): z = Phi^-1(u).

    Codes at exactly 0 or 1 (float32 saturation) are clipped to [1e-9, 1 - 1e-9] first.
    """
    return special.ndtri(np.clip(u, 1e-9, 1 - 1e-9))


def prior_tests(
    codes: Any, prior: str = "gaussian", config: EvalConfig | None = None
) -> PriorMatchResult:
    """Do the codes follow the prior itself? KS per coordinate and projection, mean and covariance.

    For ``uniform`` the KS tests run on the codes against U[0, 1]; the projection, mean and
    covariance tests on z = Phi^-1(codes) against N(0, I).
    """
    cfg = config or EvalConfig()
    x = check_codes(codes)
    n, d = x.shape
    _need(n, "ks")
    if prior == "gaussian":
        z = x
        coord = _univariate_p(x, "ks")
        ref = "N(0,1)"
    elif prior == "uniform":
        _check_unit_interval(x)
        z = to_gaussian(x)
        coord = _univariate_p(x, "ks_uniform")
        ref = "U[0,1]"
    else:
        raise ConfigError(f"prior must be 'gaussian' or 'uniform', got {prior!r}")
    proj = projection_pvalues(
        z,
        "ks",
        n_directions=min(cfg.n_projections, d),
        whiten=False,
        rng=np.random.default_rng([cfg.seed, 4]),
    )
    cov_stat, cov_p = covariance_test(z)
    ks_p = fisher_combination(coord)
    proj_p = fisher_combination(proj)
    mean_p = mean_test(z)
    p = simes([ks_p, proj_p, mean_p, cov_p])
    return PriorMatchResult(
        prior=prior,
        ks_reference=ref,
        ks_p=ks_p,
        coordinate_ks_p=[float(v) for v in coord],
        projection_ks_p=proj_p,
        mean_p=mean_p,
        cov_p=cov_p,
        cov_stat=cov_stat,
        mean=z.mean(0).tolist(),
        var=z.var(0, ddof=1).tolist(),
        p=p,
        passes=p >= cfg.alpha,
    )
