"""The entry point :func:`evaluate`: both test families, probes and the training certificate."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .checks import _check_labels, _check_split, _check_unit_interval, _need, check_codes
from .figure1 import paper_protocol
from .normality import normality_tests
from .prior import prior_tests, to_gaussian
from .probes import _run_probes, silhouette
from .pvalues import simes
from .results import _PRIOR_NAME, Evaluation, TrainingBounds
from .settings import EvalConfig

__all__ = ["evaluate"]


@contextlib.contextmanager
def _phase(what: str, show: bool, index: int, count: int) -> Iterator[None]:
    """``evaluate: [i/n] what ...`` then ``... done (T s)`` on stderr when ``show``: the format
    of :func:`dimgen.training.phases.phase`, which the layering keeps out of reach here."""
    if not show:
        yield
        return
    label = f"evaluate: [{index}/{count}] {what}"
    print(f"{label} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    yield
    print(f"{label} done ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)


def evaluate(
    codes: Any,
    labels: Any = None,
    prior: str = "gaussian",
    *,
    split: Any = None,
    training: dict[str, Any] | TrainingBounds | None = None,
    probes: bool = True,
    config: EvalConfig | None = None,
    progress: bool = False,
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
        progress: one line per phase (tests, paper protocol, probes) on stderr, with its time.

    Returns:
        :class:`Evaluation`.

    Example:
        >>> import numpy as np, dimgen
        >>> ev = dimgen.evaluate(np.random.default_rng(0).standard_normal((500, 2)))
        >>> ev.passes
        True
    """
    from ..config import replace, validate

    if prior not in _PRIOR_NAME:
        raise ConfigError(f"prior must be 'gaussian' or 'uniform', got {prior!r}")
    cfg = validate(config if config is not None else EvalConfig(), EvalConfig)
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
    with _phase(f"normality and prior-match tests on {len(xt)} codes", progress, 1, 3):
        norm = normality_tests(z, cfg)
        pm = prior_tests(xt, prior, cfg)
    p_all = simes([norm.p, pm.p])
    with _phase(f"paper protocol ({cfg.paper_resamples} subsamples)", progress, 2, 3):
        paper = paper_protocol(xt, prior, cfg)
    if prior == "uniform":
        notes.append("normality tests ran on Phi^-1(codes) (probability-integral transform)")
    if norm.henze_zirkler_p is None:
        notes.append(
            f"Henze-Zirkler skipped: at d = {d} on {min(norm.n, cfg.hz_max_n)} codes float64 "
            "cannot resolve its statistic (or there are <= d + 1 codes)"
        )
    elif norm.hz_n < norm.n:
        notes.append(f"Henze-Zirkler ran on a random subset of {norm.hz_n} of {norm.n} codes")

    probe_res, sil, n_cls, log_k = None, None, None, None
    if y is not None:
        classes = np.unique(y)
        n_cls = len(classes)
        log_k = math.log(n_cls) if n_cls > 1 else None
        what = "silhouette and probes (kNN, Gaussian NB, MLP, linear)" if probes else "silhouette"
        with _phase(what, progress, 3, 3):
            sil = silhouette(xt, y[test_rows], max_n=cfg.silhouette_max_n, seed=cfg.seed)
            if probes and n_cls > 1:
                probe_res = _run_probes(x, y, s, cfg, notes)
        if n_cls < 2:
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
        paper=paper,
        settings=dataclasses.asdict(cfg),
        notes=notes,
    )
