"""Data parallelism of `pretrain`, `train-gan` and `train-diffusion` on the CPU (gloo).

Each objective: 2 processes x (B/2) give the loss, gradients and weights of 1 process x B in
float64 (``tests/test_distributed.py`` does the same for `encode`): NT-Xent with negatives from
every process, VICReg's variance and covariance over the global batch, the channel's and the
networks' batch-norm statistics over the global batch, DIM's sharded InfoNCE; the GAN's and the
diffusion model's own trainer steps (their draws made for the global batch). Then the run-level
rules: rank 0 alone writes, a resumed 2-process run is bit-identical to an uninterrupted one,
a checkpoint refuses another world size, and a two-node torchrun equals one node of two.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from test_distributed import STEPS, WORLD, B  # the encoder's set-up: B = 8, 3 steps, 2 processes

from dimgen.training.distributed import spawn

TOL_LOSS, TOL_GRAD, TOL_WEIGHT = 1e-10, 1e-10, 1e-9
CPU = torch.device("cpu")


def _rows(rank: int, world: int) -> slice:
    return slice(rank * B // world, (rank + 1) * B // world)


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest difference, relative to the reference's scale where it exceeds 1."""
    a, b = a.double(), b.double()
    return float((a - b).abs().max()) / max(1.0, float(b.abs().max()))


def _compare(ref: dict[str, Any], got: dict[str, Any], case: str) -> float:
    """Assert ``got`` (a process's) equals ``ref`` (one process's); return the largest gap."""
    gap = _gap(torch.tensor(got["losses"]), torch.tensor(ref["losses"]))
    assert gap <= TOL_LOSS, f"{case}: losses {got['losses']} vs {ref['losses']}"
    assert ref["grads"].keys() == got["grads"].keys() and ref["grads"], case
    for name, g in ref["grads"].items():
        d = _gap(got["grads"][name], g)
        assert d <= TOL_GRAD, f"{case}: gradient of {name} differs by {d:.2e}"
        gap = max(gap, d)
    assert ref["state"].keys() == got["state"].keys(), case
    for name, v in ref["state"].items():  # weights, running statistics, EMA
        d = _gap(got["state"][name], v)
        assert d <= TOL_WEIGHT, f"{case}: {name} differs by {d:.2e}"
        gap = max(gap, d)
    return gap


# ---------------------------------------------------------------------------------------------
# pretrain: the network, the loss (channel + method) and LARS, as PretrainTrainer wires them

PRETRAIN_CASES = [("simclr", 0.0), ("simclr", 0.3), ("vicreg", 0.3), ("dim", 0.3)]
DIM = 8


