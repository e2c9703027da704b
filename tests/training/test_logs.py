"""Training logs written by the harness: log.csv per window, resume without duplicates,
TensorBoard scalars and sample grids, the training-curve plot."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from dimgen.cli import cli

from dimgen.config import EncoderConfig
from dimgen.errors import DimgenError
from dimgen.infomax.trainer import train_encoder
from dimgen.training.logs import ScalarLog, plot_curves, read_log


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


class _Killed(Exception):
    pass


def test_encoder_log_one_row_per_epoch_after_kill_and_resume(tmp_path: Path) -> None:
    cfg = EncoderConfig(epochs=8, checkpoint_every=3, deterministic=True, seed=3)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run = train_encoder(cfg, whole)
    rows = _rows(whole / "log.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    # The log holds exactly the harness's history (the training bound per epoch, in nats).
    bounds = [float(r["bound"]) for r in rows]
    assert bounds == pytest.approx(list(run.history), abs=1e-12)

    def die(done: int, scalars: dict[str, float]) -> None:
        if done == 5:  # rows 4 and 5 are on disk; the last checkpoint holds epoch 3
            raise _Killed

    with pytest.raises(_Killed):
        train_encoder(cfg, killed, on_scalars=die)
    assert [int(r["epoch"]) for r in _rows(killed / "log.csv")] == [1, 2, 3, 4, 5]
    train_encoder(cfg, killed, resume=True)
    resumed = _rows(killed / "log.csv")
    assert [int(r["epoch"]) for r in resumed] == list(range(1, 9))  # no duplicate epoch 4, 5
    assert [float(r["bound"]) for r in resumed] == pytest.approx(bounds, abs=1e-12)  # bit-exact
    assert (killed / "curves.png").is_file() and (whole / "curves.png").stat().st_size > 1000
    assert "![training curves](curves.png)" in (whole / "report.md").read_text()


def test_scalar_log_widens_header_and_reads_back(tmp_path: Path) -> None:
    log = ScalarLog(tmp_path, "step")
    log.write(10, {"d_loss": 1.5, "g_loss": 0.5})
    log.write(20, {"d_loss": 1.25, "g_loss": 0.75, "r1": 0.1})  # a new scalar: header widened
    unit, rows = read_log(tmp_path / "log.csv")
    assert unit == "step" and [r["step"] for r in rows] == [10, 20]
    assert np.isnan(rows[0]["r1"]) and rows[1]["r1"] == pytest.approx(0.1)
    # Resuming from a checkpoint that holds step 10 only: the row of step 20 is dropped.
    ScalarLog(tmp_path, "step", [{"step": 10, "d_loss": 1.5, "g_loss": 0.5}])
    assert [r["step"] for r in read_log(tmp_path / "log.csv")[1]] == [10]
    assert plot_curves(tmp_path / "log.csv", tmp_path / "c.png") == tmp_path / "c.png"
    (tmp_path / "bad.csv").write_text("step,loss\n1,abc\n")
    with pytest.raises(DimgenError, match="not a dimgen training log"):
        read_log(tmp_path / "bad.csv")


def test_gan_log_and_tensorboard(digits_run: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "gan"
    res = CliRunner().invoke(cli, [
        "train-gan", str(digits_run), "--out", str(out), "--steps", "20", "--quiet",
        "--tensorboard", "--set", "log_every=5", "--set", "sample_every=10",
        "--set", "classifier_epochs=1", "--set", "eval_samples=40",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = _rows(out / "log.csv")
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20]
    assert {"d_loss", "g_loss"} <= set(rows[0])
    acc = EventAccumulator(str(out / "tensorboard")).Reload()
    tags = acc.Tags()
    assert "d_loss" in tags["scalars"] and "samples" in tags["images"]
    steps = [e.step for e in acc.Scalars("d_loss")]
    assert steps == [5, 10, 15, 20]
    assert [e.value for e in acc.Scalars("d_loss")] == pytest.approx(
        [float(r["d_loss"]) for r in rows], rel=1e-6
    )
    assert [e.step for e in acc.Images("samples")] == [10, 20]
    assert "![training curves](curves.png)" in (out / "report.md").read_text()
    assert (out / "curves.png").is_file()


def test_a_trained_flow_writes_log_csv_and_curves(tmp_path: Path) -> None:
    """Flows write the same log.csv (step, nll) and curves.png as the harness's trainers."""
    from dimgen.flows import FlowConfig, transform_codes

    enc = tmp_path / "enc"
    train_encoder(EncoderConfig(epochs=2), enc)
    out = tmp_path / "flow"
    run = transform_codes(enc, "mixture:4", config=FlowConfig(steps=120), out=out)
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [50, 100, 120]
    assert [float(r["nll"]) for r in rows] == pytest.approx(run.metrics["train_nll_history"])
    assert (out / "curves.png").stat().st_size > 0
    assert "curves.png" in (out / "report.md").read_text()
