"""Distribution-matching diagnostics: do the codes follow the prior, and what do they still know?

Two families of hypothesis tests are kept apart because they answer different questions:

* **normality** (shape): is the code distribution Gaussian, with *any* mean and covariance?
  D'Agostino-Pearson and Shapiro-Wilk on random 1-D projections (directions uniform on the
  sphere; random orthonormal frames of the whitened codes) over disjoint random subsamples, as
  in the paper; the Henze-Zirkler multivariate test; the same univariate tests on every
  coordinate.
* **prior match**: is it *the prior* N(0, I)? Kolmogorov-Smirnov of every coordinate and of
  random projections against N(0, 1) with known parameters, a chi-square test of mean 0 and a
  likelihood-ratio test of covariance I. A correlated Gaussian passes the first family and fails
  this one, as it should: it is a Gaussian, but not the prior.

For the uniform prior the codes are first mapped to z = Phi^-1(u) (the probability-integral
transform, a bijection of U[0,1]^d onto N(0,I)), and the Kolmogorov-Smirnov tests run on u
against U[0,1] directly (KS is invariant under monotone maps, so these p-values are the same).

Calibration. Averaging p-values, as often done, is not a test (under the null their mean is far
from uniform). Here:

1. every univariate p-value comes from a simulated null: D'Agostino-Pearson's and Shapiro-Wilk's
   statistics are location-scale invariant, so their null at sample size m is simulated once
   (Monte Carlo, 20000 draws, cached); scipy's approximations are off by up to 5x in the tail and
   a few percent in the bulk, which a merge over dozens of p-values amplifies. The covariance
   test's null is simulated too. Such p-values are exact up to Monte Carlo error down to ~1e-3;
   below that the tail is an extrapolation (approximate: measured up to 1.4-2x too small at
   m = 1000), which matters little after Fisher's merge (it depends on the bulk).
2. the many p-values of one test (projections x subsamples, coordinates) are independent under
   the prior by construction (orthonormal directions, disjoint subsamples, independent
   coordinates), so Fisher's method merges them exactly (:func:`fisher_combination`). It depends
   on the bulk of the p-values, not on their far tail, where no approximation is reliable; the
   Cauchy combination, tried first, was 1.6x liberal over 64 coordinates for that reason.
3. the few, positively dependent p-values of different tests on the same codes (the four tests of
   a family, then the two families) are merged by Simes' method (:func:`simes`), valid under
   independence and positive dependence. The overall p-value is ``simes([p_norm, p_prior])`` =
   ``min(2 min, max)``.

Measured rejection rates on samples from the prior are in the README and the tests.

References:
    Butakov et al. (2025), Efficient Distribution Matching of Representations via
    Noise-Injected Deep InfoMax, ICLR.
    Fisher (1932), Statistical Methods for Research Workers, 4th ed., section 21.1.
    Simes (1986), An improved Bonferroni procedure for multiple tests of significance,
    Biometrika 73(3), 751-754.
    Henze & Zirkler (1990), A class of invariant consistent tests for multivariate normality,
    Comm. Statist. Theory Methods 19(10), 3595-3617.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import linalg, special, stats

from .errors import ConfigError, DataError

__all__ = [
    "MIN_SAMPLES",
    "EvalConfig",
    "Evaluation",
    "HZResult",
    "NormalityResult",
    "PriorMatchResult",
    "ProbeResult",
    "TrainingBounds",
    "check_codes",
    "coordinate_pvalues",
    "covariance_test",
    "evaluate",
    "fisher_combination",
    "henze_zirkler",
    "mean_test",
    "normality_tests",
    "prior_tests",
    "probe_accuracies",
    "projection_pvalues",
    "random_directions",
    "silhouette",
    "simes",
    "to_gaussian",
]

#: Fewest samples each test accepts (D'Agostino-Pearson's kurtosis test is invalid below 20).
MIN_SAMPLES = {"dagostino": 20, "shapiro": 3, "ks": 2}

_TESTS = ("dagostino", "shapiro", "ks")


# ---------------------------------------------------------------------------------------------
# settings and results


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
    from .config import register_validator

    register_validator(EvalConfig, _check_eval_config)


_register()


@dataclass(frozen=True)
class HZResult:
    """Henze-Zirkler test: statistic, log-normal p-value, smoothing parameter ``beta``."""

    statistic: float
    p_value: float
    n: int
    dim: int
    beta: float
    degenerate: bool = False
    """True when the sample covariance is singular (the statistic is then set to 4n)."""


@dataclass(frozen=True)
class NormalityResult:
    """Is the code distribution Gaussian (any mean and covariance)? All p-values in [0, 1]."""

    dagostino_p: float
    """D'Agostino-Pearson on random projections (of the whitened codes) x subsamples,
    Fisher-combined."""
    shapiro_p: float
    """Shapiro-Wilk on the same projections and subsamples, Fisher-combined."""
    henze_zirkler_p: float
    henze_zirkler_stat: float
    marginal_p: float
    """D'Agostino-Pearson and Shapiro-Wilk on every coordinate: each Fisher-combined over
    coordinates and subsamples, then Simes over the two."""
    coordinate_dagostino_p: list[float]
    coordinate_shapiro_p: list[float]
    p: float
    """Simes' combination of the four p-values above."""
    passes: bool
    n: int
    n_projections: int
    n_subsamples: int
    subsample_size: int
    hz_n: int


