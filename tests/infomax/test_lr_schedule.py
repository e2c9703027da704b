"""``EncoderConfig.lr_schedule``: the cosine rate the encoder trains with, its bit-exact resume, and
the constant default that adds no scheduler (runs made before the option are unchanged)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from dimgen.cli import cli

from dimgen.config import EncoderConfig
from dimgen.errors import ConfigError
from dimgen.infomax.trainer import EncoderTrainer, train_encoder
from dimgen.io import load_weights
from dimgen.training import fit
from dimgen.training.schedules import warmup_cosine

CPU = torch.device("cpu")
#: 300 training images, batch 128: 2 optimiser steps per epoch
SMALL = {"max_train": 300, "curve_every": 0, "eval_batches": 2, "deterministic": True}


class _Killed(Exception):
    pass


@pytest.mark.parametrize("warmup", [0, 1])
def test_cosine_rate_follows_the_formula_step_by_step(warmup: int) -> None:
    cfg = EncoderConfig(epochs=5, lr=0.004, lr_schedule="cosine", lr_warmup_epochs=warmup, **SMALL)
    trainer = EncoderTrainer(cfg)
    seen: list[float] = []
    fit(trainer, CPU, None, progress=False,
        on_scalars=lambda done, s: seen.append(trainer.opt.param_groups[0]["lr"]))  # fmt: skip
    per_epoch = trainer.per_epoch
    total = per_epoch * cfg.epochs
    assert per_epoch == 2 and trainer.sched is not None and trainer.sched.last_epoch == total
    # the rate after epoch e is the rate of optimiser step e * per_epoch, on the closed form
    want = [
        cfg.lr * warmup_cosine(e * per_epoch, total, warmup * per_epoch) for e in (1, 2, 3, 4, 5)
    ]
    assert seen == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert seen[-1] == pytest.approx(0.0, abs=1e-15) and max(seen) <= cfg.lr


def test_constant_schedule_has_no_scheduler_and_a_fixed_rate() -> None:
    trainer = EncoderTrainer(EncoderConfig(epochs=2, **SMALL))
    fit(trainer, CPU, None, progress=False)
    assert trainer.sched is None and trainer.opt.param_groups[0]["lr"] == 2e-3


def test_cosine_resume_is_bit_exact(tmp_path: Path) -> None:
    cfg = EncoderConfig(epochs=6, checkpoint_every=2, lr_schedule="cosine", lr_warmup_epochs=1,
                        prior="uniform", eps=0.25, squash="steps", **SMALL)  # fmt: skip
    whole = train_encoder(cfg, tmp_path / "whole", progress=False)

    def die(done: int, scalars: dict[str, float]) -> None:
        if done == 3:  # the last checkpoint holds epoch 2, mid-way down the cosine
            raise _Killed

    killed = tmp_path / "killed"
    with pytest.raises(_Killed):
        train_encoder(cfg, killed, progress=False, on_scalars=die)
    _, meta = load_weights(killed / "checkpoint.safetensors")
    assert meta["schedulers"]["lr"]["last_epoch"] == 2 * 2  # 2 epochs of 2 steps
    resumed = train_encoder(cfg, killed, progress=False, resume=True)
    assert resumed.history == whole.history
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the schedule matters: the same run at a constant rate ends elsewhere (the test can fail)
    const = train_encoder(EncoderConfig(**{**cfg.__dict__, "lr_schedule": "constant",
                                           "lr_warmup_epochs": 0}), progress=False)  # fmt: skip
    c = const.model.state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_config_refuses_bad_schedules() -> None:
    with pytest.raises(ConfigError, match="lr_schedule"):
        train_encoder(EncoderConfig(lr_schedule="linear"), progress=False)
    with pytest.raises(ConfigError, match="lr_warmup_epochs 2 needs lr_schedule cosine"):
        train_encoder(EncoderConfig(lr_warmup_epochs=2), progress=False)
    with pytest.raises(ConfigError, match="fewer than epochs 3"):
        train_encoder(EncoderConfig(epochs=3, lr_schedule="cosine", lr_warmup_epochs=3))


def test_cli_sets_the_schedule_and_refuses_a_bad_one(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["encode", "--epochs", "2", "--set", "max_train=300", "--quiet", "--out", str(out)]
    res = CliRunner().invoke(cli, [*args, "--set", "lr_schedule=cosine"])
    assert res.exit_code == 0, res.output
    assert "lr_schedule: cosine" in (out / "config.yaml").read_text()
    res = CliRunner().invoke(cli, [*args[:-1], str(tmp_path / "bad"), "--set", "lr_schedule=step"])
    lines = [ln for ln in res.output.strip().splitlines() if ln]
    assert res.exit_code == 2 and len(lines) == 1 and "lr_schedule" in lines[0], res.output
    assert "Traceback" not in res.output and not (tmp_path / "bad").exists()
