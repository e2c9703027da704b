"""Result types of the diagnostics: plain frozen dataclasses, JSON-ready via ``to_dict``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Evaluation",
    "HZResult",
    "NormalityResult",
    "PaperProtocolResult",
    "PriorMatchResult",
    "ProbeResult",
    "TrainingBounds",
]


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
    henze_zirkler_p: float | None
    """None where it was skipped: fewer than d + 2 codes, or d too large for float64 to resolve
    the statistic (:func:`dimgen.diagnostics.normality.hz_resolvable`, d above ~100)."""
    henze_zirkler_stat: float | None
    marginal_p: float
    """D'Agostino-Pearson and Shapiro-Wilk on every coordinate: each Fisher-combined over
    coordinates and subsamples, then Simes over the two."""
    coordinate_dagostino_p: list[float]
    coordinate_shapiro_p: list[float]
    p: float
    """Simes' combination of the four p-values above (three when Henze-Zirkler was skipped)."""
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
    """Simes' combination of the four p-values above (three when Henze-Zirkler was skipped)."""
    passes: bool


@dataclass(frozen=True)
class PaperProtocolResult:
    """The paper's Figure-1 statistic: mean p-values over small random subsamples.

    A descriptive statistic, not a calibrated test (see :mod:`dimgen.diagnostics.figure1`):
    under the null the D'Agostino and Shapiro p-values are uniform, so their means are near 0.5
    (the Henze-Zirkler mean is lower at larger d: about 0.37 at d = 16, 0.25 at d = 32, since its
    approximate p-value is conservative on small subsamples); non-Gaussian codes drive them to 0.
    """

    dagostino_p: float
    """Mean scipy D'Agostino-Pearson p-value over subsamples x random directions."""
    shapiro_p: float
    """Mean scipy Shapiro-Wilk p-value over the same projections."""
    henze_zirkler_p: float | None
    """Mean Henze-Zirkler p-value over the subsamples (None when a subsample has <= d + 1 codes)."""
    dagostino_p_sd: float
    shapiro_p_sd: float
    henze_zirkler_p_sd: float | None
    subsample_size: int
    n_resamples: int
    n_projections: int
    """Random directions per subsample (min(n_projections, d))."""
    n: int
    """Codes the subsamples were drawn from."""


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
    paper: PaperProtocolResult | None = None
    """The paper's Figure-1 statistic (mean p-values over small subsamples; not a test)."""
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