@dataclass(frozen=True)
class PriorMatchResult:
    """Do the codes follow the prior itself (N(0, I), or U[0,1]^d through Phi^-1)?"""

    prior: str
    ks_reference: str
    """Distribution of the Kolmogorov-Smirnov tests: ``N(0,1)`` or ``U[0,1]``."""
    ks_p: float
    """Per-coordinate KS against the prior's marginal, Fisher-combined."""
    coordinate_ks_p: list[float]
    projection_ks_p: float
    """KS of random orthonormal projections of z (Phi^-1(u) for uniform) against N(0, 1),
    Fisher-combined."""
    mean_p: float
    """Chi-square test of E[z] = 0 (n |mean|^2 ~ chi2_d)."""
    cov_p: float
    """Likelihood-ratio test of Cov[z] = I, p-value from its simulated (Wishart) null."""
    cov_stat: float
    mean: list[float]
    """Per-coordinate mean of z."""
    var: list[float]
    """Per-coordinate variance of z."""
    p: float
    """Simes' combination of the four p-values above."""
    passes: bool


@dataclass(frozen=True)
class ProbeResult:
    """Accuracy of simple classifiers trained on codes and scored on held-out codes."""

    knn_acc: float
    gnb_acc: float
    mlp_acc: float
    linear_acc: float
    chance_acc: float
    """Accuracy of always predicting the most frequent training class."""
    n_classes: int
    n_train: int
    n_test: int
    protocol: str
    """``split`` (the codes' own train/test split) or ``stratified 50/50``."""


@dataclass(frozen=True)
class TrainingBounds:
    """The certificate from training: KL(codes || prior) <= capacity - MI lower bound."""

    capacity_nats: float
    mi_lower_bound_nats: float
    mi_lower_bound_stderr: float | None
    kl_upper_bound_nats: float
    noise: str | None = None
    """``sigma = ...`` or ``eps = ...``."""

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any]) -> TrainingBounds | None:
        """Read an encoder run's metrics.json; None if it lacks the bounds."""
        try:
            cap = float(metrics["capacity_nats"])
            mi = float(metrics["mi_lower_bound_nats"])
        except (KeyError, TypeError, ValueError):
            return None
        kl = metrics.get("kl_upper_bound_nats")
        se = metrics.get("mi_lower_bound_stderr")
        noise = None
        if metrics.get("sigma") is not None:
            noise = f"sigma = {metrics['sigma']:g}"
        elif metrics.get("eps") is not None:
            noise = f"eps = {metrics['eps']:g}"
        return cls(
            cap, mi, None if se is None else float(se), cap - mi if kl is None else float(kl), noise
        )


