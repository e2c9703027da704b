"""Data parallelism on the CPU (gloo): 2 processes x (B/2) give the loss and gradients of 1 x B.

The processes see exactly the batch, augmentation and channel noise of the single-process
reference (each takes its rows), wrapped in DistributedDataParallel as training does: negatives
are gathered across processes with gradients, batch-norm statistics are global, and the bound is
the rectangular one. Compared in float64 over three Adam steps, for every bound and both priors.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from dimgen.cli import cli

from dimgen.config import EncoderConfig
from dimgen.errors import ConfigError, RunFolderError
from dimgen.infomax.objectives import NoisyInfoMax
from dimgen.infomax.trainer import build_model
from dimgen.training.distributed import spawn

B, STEPS, WORLD = 8, 3, 2
CASES = [("gaussian", "infonce"), ("gaussian", "nwj"), ("gaussian", "dv"), ("uniform", "infonce"),
         ("gaussian+whiten", "infonce")]  # fmt: skip


def _model(prior: str, bound: str) -> NoisyInfoMax:
    torch.manual_seed(0)
    prior, _, whiten = prior.partition("+")
    cfg = EncoderConfig(prior=prior, bound=bound, encoder_hidden=32, critic_hidden=16,
                        whiten=bool(whiten))  # fmt: skip
    return build_model(cfg, (1, 8, 8)).double()


def _batches() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(x, x', channel noise) for every step: the global batch all runs share."""
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(STEPS):
        x = torch.rand(B, 1, 8, 8, generator=g, dtype=torch.float64)
        x_aug = x + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)
        noise = 0.1 * torch.randn(B, 2, generator=g, dtype=torch.float64)
        out.append((x, x_aug, noise))
    return out


def _train(model: torch.nn.Module, core: NoisyInfoMax, rows: slice) -> dict[str, Any]:
    """STEPS Adam steps on ``rows`` of each global batch; losses, first gradients, final state."""
    import torch.distributed as dist

    opt = torch.optim.Adam(core.parameters(), lr=1e-2)
    losses, grads = [], {}
    for i, (x, x_aug, noise) in enumerate(_batches()):
        bound = model(x[rows], x_aug=x_aug[rows], noise=noise[rows])
        opt.zero_grad()
        (-bound).backward()
        if i == 0:
            grads = {n: p.grad.clone() for n, p in core.named_parameters()}
        opt.step()
        value = bound.detach().clone()
        if dist.is_initialized():  # the global bound is the mean of the processes' bounds
            dist.all_reduce(value)
            value /= dist.get_world_size()
        losses.append(float(value))
    state = {k: v.clone() for k, v in core.state_dict().items()}
    return {"losses": losses, "grads": grads, "state": state}


def _worker() -> dict[tuple[str, str], dict[str, Any]]:
    import torch.distributed as dist

    from dimgen.training.devices import data_parallel as _ddp

    rank, world = dist.get_rank(), dist.get_world_size()
    rows = slice(rank * B // world, (rank + 1) * B // world)
    out = {}
    for prior, bound in CASES:
        core = _model(prior, bound)
        core.data_parallel = True
        out[(prior, bound)] = _train(_ddp(core, torch.device("cpu")), core, rows)
    return out


def test_two_processes_equal_one_process() -> None:
    t0 = time.perf_counter()
    results = spawn(_worker, WORLD, backend="gloo")
    for prior, bound in CASES:
        core = _model(prior, bound)
        ref = _train(core, core, slice(None))
        for rank, res in enumerate(results):
            got = res[(prior, bound)]
            case = f"{prior}/{bound} rank {rank}"
            assert got["losses"] == pytest.approx(ref["losses"], abs=1e-10), case
            for name, g in ref["grads"].items():
                assert torch.allclose(got["grads"][name], g, atol=1e-10), f"{case}: grad {name}"
            for name, v in ref["state"].items():  # weights and running statistics
                assert torch.allclose(got["state"][name].double(), v.double(), atol=1e-9), (
                    f"{case}: {name}"
                )
    assert time.perf_counter() - t0 < 120


def _fail_on_rank_one(kind: str) -> None:
    import torch.distributed as dist

    if dist.get_rank() == 1:
        if kind == "dimgen":
            raise ConfigError("boom on one process")
        raise KeyError("not a dimgen error")
    dist.barrier()  # rank 0 waits for a peer that never comes: it must be stopped, not hang


@pytest.mark.parametrize("kind", ["dimgen", pytest.param("other", marks=pytest.mark.slow)])
def test_one_failing_process_ends_the_run_with_one_line(kind: str) -> None:
    t0 = time.perf_counter()
    if kind == "dimgen":
        with pytest.raises(ConfigError, match=r"^rank 1: boom on one process$"):
            spawn(_fail_on_rank_one, WORLD, (kind,), backend="gloo")
    else:
        with pytest.raises(RuntimeError, match=r"^process 1: KeyError: 'not a dimgen error'$"):
            spawn(_fail_on_rank_one, WORLD, (kind,), backend="gloo")
    assert time.perf_counter() - t0 < 60


def _large_result_while_rank_one_fails() -> torch.Tensor | None:
    import torch.distributed as dist

    if dist.get_rank() == 1:
        raise ConfigError("boom on one process")
    time.sleep(1.0)  # rank 1 has failed: the parent is in its grace period, not reading
    return torch.arange(4_000_000, dtype=torch.float64)  # 32 MB, far over a pipe's 64 kB


def test_a_large_result_posted_while_another_process_fails_reports_the_failure() -> None:
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"^rank 1: boom on one process$"):
        spawn(_large_result_while_rank_one_fails, WORLD, backend="gloo")
    assert time.perf_counter() - t0 < 60


