"""The paper's Figure-1 statistic: normality p-values *averaged* over small random subsamples.

Butakov et al. (2025), section "Evaluation protocol" and Figure 1, test Gaussianity with
D'Agostino-Pearson and Shapiro-Wilk on random 1-D projections (directions uniform on the sphere),
"bootstrapped on small subsamples to average p-values", and report Henze-Zirkler. This module
reproduces that reading so that dimgen's numbers can be put beside the paper's:

* ``paper_resamples`` random subsamples of ``paper_subsample`` codes (each drawn without
  replacement, independently of the others, so subsamples overlap);
* in each, ``min(n_projections, d)`` independent directions uniform on the sphere; scipy's D'Agostino-Pearson
  and Shapiro-Wilk p-values of the projected codes (as scipy reports them, uncalibrated);
* Henze-Zirkler on each subsample (when it has more than d + 1 codes and float64 can resolve
  its statistic at this d, as for the calibrated tests; else ``None``: at d = 150 it read 1.0);
* each statistic is the *mean* p-value over subsamples (and directions), with its spread;
  a projection with zero range (collapsed codes) counts as p = 0.

This is a descriptive statistic, not a calibrated test: the mean of p-values has no known null
distribution, and on small subsamples the tests have little power, so codes that the calibrated
default (:func:`dimgen.diagnostics.evaluate`) rejects on 8 x 1000 codes can show mean p-values
near 0.5 here. Under the null the D'Agostino and Shapiro p-values are uniform, so their means
are near 0.5; Henze-Zirkler's log-normal p-value is conservative on small subsamples at larger d
(mean on N(0, I) codes, subsamples of 100: about 0.5 at d = 2, 0.37 at d = 16, 0.25 at d = 32).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy import stats

from ..errors import ConfigError, DataError
from .checks import _check_unit_interval, check_codes
from .normality import henze_zirkler, hz_resolvable
from .prior import to_gaussian
from .results import PaperProtocolResult
from .settings import MIN_SAMPLES, EvalConfig

__all__ = ["paper_protocol"]


def paper_protocol(
    codes: Any, prior: str = "gaussian", config: EvalConfig | None = None
) -> PaperProtocolResult:
    """Mean normality p-values over small random subsamples, as in the paper's Figure 1.

    Args:
        codes: (n, d) codes; for ``prior="uniform"`` in [0, 1], tested as Phi^-1(codes).
        prior: ``gaussian`` or ``uniform``.
        config: :class:`EvalConfig` (``paper_subsample``, ``paper_resamples``,
            ``n_projections``, ``seed``).

    Returns:
        :class:`PaperProtocolResult` with mean p-values in [0, 1] (descriptive, not a test).

    Raises:
        DataError: fewer than 20 codes (D'Agostino-Pearson's minimum), or bad codes.
        ConfigError: an unknown prior.

    Example:
        >>> import numpy as np
        >>> r = paper_protocol(np.random.default_rng(0).standard_normal((2000, 2)))
        >>> 0.3 < r.dagostino_p < 0.7
        True
    """
    if prior not in ("gaussian", "uniform"):
        raise ConfigError(f"prior must be 'gaussian' or 'uniform', got {prior!r}")
    cfg = config or EvalConfig()
    x = check_codes(codes)
    if prior == "uniform":
        _check_unit_interval(x)
        x = to_gaussian(x)
    n, d = x.shape
    if n < MIN_SAMPLES["dagostino"]:
        raise DataError(
            f"the paper protocol needs at least {MIN_SAMPLES['dagostino']} codes "
            f"(D'Agostino-Pearson's minimum), got {n}"
        )
    m = min(cfg.paper_subsample, n)
    k = min(cfg.n_projections, d)
    rng = np.random.default_rng([cfg.seed, 5])
    run_hz = hz_resolvable(m, d)  # as the calibrated tests: > d + 1 codes, d float64 resolves
    proj, hz = [], []
    for _ in range(cfg.paper_resamples):
        sub = x[rng.choice(n, m, replace=False)]
        g = rng.standard_normal((k, d))
        proj.append(sub @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T)  # (m, k): uniform
        if run_hz:
            hz.append(henze_zirkler(sub).p_value)
    y = np.concatenate(proj, axis=1)  # (m, resamples * k): the projections, tested in one call
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flat = np.ptp(y, axis=0) == 0  # a zero-range projection is no Gaussian sample, but
        # scipy reports Shapiro-Wilk p = 1 (and D'Agostino NaN) for it
        dag_a = np.nan_to_num(np.where(flat, 0.0, stats.normaltest(y, axis=0).pvalue), nan=0.0)
        sha_a = np.nan_to_num(np.where(flat, 0.0, stats.shapiro(y, axis=0).pvalue), nan=0.0)
    hz_a = np.asarray(hz, dtype=float)
    return PaperProtocolResult(
        dagostino_p=float(dag_a.mean()),
        shapiro_p=float(sha_a.mean()),
        henze_zirkler_p=float(hz_a.mean()) if run_hz else None,
        dagostino_p_sd=float(dag_a.std()),
        shapiro_p_sd=float(sha_a.std()),
        henze_zirkler_p_sd=float(hz_a.std()) if run_hz else None,
        subsample_size=m,
        n_resamples=cfg.paper_resamples,
        n_projections=k,
        n=n,
    )