@dataclass(frozen=True)
class Evaluation:
    """Everything :func:`evaluate` found; ``to_dict()`` is what ``--json`` prints."""

    prior: str
    n: int
    """Codes tested (the held-out part when the codes carry a train/test split)."""
    dim: int
    tested_on: str
    alpha: float
    normality: NormalityResult
    prior_match: PriorMatchResult
    p: float
    """Overall p-value: Simes over the two families, min(2 min(p_norm, p_prior), max(...))."""
    passes: bool
    probes: ProbeResult | None = None
    silhouette: float | None = None
    n_classes: int | None = None
    log_n_classes: float | None = None
    """log(#classes): the capacity (nats) the codes need to keep the labels."""
    training: TrainingBounds | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """One line: does the evidence support codes ~ prior?"""
        target = _PRIOR_NAME[self.prior]
        if self.passes:
            return f"consistent with {target} (p = {_p(self.p)} >= alpha = {self.alpha:g})"
        return f"NOT consistent with {target} (p = {_p(self.p)} < alpha = {self.alpha:g})"

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (JSON-ready), with ``verdict`` added."""
        out = _finite(dataclasses.asdict(self))
        out["verdict"] = self.verdict
        return out


def _finite(obj: Any) -> Any:
    """Replace non-finite floats by None, recursively, so the dict is valid JSON."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


_PRIOR_NAME = {"gaussian": "N(0, I)", "uniform": "U[0, 1]^d"}


def _p(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.1e}"


# ---------------------------------------------------------------------------------------------
# input checks


def check_codes(codes: Any, name: str = "codes") -> np.ndarray:
    """Return codes as a finite float64 (n, d) array or raise :class:`DataError`."""
    if hasattr(codes, "detach"):
        codes = codes.detach().cpu().numpy()
    arr = np.asarray(codes)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise DataError(f"{name} must be real, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = " (use codes.reshape(-1, 1) for d = 1)" if arr.ndim == 1 else ""
        raise DataError(f"{name} must be a 2-D array (n, d), got shape {arr.shape}{hint}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{name} is empty (shape {arr.shape})")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr).all(1)
    if bad.any():
        rows = ", ".join(map(str, np.flatnonzero(bad)[:10]))
        raise DataError(f"{name} contain NaN or Inf in {int(bad.sum())} row(s) (rows {rows})")
    return arr


def _need(n: int, test: str, what: str = "codes") -> None:
    need = MIN_SAMPLES[test]
    if n < need:
        label = {"dagostino": "D'Agostino-Pearson", "shapiro": "Shapiro-Wilk", "ks": "KS"}[test]
        raise DataError(f"too few {what} for the {label} test: it needs at least {need}, got {n}")


def _check_labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"labels must be a 1-D array of {n} entries, got shape {y.shape}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not np.all(y == np.round(y)):
            raise DataError("labels must be integers (class indices)")
        y = y.astype(np.int64)
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"labels must be integers (class indices), got dtype {y.dtype}")
    return y


def _check_split(split: Any, n: int) -> np.ndarray:
    s = np.asarray(split).astype(str)
    if s.ndim != 1 or len(s) != n:
        raise DataError(f"split must be a 1-D array of {n} entries, got shape {s.shape}")
    return s


# ---------------------------------------------------------------------------------------------
# building blocks


