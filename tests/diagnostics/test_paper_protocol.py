"""The paper's Figure-1 statistic (mean p-values over small subsamples) beside the calibrated
tests: both high on N(0, I), both low on a clustered sample, and where they disagree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from dimgen.cli import cli

from dimgen.diagnostics import EvalConfig, evaluate, paper_protocol
from dimgen.errors import ConfigError, DataError
from dimgen.infomax.sweep import SWEEP_METRICS, _summarise
from dimgen.plots import PAPER_PANEL, plot_sweep


def _clusters(n: int = 5000, seed: int = 0) -> np.ndarray:
    """Ten tight 2-D clusters, standardised to mean 0 and variance 1 per coordinate."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-3, 3, (10, 2))
    x = np.concatenate([rng.normal(c, 0.3, (n // 10, 2)) for c in centres])
    return (x - x.mean(0)) / x.std(0)


def test_both_protocols_are_high_on_samples_from_the_prior() -> None:
    x = np.random.default_rng(1).standard_normal((5000, 2))
    ev = evaluate(x)
    assert ev.passes and ev.normality.p >= 0.05 and ev.prior_match.p >= 0.05
    pp = ev.paper
    assert pp is not None
    # under the null every p-value is uniform: 200 of them average to 0.5 +- 0.06 (3 sd)
    for mean in (pp.dagostino_p, pp.shapiro_p, pp.henze_zirkler_p):
        assert mean == pytest.approx(0.5, abs=0.1)
    assert (pp.subsample_size, pp.n_resamples, pp.n_projections, pp.n) == (100, 100, 2, 5000)


def test_both_protocols_are_low_on_a_clustered_sample() -> None:
    ev = evaluate(_clusters())
    assert not ev.passes and ev.p < 1e-6
    pp = ev.paper
    assert pp is not None
    assert pp.dagostino_p < 0.1 and pp.shapiro_p < 0.05 and pp.henze_zirkler_p < 0.01


def test_the_calibrated_tests_reject_what_the_paper_statistic_shows_as_passing() -> None:
    """Heavy tails (Student t, 8 d.o.f.): 8 x 1000 codes per calibrated test see them, the mean
    p-value over subsamples of 100 barely moves from 0.5 (the issue's premise, measured)."""
    x = np.random.default_rng(2).standard_t(8, (5000, 2))
    ev = evaluate(x, probes=False)
    assert ev.normality.p < 1e-10
    pp = ev.paper
    assert pp is not None and pp.dagostino_p > 0.2 and pp.shapiro_p > 0.2


def test_uniform_prior_is_read_through_the_probability_integral_transform() -> None:
    u = np.random.default_rng(3).uniform(size=(3000, 3))
    pp = paper_protocol(u, "uniform")
    assert pp.dagostino_p == pytest.approx(0.5, abs=0.1)
    assert paper_protocol(u, "gaussian").henze_zirkler_p < 0.05  # a uniform is not Gaussian
    with pytest.raises(DataError):
        paper_protocol(u * 2, "uniform")
    with pytest.raises(ConfigError, match="prior must be"):
        paper_protocol(u, "laplace")


def test_settings_seed_and_high_dimension() -> None:
    x = np.random.default_rng(4).standard_normal((400, 3))
    cfg = EvalConfig(paper_subsample=50, paper_resamples=7, seed=5)
    a, b = paper_protocol(x, config=cfg), paper_protocol(x, config=cfg)
    assert a == b and (a.subsample_size, a.n_resamples, a.n_projections) == (50, 7, 3)
    assert paper_protocol(x, config=EvalConfig(paper_subsample=50, seed=6)) != a
    # subsamples of 100 cannot carry Henze-Zirkler at d = 200 (it needs more codes than d + 1)
    hi = paper_protocol(np.random.default_rng(5).standard_normal((300, 200)))
    assert hi.henze_zirkler_p is None and hi.n_projections == 16
    assert hi.dagostino_p == pytest.approx(0.5, abs=0.1)
    with pytest.raises(DataError, match="at least 20 codes"):
        paper_protocol(x[:10])


def test_sweep_figure_draws_the_paper_statistic(tmp_path: Path) -> None:
    rows = []
    for level, cap in ((0.1, 3.0), (1.0, 0.5)):
        row = {**dict.fromkeys(SWEEP_METRICS), "noise": level, "run": 0, "capacity_nats": cap}
        row.update({"paper.dagostino_p": 0.4, "paper.shapiro_p": 0.3, "probes.knn_acc": 0.5})
        rows.append(row)
    summary = _summarise(rows, [0.1, 1.0])
    assert summary[0]["paper.dagostino_p_mean"] == 0.4
    paper = plot_sweep(summary, tmp_path / "p.png", rows=rows, protocol="paper")
    calibrated = plot_sweep(summary, tmp_path / "c.png", rows=rows)
    # paper: D'Agostino, Shapiro and kNN points; calibrated: no p-value column filled, kNN only
    assert paper["run_points"] == 6 and calibrated["run_points"] == 2
    assert "not a test" in PAPER_PANEL


def test_cli_evaluate_leads_with_the_paper_protocol(tmp_path: Path) -> None:
    x = np.random.default_rng(6).standard_normal((600, 2))
    np.savez(tmp_path / "c.npz", codes=x)
    runner = CliRunner()
    res = runner.invoke(
        cli, ["evaluate", "--codes", str(tmp_path / "c.npz"), "--protocol", "paper"]
    )
    assert res.exit_code == 0, res.output
    first = res.stdout.splitlines()[1]
    assert first.startswith("paper protocol (mean p over 100 subsamples of 100 codes")
    res = runner.invoke(
        cli,
        ["evaluate", "--codes", str(tmp_path / "c.npz"), "--json", "--paper-resamples", "9"],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)  # stdout: the JSON alone (phases go to stderr)
    assert out["paper"]["n_resamples"] == 9 and 0 <= out["paper"]["shapiro_p"] <= 1
    res = runner.invoke(
        cli, ["evaluate", "--codes", str(tmp_path / "c.npz"), "--paper-subsample", "5"]
    )
    assert res.exit_code == 2 and "paper_subsample must lie in [20, 5000]" in res.stderr


def test_constant_codes_score_zero_not_a_perfect_shapiro_mean() -> None:
    """A zero-range projection is no Gaussian sample: scipy's Shapiro-Wilk reports p = 1 for it
    (and D'Agostino NaN), which made collapsed codes score a mean Shapiro p of 1.0."""
    pp = paper_protocol(np.ones((200, 2)))
    assert pp.dagostino_p == 0.0 and pp.shapiro_p == 0.0
    # and varying codes are untouched by the guard
    x = np.random.default_rng(7).standard_normal((200, 2))
    assert paper_protocol(x).shapiro_p == pytest.approx(0.5, abs=0.1)


def test_henze_zirkler_is_skipped_where_float64_cannot_resolve_it() -> None:
    """At d = 150 (subsamples of 1000, so d + 1 < m) the statistic is 1 + O(exp(-c d)): the
    mean p read 1.0, a number with no meaning; it is skipped as in the calibrated tests."""
    x = np.random.default_rng(8).standard_normal((1500, 150))
    pp = paper_protocol(x, config=EvalConfig(paper_subsample=1000, paper_resamples=3))
    assert pp.henze_zirkler_p is None and pp.henze_zirkler_p_sd is None
    assert pp.dagostino_p == pytest.approx(0.5, abs=0.15)
