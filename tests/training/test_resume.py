"""Kill a training process part-way (SIGKILL), resume it, and get the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from dimgen.cli import cli

ARGS = [  # 15 epochs of digits (30 took 35 s a test): killed after the checkpoint of epoch 3
    "--epochs",
    "15",
    "--set",
    "checkpoint_every=3",
    "--set",
    "deterministic=true",
    "--seed",
    "3",
    "--quiet",
]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _kill_after_first_checkpoint(args: list[str], run_dir: Path, extra_wait: float) -> None:
    """Start ``dimgen ARGS`` in a subprocess and SIGKILL it once a checkpoint exists (mid-training)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dimgen.cli", *args],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ckpt = run_dir / "checkpoint.safetensors"
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    time.sleep(extra_wait)  # let it get into a later epoch/step
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize(
    "extra", [[], ["--set", "whiten=true", "--set", "dim=3"]], ids=["standardise", "whiten"]
)
def test_sigkill_then_resume_is_bit_exact(tmp_path: Path, extra: list[str]) -> None:
    """The checkpoint carries every normalisation statistic (with ``whiten``: the covariance)."""
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    args = [*ARGS, *extra]
    _kill_after_first_checkpoint(["encode", *args, "--out", str(killed)], killed, 0.3)
    assert not (killed / "run.json").exists()

    # an incomplete folder is refused by other commands with a clear message
    res = CliRunner().invoke(
        cli,
        ["encode", "--encoder", str(killed), "--data", "digits", "--out", str(tmp_path / "c.npz")],
    )
    assert (
        res.exit_code == 2
        and "is an incomplete encoder run" in res.output
        and "dimgen encode --resume" in res.output
    )

    res = CliRunner().invoke(cli, ["encode", "--resume", str(killed), "--quiet"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["encode", *args, "--out", str(whole)])
    assert res.exit_code == 0, res.output

    a, b = np.load(killed / "codes.npz"), np.load(whole / "codes.npz")
    assert np.array_equal(a["codes"], b["codes"])
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (killed, whole))
    assert ma["history"] == mb["history"] and len(ma["history"]) == 15
    # log.csv: one row per epoch after kill and resume, identical to the uninterrupted run's.
    assert (killed / "log.csv").read_text() == (whole / "log.csv").read_text()
    assert len((whole / "log.csv").read_text().splitlines()) == 16  # header + 15 epochs
    assert ma["mi_lower_bound_nats"] == mb["mi_lower_bound_nats"]
    assert not (killed / "checkpoint.safetensors").exists()


def test_resume_refuses_complete_and_empty_folders(digits_run: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["encode", "--resume", str(digits_run)])
    assert res.exit_code == 2 and "already complete" in res.output
    res = CliRunner().invoke(cli, ["encode", "--resume", str(tmp_path)])
    assert res.exit_code == 2 and "nothing to resume" in res.output


@pytest.mark.parametrize("bad", [b"", b"\x00" * 64, b"garbage that is not safetensors"])
def test_corrupt_checkpoint_is_refused(tmp_path: Path, bad: bytes) -> None:
    from dimgen.config import EncoderConfig, save_config

    run = tmp_path / "r"
    run.mkdir()
    save_config(EncoderConfig(epochs=2), run / "config.yaml")
    (run / "checkpoint.safetensors").write_bytes(bad)
    res = CliRunner().invoke(cli, ["encode", "--resume", str(run), "--quiet"])
    assert res.exit_code == 2, res.output
    assert "checkpoint.safetensors" in res.output and "Traceback" not in res.output


GAN_ARGS = ["--steps", "300", "--set", "checkpoint_every=50", "--set", "classifier_epochs=0",
            "--set", "eval_samples=0", "--set", "sample_every=0", "--device", "cpu", "--quiet"]  # fmt: skip


def test_gan_sigkill_then_resume_is_bit_exact(digits_run: Path, tmp_path: Path) -> None:
    from dimgen.io import load_weights

    killed, whole = tmp_path / "killed", tmp_path / "whole"
    _kill_after_first_checkpoint(
        ["train-gan", str(digits_run), *GAN_ARGS, "--out", str(killed)], killed, 0.2
    )
    assert not (killed / "run.json").exists()
    res = CliRunner().invoke(
        cli, ["sample", str(killed), "--unconditional", "--out", str(tmp_path / "s.png")]
    )
    assert res.exit_code == 2 and "incomplete" in res.output

    res = CliRunner().invoke(cli, ["train-gan", "--resume", str(killed), "--quiet"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["train-gan", str(digits_run), *GAN_ARGS, "--out", str(whole)])
    assert res.exit_code == 0, res.output
    for name in ("generator.safetensors", "discriminator.safetensors"):
        a, _ = load_weights(killed / name)
        b, _ = load_weights(whole / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (killed, whole))
    assert ma["history"] == mb["history"]