def fisher_combination(pvalues: Any) -> float:
    """Fisher's combined p-value of independent p-values: -2 sum log p_i ~ chi2 with 2k d.o.f.

    Exact when the p-values are independent and uniform under the null, which the tests here
    guarantee by construction (see the module docstring). It reacts to the bulk of the p-values,
    so it stays exact when the far tail of each p-value (below ~1e-3) is only approximate.

    Example:
        >>> round(fisher_combination([0.5]), 6)
        0.5
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    if p.size == 0:
        raise ValueError("fisher_combination needs at least one p-value")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p-values must lie in [0, 1]")
    if (p == 0).any():
        return 0.0
    return float(stats.chi2.sf(-2.0 * np.log(p).sum(), 2 * p.size))


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


def random_directions(k: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """(k, d) unit vectors, each uniform on the sphere; rows of one frame are orthonormal.

    Rows come in blocks of up to d taken from Haar-random rotations (QR of a Gaussian matrix with
    the sign fix of Mezzadri 2007). Projections of N(0, I) data onto orthonormal directions are
    independent N(0, 1) samples, which keeps the combined p-values exact.
    """
    blocks, left = [], k
    while left > 0:
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        q = q * np.sign(np.diag(r))[None, :]
        blocks.append(q.T[: min(left, d)])
        left -= d
    return np.concatenate(blocks) if blocks else np.zeros((0, d))


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


def _subsamples(n: int, m: int, b: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Up to ``b`` disjoint random subsets of size m (one subset, all rows, if m >= n)."""
    if m >= n:
        return [np.arange(n)]
    perm = rng.permutation(n)
    return [np.sort(perm[i * m : (i + 1) * m]) for i in range(min(b, n // m))]


def _whiten(x: np.ndarray) -> np.ndarray | None:
    """Centre and whiten with the sample covariance (None if it is singular)."""
    xc = x - x.mean(0)
    cov = np.atleast_2d(xc.T @ xc / len(x))
    eig = np.linalg.eigvalsh(cov)
    if eig[0] <= 1e-12 * max(eig[-1], 1e-300):
        return None
    return linalg.solve_triangular(np.linalg.cholesky(cov), xc.T, lower=True).T


def projection_pvalues(
    x: np.ndarray,
    test: str,
    *,
    n_directions: int | None = None,
    whiten: bool = True,
    subsample: int | None = None,
    n_subsamples: int = 1,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """p-values of a univariate test on random 1-D projections over disjoint random subsamples.

    Each subsample gets a fresh random orthonormal frame (:func:`random_directions`). With
    ``whiten`` the codes are first centred and whitened by their sample covariance, so the
    projections of *any* Gaussian are (nearly) independent N(0, 1) samples and only the shape is
    tested; without it, projections of N(0, I) are exactly independent N(0, 1).

    Args:
        x: (n, d) data.
        test: ``dagostino`` (D'Agostino-Pearson K^2), ``shapiro`` (Shapiro-Wilk) or ``ks``
            (Kolmogorov-Smirnov against N(0, 1) with known parameters).
        n_directions: directions per subsample (default d; at most d keeps them orthonormal).
        whiten: whiten the data first (shape tests) or not (tests of the prior's scale).
        subsample: size of each subsample (all n if None or >= n).
        n_subsamples: disjoint subsamples drawn when ``subsample < n`` (at most n // subsample).
        rng: random generator for directions and subsamples.

    Returns:
        (b, k) p-values for b subsamples and k directions; zeros if the covariance is singular.
    """
    n, d = x.shape
    k = d if n_directions is None else n_directions
    m = n if subsample is None or subsample >= n else subsample
    _need(m, test if test in MIN_SAMPLES else "ks", "samples per subsample" if m < n else "codes")
    rng = rng if rng is not None else np.random.default_rng(0)
    parts = _subsamples(n, m, n_subsamples, rng)
    w = _whiten(x) if whiten else x
    if w is None:
        return np.zeros((len(parts), k))
    return np.stack([_univariate_p(w[idx] @ random_directions(k, d, rng).T, test) for idx in parts])


def coordinate_pvalues(
    x: np.ndarray,
    test: str,
    *,
    subsample: int | None = None,
    n_subsamples: int = 1,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """(b, d) p-values of a univariate test on every coordinate, over disjoint subsamples."""
    n = len(x)
    m = n if subsample is None or subsample >= n else subsample
    _need(m, test if test in MIN_SAMPLES else "ks", "samples per subsample" if m < n else "codes")
    parts = _subsamples(n, m, n_subsamples, rng if rng is not None else np.random.default_rng(0))
    return np.stack([_univariate_p(x[idx], test) for idx in parts])


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
    b = (((2 * d + 1) * n / 4) ** (1 / (d + 4))) / math.sqrt(2)
    b2 = b * b
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
    a = 1 + 2 * b2
    wb = (1 + b2) * (1 + 3 * b2)
    mu = 1 - a ** (-d / 2) * (1 + d * b2 / a + d * (d + 2) * b2**2 / (2 * a**2))
    var = (
        2 * (1 + 4 * b2) ** (-d / 2)
        + 2 * a ** (-d) * (1 + 2 * d * b2**2 / a**2 + 3 * d * (d + 2) * b2**4 / (4 * a**4))
        - 4 * wb ** (-d / 2) * (1 + 3 * d * b2**2 / (2 * wb) + d * (d + 2) * b2**4 / (2 * wb**2))
    )
    log_mu = math.log(math.sqrt(mu**4 / (var + mu**2)))
    log_sd = math.sqrt(math.log1p(var / mu**2))
    p = float(stats.lognorm.sf(hz, log_sd, scale=math.exp(log_mu)))
    return HZResult(float(hz), p, n, d, float(b), degenerate)


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


@functools.lru_cache(maxsize=16)
def _cov_null(n: int, d: int) -> np.ndarray:
    """Sorted chi-square p-values of the covariance LR statistic under N(0, I) at (n, d).

    (n - 1) S is Wishart(n - 1, I), drawn by Bartlett's decomposition in O(d^2) per draw, so
    this costs the same for any n.
    """
    rng = np.random.default_rng([20240918, n, d])
    nu = n - 1
    out = []
    for start in range(0, _NULL_DRAWS, 500):
        r = min(500, _NULL_DRAWS - start)
        a = np.tril(rng.standard_normal((r, d, d)), k=-1)
        diag = np.sqrt(rng.chisquare(nu - np.arange(d), size=(r, d)))
        a[:, np.arange(d), np.arange(d)] = diag
        out.append(_lr_cov(a @ np.swapaxes(a, 1, 2) / nu, nu)[1])
    return np.sort(np.concatenate(out))


def covariance_test(z: np.ndarray) -> tuple[float, float]:
    """Likelihood-ratio test of Cov[z] = I (mean unknown) for Gaussian z: (statistic, p-value).

    With S the unbiased sample covariance and nu = n - 1 the statistic is
    rho nu (tr S - log det S - d), rho = 1 - (2d^2 + 3d - 1) / (6 nu (d + 1)) (Bartlett's
    correction; Muirhead 1982, Thm 8.4.7), asymptotically chi-square with d (d + 1) / 2 degrees
    of freedom. That approximation is liberal when d is not small against n (7% at alpha = 0.05
    for d = 64, n = 500), so the p-value comes from the exact null: under N(0, I), (n - 1) S is
    Wishart, simulated by Monte Carlo (cached). A singular S (collapsed codes) gives p = 0.
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


# ---------------------------------------------------------------------------------------------
# the two families


def normality_tests(x: Any, config: EvalConfig | None = None) -> NormalityResult:
    """Is ``x`` Gaussian with some mean and covariance? Projections, marginals, Henze-Zirkler."""
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
    hz = henze_zirkler(hz_x)
    dag_p, sha_p = fisher_combination(dag), fisher_combination(sha)
    marg_p = simes([fisher_combination(mdag), fisher_combination(msha)])
    p = simes([dag_p, sha_p, marg_p, hz.p_value])
    return NormalityResult(
        dagostino_p=dag_p,
        shapiro_p=sha_p,
        henze_zirkler_p=hz.p_value,
        henze_zirkler_stat=hz.statistic,
        marginal_p=marg_p,
        coordinate_dagostino_p=[fisher_combination(c) for c in mdag.T],
        coordinate_shapiro_p=[fisher_combination(c) for c in msha.T],
        p=p,
        passes=p >= cfg.alpha,
        n=n,
        n_projections=k,
        n_subsamples=dag.shape[0],
        subsample_size=min(n, cfg.subsample),
        hz_n=hz.n,
    )


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


def _check_unit_interval(x: np.ndarray) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise DataError(
            f"uniform prior: codes must lie in [0, 1], found values in [{lo:.4g}, {hi:.4g}] "
            "(use --prior gaussian for unbounded codes)"
        )


# ---------------------------------------------------------------------------------------------
# downstream quality


def _stratified_subset(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of about ``k`` rows keeping class proportions (all rows if k >= len(y))."""
    if k >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    _, counts = np.unique(y, return_counts=True)
    strat = y if counts.min() >= 2 else None
    keep, _ = train_test_split(
        idx, train_size=k, stratify=strat, random_state=int(rng.integers(2**31))
    )
    return np.sort(keep)


def probe_accuracies(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seed: int = 0,
    max_train: int = 20000,
    protocol: str = "split",
) -> ProbeResult:
    """Train k-NN (k=5), Gaussian naive Bayes, a 1-hidden-layer MLP and a linear probe; score them.

    The MLP (64 ReLU units, Adam, at most 200 epochs) and the linear probe (multinomial
    logistic regression) see standardised codes; k-NN and naive Bayes the codes as they are.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y_train)) < 2:
        raise DataError("probes need at least 2 classes among the training labels")
    if len(x_test) == 0:
        raise DataError("probes need at least one held-out code")
    rng = np.random.default_rng([seed, 5])
    keep = _stratified_subset(y_train, max_train, rng)
    xt, yt = x_train[keep], y_train[keep]
    models = {
        "knn": KNeighborsClassifier(n_neighbors=min(5, len(xt))),
        "gnb": GaussianNB(),
        "mlp": make_pipeline(
            StandardScaler(),
            MLPClassifier(hidden_layer_sizes=(64,), max_iter=200, random_state=seed),
        ),
        "linear": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    }
    acc = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the probe budget is fixed on purpose
        for name, model in models.items():
            acc[name] = float(model.fit(xt, yt).score(x_test, y_test))
    classes, counts = np.unique(yt, return_counts=True)
    majority = classes[np.argmax(counts)]
    return ProbeResult(
        knn_acc=acc["knn"],
        gnb_acc=acc["gnb"],
        mlp_acc=acc["mlp"],
        linear_acc=acc["linear"],
        chance_acc=float(np.mean(y_test == majority)),
        n_classes=len(classes),
        n_train=len(xt),
        n_test=len(x_test),
        protocol=protocol,
    )


def silhouette(x: np.ndarray, y: np.ndarray, *, max_n: int = 2000, seed: int = 0) -> float | None:
    """Silhouette score of the labels on (a random subset of at most ``max_n``) codes.

    In [-1, 1]: near 1 when classes form tight, separated clusters, near 0 when they overlap.
    None when the labels have a single class (or as many classes as codes).
    """
    from sklearn.metrics import silhouette_score

    if len(x) > max_n:
        sel = np.random.default_rng([seed, 6]).choice(len(x), max_n, replace=False)
        x, y = x[sel], y[sel]
    k = len(np.unique(y))
    if k < 2 or k > len(x) - 1:
        return None
    return float(silhouette_score(x, y))


# ---------------------------------------------------------------------------------------------
# entry point


def evaluate(
    codes: Any,
    labels: Any = None,
    prior: str = "gaussian",
    *,
    split: Any = None,
    training: dict[str, Any] | TrainingBounds | None = None,
    probes: bool = True,
    config: EvalConfig | None = None,
    **overrides: Any,
) -> Evaluation:
    """Test whether codes follow ``prior`` and measure what they keep about ``labels``.

    The distribution tests use the held-out codes (``split == "test"``) when ``split`` marks
    both parts, since codes normalised on the training data match the prior's first two moments
    there by construction; otherwise all codes. Probes train on the ``train`` part and score on
    ``test`` (a stratified 50/50 split when there is no split).

    Args:
        codes: (n, d) array or tensor.
        labels: optional (n,) integer class labels (enables probes and silhouette).
        prior: ``gaussian`` (N(0, I)) or ``uniform`` (U[0,1]^d).
        split: optional (n,) array of ``train`` / ``test``.
        training: an encoder run's metrics (or :class:`TrainingBounds`) to report beside.
        probes: set False to skip the classifiers (faster).
        config: :class:`EvalConfig`; ``overrides`` replace single fields (``alpha=0.01``).

    Returns:
        :class:`Evaluation`.

    Example:
        >>> import numpy as np, dimgen
        >>> ev = dimgen.evaluate(np.random.default_rng(0).standard_normal((500, 2)))
        >>> ev.passes
        True
    """
    from .config import replace, validate

    if prior not in _PRIOR_NAME:
        raise ConfigError(f"prior must be 'gaussian' or 'uniform', got {prior!r}")
    cfg = validate(config or EvalConfig())
    cfg = replace(cfg, **overrides)
    x = check_codes(codes)
    n_all, d = x.shape
    y = None if labels is None else _check_labels(labels, n_all)
    s = None if split is None else _check_split(split, n_all)
    notes: list[str] = []
    tested_on = "all codes"
    test_rows = np.ones(n_all, bool)
    if s is not None and (s == "train").any() and (s == "test").any():
        test_rows = s == "test"
        tested_on = "held-out codes (split = test)"
    xt = x[test_rows]
    if prior == "uniform":
        _check_unit_interval(x)
    _need(len(xt), "dagostino", "held-out codes" if s is not None else "codes")
    if len(xt) < d + 2:
        raise DataError(
            f"too few codes for the multivariate tests: Henze-Zirkler and the covariance test "
            f"need at least d + 2 = {d + 2} codes, got {len(xt)}"
        )
    z = to_gaussian(xt) if prior == "uniform" else xt
    norm = normality_tests(z, cfg)
    pm = prior_tests(xt, prior, cfg)
    p_all = simes([norm.p, pm.p])
    if prior == "uniform":
        notes.append("normality tests ran on Phi^-1(codes) (probability-integral transform)")
    if norm.hz_n < norm.n:
        notes.append(f"Henze-Zirkler ran on a random subset of {norm.hz_n} of {norm.n} codes")

    probe_res, sil, n_cls, log_k = None, None, None, None
    if y is not None:
        classes = np.unique(y)
        n_cls = len(classes)
        log_k = math.log(n_cls) if n_cls > 1 else None
        sil = silhouette(xt, y[test_rows], max_n=cfg.silhouette_max_n, seed=cfg.seed)
        if probes and n_cls > 1:
            probe_res = _run_probes(x, y, s, cfg, notes)
        elif n_cls < 2:
            notes.append("labels have a single class: probes and silhouette skipped")
    bounds = (
        training
        if isinstance(training, TrainingBounds) or training is None
        else (TrainingBounds.from_metrics(training))
    )
    return Evaluation(
        prior=prior,
        n=len(xt),
        dim=d,
        tested_on=tested_on,
        alpha=cfg.alpha,
        normality=norm,
        prior_match=pm,
        p=p_all,
        passes=p_all >= cfg.alpha,
        probes=probe_res,
        silhouette=sil,
        n_classes=n_cls,
        log_n_classes=log_k,
        training=bounds,
        settings=dataclasses.asdict(cfg),
        notes=notes,
    )


def _run_probes(
    x: np.ndarray, y: np.ndarray, s: np.ndarray | None, cfg: EvalConfig, notes: list[str]
) -> ProbeResult | None:
    if s is not None and (s == "train").any() and (s == "test").any():
        tr, te = s == "train", s == "test"
        if len(np.unique(y[tr])) < 2:
            notes.append("training split has a single class: probes skipped")
            return None
        return probe_accuracies(
            x[tr],
            y[tr],
            x[te],
            y[te],
            seed=cfg.seed,
            max_train=cfg.probe_max_train,
            protocol="split",
        )
    from sklearn.model_selection import train_test_split

    if len(y) < 4:
        notes.append("fewer than 4 labelled codes: probes skipped")
        return None
    _, counts = np.unique(y, return_counts=True)
    strat = y if counts.min() >= 2 else None
    idx_tr, idx_te = train_test_split(
        np.arange(len(y)), test_size=0.5, stratify=strat, random_state=cfg.seed
    )
    if len(np.unique(y[idx_tr])) < 2:
        notes.append("the random training half has a single class: probes skipped")
        return None
    return probe_accuracies(
        x[idx_tr],
        y[idx_tr],
        x[idx_te],
        y[idx_te],
        seed=cfg.seed,
        max_train=cfg.probe_max_train,
        protocol="stratified 50/50",
    )
