"""The sweep figure at few runs: points for every run, intervals only where they are informative."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from dimgen.config import EncoderConfig
from dimgen.infomax.sweep import SWEEP_METRICS, _summarise, runs_for_halfwidth, sweep_report
from dimgen.plots import BAND_MAX_FRACTION, plot_sweep


def _rows(runs: int, acc_sd: float, seed: int = 0) -> list[dict]:
    """Synthetic per-run rows at 3 noise levels (the shape run_sweep produces)."""
    rng = np.random.default_rng(seed)
    rows = []
    for level, cap in ((0.1, 3.0), (0.3, 1.5), (1.0, 0.5)):
        for r in range(runs):
            row = {"param": "sigma", "noise": level, "run": r, "capacity_nats": cap}
            row.update({k: None for k in ("normality.dagostino_p", "probes.mlp_acc")})
            row["probes.knn_acc"] = float(np.clip(0.2 + 0.2 * cap + acc_sd * rng.normal(), 0, 1))
            row["mi_lower_bound_nats"] = 0.8 * cap + 0.05 * rng.normal()
            row["kl_upper_bound_nats"] = cap - row["mi_lower_bound_nats"]
            row["normality.henze_zirkler_p"] = float(10 ** rng.uniform(-6, -1))
            row["normality.p"] = row["prior_match.p"] = row["normality.henze_zirkler_p"]
            rows.append(row)
    return rows


def _summary(rows: list[dict]) -> list[dict]:
    full = [{**dict.fromkeys(SWEEP_METRICS), **r} for r in rows]
    return _summarise(full, sorted({r["noise"] for r in rows}))


def test_two_runs_show_every_run_and_hide_uninformative_intervals(tmp_path: Path) -> None:
    rows = _rows(runs=2, acc_sd=0.05)
    summary = _summary(rows)
    # the premise of the issue: with 2 runs, t(0.995, 1) = 63.7 makes the accuracy intervals
    # wider than half the [0, 1] panel (clipped to [0, 1], they cover most of it)
    assert stats.t.ppf(0.995, 1) == pytest.approx(63.66, abs=0.01)
    acc_widths = [e["probes.knn_acc_hi"] - e["probes.knn_acc_lo"] for e in summary]
    assert sum(w > BAND_MAX_FRACTION for w in acc_widths) >= 2
    counts = plot_sweep(summary, tmp_path / "s.png", rows=rows, n_classes=10)
    # every run of each drawn series (kNN, MI, KL, Henze-Zirkler p, prior p) appears as a point
    assert counts["run_points"] == 5 * len(rows)
    # 2 runs never make an informative interval, however close the pair happens to be
    assert counts["intervals"] == 0 and counts["hidden_intervals"] >= 2
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_many_consistent_runs_draw_their_intervals(tmp_path: Path) -> None:
    rows = _rows(runs=30, acc_sd=0.01)
    summary = _summary(rows)
    counts = plot_sweep(summary, tmp_path / "s.png", rows=None)
    assert counts["run_points"] == 0
    # kNN accuracy and MI/KL intervals are narrow with 30 runs: all 3 levels x 3 series drawn
    assert counts["intervals"] >= 9


def test_runs_for_halfwidth_matches_the_t_interval() -> None:
    n = runs_for_halfwidth(0.05, 0.05)
    half = lambda k: stats.t.ppf(0.995, k - 1) * 0.05 / math.sqrt(k)  # noqa: E731
    assert half(n) <= 0.05 < half(n - 1)
    assert runs_for_halfwidth(0.0, 0.01) == 2
    assert runs_for_halfwidth(1.0, 1e-6, max_runs=50) == 50
    with pytest.raises(ValueError):
        runs_for_halfwidth(-1.0, 0.1)


def test_report_says_how_many_runs_a_readable_interval_needs() -> None:
    rows = _rows(runs=2, acc_sd=0.05)
    full = [{**dict.fromkeys(SWEEP_METRICS), **r} for r in rows]
    summary = _summarise(full, [0.1, 0.3, 1.0])
    text = sweep_report(EncoderConfig(), "sigma", 2, summary, 10, 0.05, rows=full)
    assert "mean +- 63.7 sd / sqrt(2)" in text
    sd = max(
        np.std([r["probes.knn_acc"] for r in rows if r["noise"] == lv], ddof=1)
        for lv in (0.1, 0.3, 1.0)
    )
    assert f"{runs_for_halfwidth(float(sd), 0.05)} runs for a half-width of 0.05 accuracy" in text
