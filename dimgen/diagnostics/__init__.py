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

The paper's own Figure-1 reading (mean p-values over small subsamples) is computed beside these
by :func:`paper_protocol`, as a descriptive statistic for comparison with the paper.

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

Measured rejection rates on samples from the prior are in docs/evaluation.md and the tests.

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

from importlib import import_module
from typing import Any

# Names re-exported from the modules of this package, imported on first use so that
# ``from dimgen.diagnostics import EvalConfig`` (the CLI validating options) needs no scipy.
_LAZY = {
    "MIN_SAMPLES": "settings",
    "EvalConfig": "settings",
    "Evaluation": "results",
    "HZResult": "results",
    "NormalityResult": "results",
    "PaperProtocolResult": "results",
    "PriorMatchResult": "results",
    "ProbeResult": "results",
    "TrainingBounds": "results",
    "check_codes": "checks",
    "fisher_combination": "pvalues",
    "simes": "pvalues",
    "_univariate_p": "pvalues",
    "random_directions": "projections",
    "projection_pvalues": "projections",
    "coordinate_pvalues": "projections",
    "henze_zirkler": "normality",
    "normality_tests": "normality",
    "covariance_test": "prior",
    "mean_test": "prior",
    "prior_tests": "prior",
    "to_gaussian": "prior",
    "probe_accuracies": "probes",
    "silhouette": "probes",
    "evaluate": "pipeline",
    "paper_protocol": "figure1",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "MIN_SAMPLES",
    "EvalConfig",
    "Evaluation",
    "HZResult",
    "NormalityResult",
    "PaperProtocolResult",
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
    "paper_protocol",
    "prior_tests",
    "probe_accuracies",
    "projection_pvalues",
    "random_directions",
    "silhouette",
    "simes",
    "to_gaussian",
]