def _views() -> list[tuple[torch.Tensor, ...]]:
    """Both augmented views and both channel-noise draws of every global batch."""
    g = torch.Generator().manual_seed(2)
    out = []
    for _ in range(STEPS):
        v_a, v_b = (torch.rand(B, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
        n_a, n_b = (0.3 * torch.randn(B, DIM, generator=g, dtype=torch.float64) for _ in range(2))
        out.append((v_a, v_b, n_a, n_b))
    return out


def _pretrain(method: str, sigma: float) -> dict[str, Any]:
    from dimgen.ssl.lars import LARS, param_groups
    from dimgen.ssl.losses import make_loss
    from dimgen.ssl.models import SSLNet
    from dimgen.training.devices import data_parallel, global_batch_statistics
    from dimgen.training.distributed import mean_over_processes, rank, world_size

    rows = _rows(rank(), world_size())
    torch.manual_seed(0)
    net = global_batch_statistics(SSLNet(method, 2, 16, DIM), CPU).double()
    loss_fn = make_loss(method, DIM, sigma, critic_hidden=16).double()
    loss_fn.data_parallel = True  # as PretrainTrainer.begin does with several processes
    train_net = data_parallel(net, CPU)
    has_params = any(True for _ in loss_fn.parameters())
    train_loss = data_parallel(loss_fn, CPU) if has_params else loss_fn
    modules = torch.nn.ModuleList([net, loss_fn])
    opt = LARS(param_groups(modules), lr=0.5, weight_decay=1e-4, momentum=0.9, eta=0.02)
    losses, grads = [], {}
    for i, (v_a, v_b, n_a, n_b) in enumerate(_views()):
        z_a, z_b = train_net(torch.cat([v_a[rows], v_b[rows]])).chunk(2)
        loss = train_loss(z_a, z_b, noise=(n_a[rows], n_b[rows]))
        opt.zero_grad()
        loss.backward()
        if i == 0:
            grads = {n: p.grad.clone() for n, p in modules.named_parameters()}
        opt.step()
        losses.append(float(mean_over_processes(loss.detach())))
    state = {k: v.clone() for k, v in modules.state_dict().items()}
    return {"losses": losses, "grads": grads, "state": state}


def _pretrain_worker() -> dict[tuple[str, float], dict[str, Any]]:
    return {case: _pretrain(*case) for case in PRETRAIN_CASES}


def test_pretrain_objectives_on_two_processes_equal_one_process() -> None:
    results = spawn(_pretrain_worker, WORLD, backend="gloo")
    gaps = []
    for case in PRETRAIN_CASES:
        ref = _pretrain(*case)
        for rank, res in enumerate(results):
            gaps.append(_compare(ref, res[case], f"{case} rank {rank}"))
    print(f"pretrain: largest 2-process vs 1-process gap {max(gaps):.1e}")
    assert len(gaps) == len(PRETRAIN_CASES) * WORLD
    assert max(gaps) <= max(TOL_LOSS, TOL_GRAD, TOL_WEIGHT)


def test_per_process_statistics_would_fail_the_comparison() -> None:
    """The comparison above can fail: VICReg's variance and covariance over one shard differ."""
    from dimgen.ssl.losses import covariance_loss, variance_loss

    _, _, n_a, _ = _views()[0]
    whole = variance_loss(n_a) + covariance_loss(n_a)
    shards = sum(variance_loss(n_a[_rows(r, 2)]) + covariance_loss(n_a[_rows(r, 2)])
                 for r in range(2)) / 2  # fmt: skip
    assert abs(float(whole - shards)) > 1e-3


def test_nt_xent_gather_is_the_plain_loss_in_one_process() -> None:
    from dimgen.ssl.losses import nt_xent

    g = torch.Generator().manual_seed(0)
    z_a, z_b = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(2))
    z = torch.nn.functional.normalize(torch.cat([z_a, z_b]), dim=1)
    logits = (z @ z.T / 0.5).masked_fill(torch.eye(12, dtype=torch.bool), -float("inf"))
    ref = torch.nn.functional.cross_entropy(logits, torch.tensor([*range(6, 12), *range(6)]))
    assert float(nt_xent(z_a, z_b, 0.5, gather=True)) == pytest.approx(float(ref), abs=1e-14)


# ---------------------------------------------------------------------------------------------
# train-gan and train-diffusion: their trainers' own steps, in float64


@pytest.fixture(scope="module")
def tiny_encoder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete digits encoder run (d = 2), trained for one epoch: codes to condition on."""
    from dimgen.config import EncoderConfig
    from dimgen.infomax.trainer import train_encoder

    out = tmp_path_factory.mktemp("ddp") / "enc"
    train_encoder(EncoderConfig(epochs=1, seed=0, eval_batches=1), out)
    return out


def _gan_config(enc: str, **kw: Any) -> Any:
    from dimgen.gan import GANConfig

    base = dict(encoder_run=enc, batch_size=B, steps=STEPS, g_width=16, d_width=16, noise_dim=4,
                r1_gamma=1.0, ema_decay=0.9, eval_samples=0, classifier_epochs=0,
                sample_every=0, device="cpu")  # fmt: skip
    return GANConfig(**{**base, **kw})


def _diffusion_config(enc: str, **kw: Any) -> Any:
    from dimgen.diffusion import DiffusionConfig

    base = dict(encoder_run=enc, batch_size=B, steps=STEPS, width=8, norm_groups=4, levels=1,
                num_train_timesteps=50, sample_steps=2, p_uncond=0.5, ema_decay=0.9,
                eval_samples=0, classifier_epochs=0, sample_every=0, device="cpu")  # fmt: skip
    return DiffusionConfig(**{**base, **kw})


def _trainer_steps(kind: str, enc: str) -> dict[str, Any]:
    """Set up the real trainer (this process's rank and world), cast to float64, take STEPS."""
    from dimgen.training import Context
    from dimgen.training.distributed import rank, world_size

    ctx = Context(CPU, rank(), world_size())
    if kind == "gan":
        from dimgen.gan.trainer import GANTrainer

        tr: Any = GANTrainer(_gan_config(enc))
        state = tr.setup(ctx)
    else:
        from dimgen.diffusion.trainer import DiffusionTrainer

        tr = DiffusionTrainer(_diffusion_config(enc))
        state = tr.setup(ctx)
    for module in state.modules.values():
        module.double()  # in place: the optimisers keep the same parameters
    tr.x_train, tr.c_train = tr.x_train.double(), tr.c_train.double()
    tr.begin(ctx)
    losses = []
    for i in range(STEPS):
        losses.extend(float(v) for v in tr.step(i).values())
    grads = {f"{m}.{n}": p.grad.clone() for m, module in state.modules.items()
             for n, p in module.named_parameters() if p.grad is not None}  # fmt: skip
    weights = {f"{m}.{k}": v.clone() for m, module in state.modules.items()
               for k, v in module.state_dict().items()}  # fmt: skip
    return {"losses": losses, "grads": grads, "state": weights}


def _trainers_worker(enc: str) -> dict[str, dict[str, Any]]:
    return {kind: _trainer_steps(kind, enc) for kind in ("gan", "diffusion")}


def test_gan_and_diffusion_steps_on_two_processes_equal_one_process(
    tiny_encoder_run: Path,
) -> None:
    pytest.importorskip("diffusers")
    enc = str(tiny_encoder_run)
    results = spawn(_trainers_worker, WORLD, (enc,), backend="gloo")
    for kind in ("gan", "diffusion"):
        ref = _trainer_steps(kind, enc)
        gaps = [_compare(ref, res[kind], f"{kind} rank {r}") for r, res in enumerate(results)]
        print(f"{kind}: largest 2-process vs 1-process gap {max(gaps):.1e}")
        assert len(gaps) == WORLD and max(gaps) <= max(TOL_LOSS, TOL_GRAD, TOL_WEIGHT)


# ---------------------------------------------------------------------------------------------
# run level: rank 0 writes, bit-exact resume, world size on resume


class _Stop(Exception):
    """Raised by every process after the same step: an interruption that leaves a checkpoint."""


def _kill_then_resume(kind: str, enc: str, killed: str, whole: str) -> dict[str, Any]:
    if kind == "gan":
        from dimgen.gan import train_gan as train

        cfg = _gan_config(enc, steps=6, checkpoint_every=2, log_every=2, devices=2)
    else:
        from dimgen.diffusion import train_diffusion as train

        cfg = _diffusion_config(enc, steps=6, checkpoint_every=2, log_every=2, devices=2)

    def stop(done: int, _: dict[str, float]) -> None:
        if done == 4:  # the checkpoint of step 2 exists; step 4's never will
            raise _Stop

    with contextlib.suppress(_Stop):
        train(cfg, killed, on_scalars=stop)
    import torch.distributed as dist

    if dist.get_rank() == 0:  # an interrupted folder left for the world-size check
        shutil.copytree(killed, killed + "-left")
    dist.barrier()
    resumed = train(cfg, killed, resume=True)
    straight = train(cfg, whole)

    def weights(run: Any) -> dict[str, torch.Tensor]:
        nets = (run.gan.generator, run.discriminator) if kind == "gan" else (run.model.net,)
        return {f"{i}.{k}": v.clone() for i, n in enumerate(nets)
                for k, v in n.state_dict().items()}  # fmt: skip

    return {"resumed": resumed.history, "straight": straight.history,
            "weights": (weights(resumed), weights(straight))}  # fmt: skip


@pytest.mark.parametrize("kind", ["gan", pytest.param("diffusion", marks=pytest.mark.slow)])
def test_two_process_run_resumes_bit_exact_and_refuses_one(kind: str, tiny_encoder_run: Path,
                                           tmp_path: Path) -> None:  # fmt: skip
    if kind == "diffusion":
        pytest.importorskip("diffusers")
    killed, whole = str(tmp_path / "killed"), str(tmp_path / "whole")
    results = spawn(_kill_then_resume, WORLD, (kind, str(tiny_encoder_run), killed, whole),
                    backend="gloo")  # fmt: skip
    for res in results:
        assert res["resumed"] == res["straight"] and len(res["straight"]) == 3
        a, b = res["weights"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the 1-process run of the same global batch: the same losses to float32 rounding
    one = _gan_config if kind == "gan" else _diffusion_config
    if kind == "gan":
        from dimgen.gan import train_gan as train
    else:
        from dimgen.diffusion import train_diffusion as train
    single = train(one(str(tiny_encoder_run), steps=6, log_every=2), None)
    for h1, h2 in zip(single.history, results[0]["straight"], strict=True):
        for k in h1:
            assert h2[k] == pytest.approx(h1[k], abs=1e-5), (kind, k)
    assert json.loads((tmp_path / "whole" / "run.json").read_text())["kind"] == kind
    # the checkpoint of 2 processes, resumed by 1: one line, before any training
    from dimgen.config import replace
    from dimgen.errors import RunFolderError

    cfg = replace(one(str(tiny_encoder_run), steps=6, checkpoint_every=2, log_every=2), devices=1)
    with pytest.raises(RunFolderError, match=r"written by 2 process\(es\); resume it with the "
                       r"same number \(now 1\)$"):  # fmt: skip
        train(cfg, killed + "-left", resume=True)


def _pretrain_kill_then_resume(tmp: str) -> dict[str, Any]:
    from test_ssl_pretrain import _cfg, _shapes

    from dimgen.ssl import pretrain

    ds = _shapes(128)  # 96 training images: 3 steps of 32 per epoch, 16 per process
    cfg = _cfg(method="vicreg", sigma=0.3, epochs=2, devices=2)  # checkpoints at 2 and 4

    def stop(done: int, _: dict[str, float]) -> None:
        if done == 3:
            raise _Stop

    with contextlib.suppress(_Stop):
        pretrain(cfg, Path(tmp) / "cut", data=ds, on_scalars=stop)
    resumed = pretrain(cfg, Path(tmp) / "cut", data=ds, resume=True)
    whole = pretrain(cfg, Path(tmp) / "whole", data=ds)
    return {"resumed": resumed.history, "straight": whole.history}


@pytest.mark.slow
def test_two_process_pretrain_resumes_bit_exact(tmp_path: Path) -> None:
    from dimgen.io import load_weights

    results = spawn(_pretrain_kill_then_resume, WORLD, (str(tmp_path),), backend="gloo")
    for res in results:  # every process logs the global batch's loss
        assert res["resumed"] == res["straight"] and len(res["straight"]) == 6
    a, _ = load_weights(tmp_path / "whole" / "model.safetensors")
    b, _ = load_weights(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert metrics["processes"] == 2


@pytest.mark.slow
def test_train_gan_devices_flag_rank0_writes(tiny_encoder_run: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner
    from dimgen.cli import cli

    out = tmp_path / "gan2"
    args = ["train-gan", str(tiny_encoder_run), "--devices", "2", "--steps", "4", "--batch-size",
            "8", "--quiet", "--out", str(out), "--set", "eval_samples=0",
            "--set", "classifier_epochs=0", "--set", "log_every=2"]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert res.output.count("wrote") == 1
    assert json.loads((out / "run.json").read_text())["kind"] == "gan"
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 2
    bad = CliRunner().invoke(cli, [*args[:-8], "--batch-size", "7", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "divisible by devices 2" in bad.output


# ---------------------------------------------------------------------------------------------
# multi-node launch: two torchrun "nodes" on the loopback interface


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(out: Path, enc: Path, nodes: list[list[str]]) -> None:
    """``train-gan`` under torchrun, one launcher per "node"; exactly one process reports."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    job = ["-m", "dimgen.cli", "train-gan", str(enc), "--steps", "4", "--batch-size", "8",
           "--device", "cpu", "--quiet", "--out", str(out), "--set", "eval_samples=0",
           "--set", "classifier_epochs=0", "--set", "log_every=2"]  # fmt: skip
    procs = [subprocess.Popen([*cmd, *node, *job], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for node in nodes]  # fmt: skip
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, text in zip(procs, outputs, strict=True):
        assert p.returncode == 0, text[-2000:]
    assert "".join(outputs).count("wrote ") == 1, outputs


@pytest.mark.slow
def test_two_torchrun_nodes_equal_one_node_of_two(tiny_encoder_run: Path, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    port = _free_port()
    rdzv = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "t"]
    two = [["--nnodes", "2", "--node-rank", str(r), "--nproc-per-node", "1", *rdzv]
           for r in range(2)]  # fmt: skip
    _torchrun(tmp_path / "nodes", tiny_encoder_run, two)
    _torchrun(tmp_path / "one", tiny_encoder_run, [["--standalone", "--nproc-per-node", "2"]])
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("nodes", "one"))
    assert a["processes"] == b["processes"] == 2
    assert a["history"] == b["history"] and len(a["history"]) == 2
    from safetensors.torch import load_file

    for name in ("generator.safetensors", "discriminator.safetensors"):
        wa, wb = (load_file(tmp_path / d / name) for d in ("nodes", "one"))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
    print(f"two nodes vs one node of two: identical, {time.perf_counter() - t0:.0f} s")
