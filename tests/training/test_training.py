"""The training harness, driven by a toy trainer of a few lines: resume, guard, run folder, layers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from dimgen.config import register_validator
from dimgen.errors import RunFolderError, TrainingError
from dimgen.io import load_weights, read_run
from dimgen.training import CheckpointState, Context, Fitted, Trainer, fit

CPU = torch.device("cpu")


@dataclass
class ToyConfig:
    steps: int = 12
    checkpoint_every: int = 4
    log_every: int = 3
    nan_at: int = 0  # a step whose loss is NaN (0: none)
    seed: int = 0


register_validator(ToyConfig, lambda cfg: None)


class Toy(Trainer):
    """Noisy linear regression with Adam, random batches and dropout: every RNG matters."""

    kind, label = "toy", "toy"

    def __init__(self, cfg: ToyConfig) -> None:
        self.config, self.total = cfg, cfg.steps
        self.checkpoint_every, self.log_every = cfg.checkpoint_every, cfg.log_every

    def setup(self, ctx: Context) -> CheckpointState:
        torch.manual_seed(self.config.seed)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.Linear(8, 1))
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-2)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=5, gamma=0.5)
        self.gen = torch.Generator().manual_seed(1)
        self.x = torch.randn(64, 4)
        self.y = self.x @ torch.arange(4.0) + 0.1 * torch.randn(64)
        return CheckpointState({"net": self.net}, {"opt": self.opt}, {"lr": self.sched},
                               {"batches": self.gen})  # fmt: skip

    def step(self, index: int) -> dict[str, Tensor]:
        idx = torch.randint(64, (16,), generator=self.gen)
        loss = (self.net(self.x[idx]).squeeze(1) - self.y[idx]).pow(2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self.sched.step()
        if index + 1 == self.config.nan_at:
            loss = loss * float("nan")
        return {"loss": loss.detach(), "lr": torch.tensor(self.sched.get_last_lr()[0])}

    def finish(self, fitted: Fitted, out: Path | None) -> tuple[dict[str, Tensor], list]:
        return {k: v.clone() for k, v in self.net.state_dict().items()}, fitted.history


class _Stop(Exception):
    pass


def _stop_at(step: int):
    def callback(done: int, scalars: dict[str, float]) -> None:
        if done == step:
            raise _Stop

    return callback


def test_resume_after_interruption_is_bit_exact(tmp_path: Path) -> None:
    cfg = ToyConfig()
    whole_w, whole_h = fit(Toy(cfg), CPU, tmp_path / "whole")
    assert [h["step"] for h in whole_h] == [3, 6, 9, 12]
    # Stopped in the window after the checkpoint of step 4: the checkpoint carries a partial
    # window (steps 4 of 4-6), Adam's moments, the scheduler, and the batch and dropout RNGs.
    with pytest.raises(_Stop):
        fit(Toy(cfg), CPU, tmp_path / "cut", on_scalars=_stop_at(6))
    _, meta = load_weights(tmp_path / "cut" / "checkpoint.safetensors")
    assert meta["kind"] == "toy-checkpoint" and meta["step"] == 4
    with pytest.raises(RunFolderError, match="incomplete run"):
        read_run(tmp_path / "cut", "toy")
    w, h = fit(Toy(cfg), CPU, tmp_path / "cut", resume=True)
    assert h == whole_h  # window means, including the one cut by the checkpoint
    assert w.keys() == whole_w.keys() and all(torch.equal(w[k], whole_w[k]) for k in w)
    # The harness wrote the folder: config first, run.json last, checkpoint removed.
    _, rec = read_run(tmp_path / "cut", "toy")
    assert rec["complete"] is True and not (tmp_path / "cut" / "checkpoint.safetensors").exists()
    assert "log_every: 3" in (tmp_path / "cut" / "config.yaml").read_text()
    # Not resuming from the checkpoint gives a different result: the test can fail.
    other, _ = fit(Toy(ToyConfig(seed=1)), CPU)
    assert not all(torch.equal(other[k], whole_w[k]) for k in w)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"non-finite loss\) at step 6; last good checkpoint"):
        fit(Toy(ToyConfig(nan_at=5)), CPU, out)  # the window of steps 4-6 is NaN
    tensors, meta = load_weights(out / "checkpoint.safetensors")
    assert meta["step"] == 4 and all(torch.isfinite(t).all() for t in tensors.values())
    assert not (out / "run.json").exists()
    # A NaN in a window cut by a checkpoint stops the run there: the checkpoint is not replaced.
    with pytest.raises(TrainingError, match=r"non-finite loss\) by step 8; last good checkpoint"):
        fit(Toy(ToyConfig(nan_at=7)), CPU, tmp_path / "cut")
    _, meta = load_weights(tmp_path / "cut" / "checkpoint.safetensors")
    assert meta["step"] == 4
    w, _ = fit(Toy(ToyConfig()), CPU, tmp_path / "again")  # the guard left no global state
    assert all(torch.isfinite(v).all() for v in w.values())


def test_non_finite_weights_are_never_checkpointed(tmp_path: Path) -> None:
    class Poisoned(Toy):
        def step(self, index: int) -> dict[str, Tensor]:
            out = super().step(index)
            if index + 1 == 6:
                with torch.no_grad():
                    self.net[0].weight.fill_(float("inf"))
            return {"loss": out["loss"].clamp(max=1.0).nan_to_num(0.0)}

    out = tmp_path / "run"
    with pytest.raises(TrainingError, match="weights became non-finite by step 8"):
        fit(Poisoned(ToyConfig()), CPU, out)
    _, meta = load_weights(out / "checkpoint.safetensors")
    assert meta["step"] == 4
    # rerunning into the interrupted folder points at --resume, and changes nothing
    with pytest.raises(
        RunFolderError, match=f"interrupted run: continue it with `dimgen <command> --resume {out}`"
    ):
        fit(Toy(ToyConfig()), CPU, out)
    assert load_weights(out / "checkpoint.safetensors")[1]["step"] == 4


def test_run_folder_rules(tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("")
    with pytest.raises(RunFolderError, match="exists and is not empty"):
        fit(Toy(ToyConfig()), CPU, used)
    with pytest.raises(RunFolderError, match="nothing to resume"):
        fit(Toy(ToyConfig()), CPU, tmp_path / "empty", resume=True)
    with pytest.raises(RunFolderError, match="nothing to resume"):
        fit(Toy(ToyConfig()), CPU, None, resume=True)
    fit(Toy(ToyConfig()), CPU, tmp_path / "a")
    with pytest.raises(RunFolderError, match="is not a toy checkpoint"):
        enc = tmp_path / "enc"
        enc.mkdir()
        from dimgen.io import save_weights

        save_weights(
            enc / "checkpoint.safetensors", {"a": torch.zeros(1)}, {"kind": "gan-checkpoint"}
        )
        fit(Toy(ToyConfig()), CPU, enc, resume=True)


def test_scalars_reach_the_callback_in_windows() -> None:
    seen: list[tuple[int, dict[str, float]]] = []
    _, history = fit(Toy(ToyConfig(steps=7)), CPU, on_scalars=lambda d, s: seen.append((d, s)))
    assert [d for d, _ in seen] == [3, 6, 7]  # the last window is partial
    assert [s for _, s in seen] == [{k: v for k, v in h.items() if k != "step"} for h in history]
    assert seen[-1][1]["lr"] == pytest.approx(1e-2 * 0.5)  # StepLR after 7 steps