def _large_result_while_rank_one_aborts_at_exit() -> torch.Tensor | None:
    import atexit
    import os

    import torch.distributed as dist

    if dist.get_rank() == 1:
        atexit.register(os.abort)  # as gloo's threads now and then do at interpreter teardown
        return None
    time.sleep(1.0)
    return torch.arange(4_000_000, dtype=torch.float64)


def test_a_crash_at_a_workers_teardown_cannot_hang_the_parent() -> None:
    """CI once hung here for 90 minutes: rank 1 posted its result, then aborted in the
    interpreter's teardown (SIGABRT, "terminate called without an active exception"); torch
    stopped rank 0 in the middle of writing its large result into the results pipe, and the
    parent waited forever for the rest of the message. Workers now skip the teardown once their
    result is posted, and results travel through files (whole or absent, never partial)."""
    t0 = time.perf_counter()
    out = spawn(_large_result_while_rank_one_aborts_at_exit, WORLD, backend="gloo")
    assert out[1] is None and torch.equal(out[0], torch.arange(4_000_000, dtype=torch.float64))
    assert time.perf_counter() - t0 < 60


def _large_result() -> torch.Tensor:
    import torch.distributed as dist

    return torch.full((2_000_000,), float(dist.get_rank()), dtype=torch.float64)


def test_large_results_of_every_process_come_back_whole() -> None:
    out = spawn(_large_result, WORLD, backend="gloo")
    assert [tuple(r.shape) for r in out] == [(2_000_000,)] * WORLD
    assert [float(r.min()) for r in out] == [float(r.max()) for r in out] == list(range(WORLD))


