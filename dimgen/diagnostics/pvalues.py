"""p-value machinery: univariate p-values made exact by a simulated null, and the two ways of
merging p-values (Fisher for independent ones, Simes for positively dependent ones).

References:
    Fisher (1932), Statistical Methods for Research Workers, 4th ed., section 21.1.
    Simes (1986), An improved Bonferroni procedure for multiple tests of significance,
    Biometrika 73(3), 751-754.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["fisher_combination", "simes"]

_TESTS = ("dagostino", "shapiro", "ks")


def fisher_combination(pvalues: Any) -> float:
    """Fisher's combined p-value of independent p-values: -2 sum log p_i ~ chi2 with 2k d.o.f.

    Exact when the p-values are independent and uniform under the null, which the tests here
    guarantee by construction (see :mod:`dimgen.diagnostics`). It reacts to the bulk of the p-values,
    so it stays exact when the far tail of each p-value (below ~1e-3) is only approximate.
    Computed by ``scipy.stats.combine_pvalues(method="fisher")``; this function adds the checks
    (empty, NaN, outside [0, 1]: ``ValueError``) and returns 0 for a p-value of 0.

    Example:
        >>> round(fisher_combination([0.5]), 6)
        0.5
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    if p.size == 0:
        raise ValueError("fisher_combination needs at least one p-value")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p-values must lie in [0, 1]")
    if (p == 0).any():  # log 0: scipy would warn and return the same 0
        return 0.0
    return float(stats.combine_pvalues(p, method="fisher").pvalue)


def simes(pvalues: Any) -> float:
    """Simes' combined p-value min_i k p_(i) / i of k p-values (p_(1) <= ... <= p_(k)).

    Exact for independent p-values and valid (conservative) for positively dependent ones
    (Sarkar 1998), such as several tests of one hypothesis on the same data; more powerful than
    Bonferroni's k min_i p_i, which it never exceeds.

    Example:
        >>> simes([0.01, 0.04])
        0.02
    """
    p = np.sort(np.asarray(pvalues, dtype=float).ravel())
    if p.size == 0:
        raise ValueError("simes needs at least one p-value")
    if np.isnan(p).any() or p[0] < 0 or p[-1] > 1:
        raise ValueError("p-values must lie in [0, 1]")
    return float(min(1.0, (p * p.size / np.arange(1, p.size + 1)).min()))


_NULL_DRAWS = 20000
_NULL_TAIL = 20


@functools.lru_cache(maxsize=32)
def _null_pvalues(test: str, m: int) -> np.ndarray:
    """Sorted scipy p-values of ``test`` (``dagostino`` or ``shapiro``) on ``_NULL_DRAWS``
    N(0, 1) samples of size m: the exact null (both statistics are location-scale invariant)."""
    rng = np.random.default_rng([20240917, m, _TESTS.index(test)])
    out = np.empty(_NULL_DRAWS)
    chunk = max(1, 2_000_000 // m)
    for i in range(0, _NULL_DRAWS, chunk):
        r = min(chunk, _NULL_DRAWS - i)
        out[i : i + r] = _scipy_p(rng.standard_normal((m, r)), test)
    return np.sort(out)


def _mc_calibrate(p: Any, null: np.ndarray) -> np.ndarray:
    """Map approximate p-values to Monte Carlo ones, given the sorted approximate p-values
    ``null`` of the same statistic on data drawn from the null.

    (1 + #{null <= p}) / (1 + draws) is exact down to ~20 / draws; below the ``_NULL_TAIL``-th
    smallest null p-value the approximate p-value is scaled by the ratio observed there.
    """
    p = np.asarray(p, dtype=float)
    r = len(null)
    mc = (np.searchsorted(null, p, side="right") + 1) / (r + 1)
    q = null[_NULL_TAIL - 1]
    tail = p * ((_NULL_TAIL + 1) / (r + 1)) / q
    return np.clip(np.where(p < q, tail, mc), 0.0, 1.0)


def _scipy_p(y: np.ndarray, test: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if test == "dagostino":
            return np.atleast_1d(stats.normaltest(y, axis=0).pvalue)
        if test == "shapiro":
            return np.atleast_1d(stats.shapiro(y, axis=0).pvalue)
        if test == "ks":
            return np.atleast_1d(stats.kstest(y, "norm", axis=0).pvalue)
        if test == "ks_uniform":
            return np.atleast_1d(stats.kstest(y, "uniform", axis=0).pvalue)
    raise ValueError(f"unknown test {test!r}")


def _univariate_p(y: np.ndarray, test: str) -> np.ndarray:
    """Exact p-values of ``test`` for every column of (m, k) ``y``; a constant column gets p = 0.

    D'Agostino-Pearson's and Shapiro-Wilk's p-values are mapped through their simulated null at
    sample size m (scipy's chi-square approximation of K^2 is liberal by up to 5x at p = 1e-3;
    Royston's approximation for W is off by a few percent); KS p-values are exact already.
    """
    p = np.asarray(_scipy_p(y, test), dtype=float)
    if test in ("dagostino", "shapiro"):
        p = _mc_calibrate(np.nan_to_num(p, nan=1.0), _null_pvalues(test, len(y)))
        p = np.where(np.ptp(y, axis=0) == 0, 0.0, p)  # a point mass is not Gaussian
    return np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0)
