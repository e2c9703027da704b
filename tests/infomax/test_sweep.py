"""The noise sweep end to end on digits (2 noise levels, tiny training), and its helpers."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from dimgen.cli import cli
from scipy import stats

from dimgen.errors import ConfigError
from dimgen.infomax.sweep import interval99, parse_levels

_TINY = ["--set", "epochs=2", "--set", "critic=separable", "--set", "eval_batches=2", "--quiet"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_sweep_runs_end_to_end_on_digits(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", "--sigmas", "0.3,1", "--runs", "1", "--out", str(out), *_TINY]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    rows = _rows(out / "sweep.csv")
    assert [float(r["noise"]) for r in rows] == [0.3, 1.0]
    for r in rows:  # the capacity of the Gaussian channel, d = 2: log(1 + 1/sigma^2)
        assert float(r["capacity_nats"]) == pytest.approx(math.log1p(1 / float(r["noise"]) ** 2))
        assert 0 <= float(r["normality.henze_zirkler_p"]) <= 1
        assert 0 <= float(r["probes.knn_acc"]) <= 1
        assert (out / r["path"] / "evaluation.json").is_file()
    summary = _rows(out / "sweep_summary.csv")
    assert len(summary) == 2 and summary[0]["runs"] == "1"
    for s, r in zip(summary, rows, strict=True):  # one run: mean = the run, geometric for p
        assert float(s["normality.p_mean"]) == pytest.approx(float(r["normality.p"]))
        assert float(s["normality.p_gmean"]) == pytest.approx(float(r["normality.p"]), rel=1e-6)
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "| sigma | capacity C |" in report and "log(#classes)" in report
    assert json.loads((out / "run.json").read_text())["kind"] == "sweep"
    # rerunning reuses the finished runs (same numbers) instead of failing on non-empty folders
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert _rows(out / "sweep.csv") == rows
    # where the data lives is not a setting: the sweep continues from another data root
    res = CliRunner().invoke(cli, [*args, "--set", f"data_root={tmp_path}"])
    assert res.exit_code == 0, res.output
    assert _rows(out / "sweep.csv") == rows
    # a different config in the same folder is refused
    res = CliRunner().invoke(cli, [*args[:-1], "--set", "lr=0.01", "--quiet"])
    assert res.exit_code == 2 and "different config" in res.stderr


def test_sweep_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["sweep", "--epses", "0.1", "--out", str(tmp_path / "a")])
    assert res.exit_code == 2 and "uniform prior" in res.stderr
    res = runner.invoke(cli, ["sweep", "--out", str(tmp_path / "a")])
    assert res.exit_code == 2 and "--sigmas" in res.stderr
    res = runner.invoke(
        cli, ["sweep", "--prior", "uniform", "--epses", "0.1,0.9", "--out", str(tmp_path / "a")]
    )
    assert res.exit_code == 2 and "eps must lie in (0, 0.5]" in res.stderr


def test_parse_levels_and_interval99() -> None:
    assert parse_levels("0.05, 0.1,1", "--sigmas") == [0.05, 0.1, 1.0]
    for bad in ("", "a,b", "0.1,0.1", "0,1", "-1", "nan"):
        with pytest.raises(ConfigError):
            parse_levels(bad, "--sigmas")
    vals = [1.0, 2.0, 4.0]
    mean, lo, hi = interval99(vals)
    half = stats.t.ppf(0.995, 2) * stats.tstd(vals) / math.sqrt(3)
    assert (mean, lo, hi) == pytest.approx((7 / 3, 7 / 3 - half, 7 / 3 + half))
    assert interval99([0.5]) == (0.5, 0.5, 0.5)
    assert all(math.isnan(v) for v in interval99([None]))


def test_interval99_of_tiny_p_values_does_not_collapse() -> None:
    """Two runs with p = 9e-241 and 0 had sd 0 (the squares underflow), so sweep_summary.csv
    showed a zero-width interval lo = hi = mean; the spread is scaled before squaring."""
    mean, lo, hi = (x / 1e-241 for x in interval99([8.96e-241, 0.0]))  # approx's abs is 1e-12
    assert mean == pytest.approx(4.48)
    assert hi == pytest.approx(mean + 63.657 * 8.96 / 2, rel=1e-3)  # t(.995, 1) sd / sqrt 2
    assert lo == pytest.approx(2 * mean - hi)
    assert interval99([1.0, 2.0, 3.0])[2] == pytest.approx(2.0 + 9.925 / math.sqrt(3), rel=1e-3)