def test_devices_flag_trains_and_rank0_writes(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    args = ["encode", "--devices", "2", "--epochs", "2", "--quiet", "--out", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert res.output.count("wrote") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and len(metrics["history"]) == 2
    assert (out / "run.json").is_file() and not (out / "checkpoint.safetensors").exists()


class _Stop(Exception):
    """Raised by every process after the same epoch: an interruption that leaves a checkpoint."""


def _interrupt_then_resume(killed: str, whole: str) -> dict[str, Any]:
    from dimgen.infomax.trainer import train_encoder

    cfg = EncoderConfig(epochs=3, checkpoint_every=1, deterministic=True, max_train=256,
                        batch_size=64, eval_batches=2, device="cpu", devices=2)  # fmt: skip

    def stop(epoch: int, _: float) -> None:
        if epoch == 1:  # the checkpoint of epoch 1 exists; epoch 2's never will
            raise _Stop

    with contextlib.suppress(_Stop):
        train_encoder(cfg, killed, on_epoch=stop)
    had_checkpoint = (Path(killed) / "checkpoint.safetensors").exists()
    resumed = train_encoder(cfg, killed, resume=True)
    straight = train_encoder(cfg, whole)
    return {"checkpoint": had_checkpoint, "resumed": resumed.history, "straight": straight.history,
            "codes": (resumed.codes, straight.codes)}  # fmt: skip


def test_two_process_run_resumes_bit_exact(tmp_path: Path) -> None:
    killed, whole = str(tmp_path / "killed"), str(tmp_path / "whole")
    results = spawn(_interrupt_then_resume, WORLD, (killed, whole), backend="gloo")
    for res in results:
        assert res["checkpoint"]
        assert res["resumed"] == res["straight"] and len(res["straight"]) == 3
    a, b = results[0]["codes"]
    assert len(a) > 0 and np.array_equal(a, b)  # rank 0 evaluated both runs
    assert json.loads((tmp_path / "killed" / "run.json").read_text())["kind"] == "encoder"


def test_checkpoint_of_two_processes_needs_two_to_resume(tmp_path: Path) -> None:
    from dimgen.config import to_dict
    from dimgen.training.checkpoint import CheckpointState, load_checkpoint, save_checkpoint

    cfg = EncoderConfig()
    model = build_model(cfg, (1, 8, 8))
    opt = torch.optim.Adam(model.parameters())
    gen = torch.Generator().manual_seed(0)
    state = CheckpointState({"model": model}, {"adam": opt}, generators={"batches": gen})
    states = [{"torch": torch.get_rng_state()} for _ in range(2)]
    save_checkpoint(tmp_path / "c.safetensors", state, kind="encoder", unit="epoch", done=3,
                    history=[0.1] * 3, config=to_dict(cfg), rank_states=states)  # fmt: skip
    with pytest.raises(RunFolderError, match="written by 2 process"):
        load_checkpoint(tmp_path / "c.safetensors", state, kind="encoder")


def test_devices_must_divide_the_batch() -> None:
    with pytest.raises(ConfigError, match="divisible by devices"):
        from dimgen.config import validate

        validate(EncoderConfig(batch_size=128, devices=3))


def test_global_batch_norm_in_one_process_is_batchnorm1d() -> None:
    from dimgen.training.distributed import global_batch_norm

    h = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref, ours = (torch.nn.BatchNorm1d(3, affine=False).double() for _ in range(2))
    for _ in range(3):  # running statistics follow BatchNorm1d's update, step after step
        a, b = ref(h), global_batch_norm(h, ours)
        h = h * 1.5 + 0.2
    assert torch.allclose(a, b, atol=1e-12)
    assert torch.allclose(ref.running_mean, ours.running_mean, atol=1e-12)
    assert torch.allclose(ref.running_var, ours.running_var, atol=1e-12)
    assert int(ref.num_batches_tracked) == int(ours.num_batches_tracked) == 3


def test_shards_of_a_batch_cover_the_single_process_batch() -> None:
    from dimgen.data import TensorBatches

    x = torch.arange(40)

    def batches(shard: tuple[int, int]) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(3)
        return [b for (b,) in TensorBatches(x, batch_size=8, generator=gen, shard=shard)]

    whole, parts = batches((0, 1)), [batches((r, 2)) for r in range(2)]
    for i, batch in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][i], parts[1][i]]), batch)
    with pytest.raises(ValueError, match="does not divide"):
        TensorBatches(x, batch_size=9, shard=(0, 2))


@pytest.mark.parametrize(("world", "atexit_runs"), [("1", True), ("2", False)])
def test_under_a_launcher_the_cli_leaves_without_interpreter_teardown(
    world: str, atexit_runs: bool
) -> None:
    """Under torchrun (WORLD_SIZE > 1) the CLI exits with os._exit after flushing, so a gloo
    abort in the interpreter's teardown cannot turn a finished run into a reported failure; the
    exit code and the output are kept. Alone, the normal exit (atexit handlers run)."""
    import os
    import subprocess
    import sys

    code = ("import atexit; from dimgen.cli import main; "
            "atexit.register(lambda: print('teardown ran')); main(['--version'])")  # fmt: skip
    env = {**os.environ, "WORLD_SIZE": world}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert res.returncode == 0 and "version" in res.stdout.lower()
    assert ("teardown ran" in res.stdout) is atexit_runs
    bad = subprocess.run([sys.executable, "-c", code.replace("'--version'", "'--nope'")], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "no such option" in bad.stderr.lower()
