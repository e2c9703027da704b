"""Training loop for noise-injected Deep InfoMax encoders, with checkpoints and resume.

``train_encoder(config)`` is the library entry point behind ``dimgen encode``: it loads the data,
trains, recalibrates the normalisation over the training data, estimates the MI lower bound on
held-out data and (given ``out``) writes a self-describing run folder.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .augment import build_augmentation
from .channel import NoiseChannel, make_channel
from .config import EncoderConfig, save_config, to_dict, validate
from .critics import build_critic
from .data import Dataset, TensorBatches, check_finite, load_data
from .errors import ConfigError, DimgenError, RunFolderError, TrainingError
from .io import load_weights, save_weights
from .nets import build_encoder, resolve_encoder_kind
from .objectives import NoisyInfoMax

__all__ = ["EncoderRun", "build_model", "make_step", "resolve_device", "train_encoder"]

CHECKPOINT = "checkpoint.safetensors"


@dataclass
class EncoderRun:
    """The result of :func:`train_encoder`: trained modules, codes, metrics and the run folder.

    In data-parallel training only rank 0 evaluates and writes; other processes get their trained
    modules and history with empty metrics and codes.
    """

    config: EncoderConfig
    model: NoisyInfoMax
    metrics: dict[str, Any]
    codes: np.ndarray
    labels: np.ndarray | None
    split: np.ndarray
    history: list[float] = field(default_factory=list)
    path: Path | None = None

    @property
    def encoder(self) -> nn.Module:
        return self.model.encoder

    @property
    def channel(self) -> NoiseChannel:
        return self.model.channel


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; a clear error if cuda is asked for but absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
    return torch.device(name)


def model_spec(cfg: EncoderConfig, in_shape: tuple[int, ...]) -> dict[str, Any]:
    """Everything needed to rebuild the encoder and channel (stored in the weights' metadata)."""
    return {
        "in_shape": list(in_shape),
        "encoder": resolve_encoder_kind(cfg.encoder, in_shape),
        "encoder_hidden": cfg.encoder_hidden,
        "dim": cfg.dim,
        "prior": cfg.prior,
        "sigma": cfg.sigma,
        "eps": cfg.eps,
    }


def build_model(cfg: EncoderConfig, in_shape: tuple[int, ...]) -> NoisyInfoMax:
    """Encoder, channel, critic and augmentation for ``cfg`` on inputs of ``in_shape``."""
    encoder = build_encoder(cfg.encoder, in_shape, cfg.dim, cfg.encoder_hidden)
    channel = make_channel(cfg.prior, cfg.dim, cfg.sigma, cfg.eps)
    critic = build_critic(cfg.critic, cfg.dim, cfg.critic_hidden, cfg.critic_chunk)
    augment = build_augmentation(
        cfg.aug_noise, in_shape, cfg.aug_shift, cfg.aug_rotate, cfg.aug_scale
    )
    return NoisyInfoMax(encoder, channel, critic, augment, cfg.bound)


# ---------------------------------------------------------------------------------------------
# checkpoints


def _opt_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"opt.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _opt_load(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _rng_state(device: torch.device) -> dict[str, Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def save_checkpoint(
    path: Path,
    model: NoisyInfoMax,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    epoch: int,
    history: list[float],
    cfg: EncoderConfig,
    rank_states: list[dict[str, Tensor]] | None = None,
) -> None:
    """Weights, optimiser, RNG states and epoch: all a bit-exact resume needs.

    ``rank_states``: every process's RNG states in data-parallel training (rank order).
    """
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_t, opt_meta = _opt_tensors(opt)
    tensors.update(opt_t)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.loader"] = gen.get_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    for r, states in enumerate(rank_states or []):
        for k, v in states.items():
            tensors[f"rng.rank{r}.{k}"] = v
    meta = {"kind": "encoder-checkpoint", "epoch": epoch, "history": history,
            "optimizer": opt_meta, "config": to_dict(cfg),
            "world_size": len(rank_states) if rank_states else 1}  # fmt: skip
    save_weights(path, tensors, meta)


def load_checkpoint(
    path: Path,
    model: NoisyInfoMax,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    rank: int = 0,
    world: int = 1,
    device: torch.device | None = None,
) -> tuple[int, list[float]]:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns (epoch, history)."""
    tensors, meta = load_weights(path)
    if meta.get("kind") != "encoder-checkpoint":
        raise RunFolderError(f"{path} is not an encoder checkpoint")
    written = meta.get("world_size", 1)
    if written != world:
        raise RunFolderError(
            f"{path} was written by {written} process(es); resume it with the same number "
            f"(now {world})"
        )
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _opt_load(opt, tensors, meta["optimizer"])
        gen.set_state(tensors["rng.loader"])
        if world > 1:
            torch.set_rng_state(tensors[f"rng.rank{rank}.torch"])
            key = f"rng.rank{rank}.cuda"
            if key in tensors and device is not None and device.type == "cuda":
                torch.cuda.set_rng_state(tensors[key], device)
        else:
            torch.set_rng_state(tensors["rng.torch"])
            cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
            if cuda_states and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
        return int(meta["epoch"]), [float(v) for v in meta["history"]]
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise RunFolderError(
            f"{path} does not match this configuration ({str(exc)[:120]})"
        ) from None


# ---------------------------------------------------------------------------------------------
# training


def _to_device(x: np.ndarray, device: torch.device) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device)


@torch.no_grad()
def _outputs(encoder: nn.Module, x: Tensor, batch: int = 4096) -> Tensor:
    return torch.cat([encoder(x[i : i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def estimate_mi(
    model: NoisyInfoMax, x: Tensor, batch_size: int, batches: int, seed: int
) -> tuple[float, float]:
    """Mean and standard error of the MI lower bound over random held-out batches (eval mode)."""
    was = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    b = min(batch_size, len(x))
    vals = []
    for _ in range(batches):
        idx = torch.randperm(len(x), generator=g)[:b].to(x.device)
        vals.append(float(model(x[idx])))
    model.train(was)
    arr = np.asarray(vals)
    return float(arr.mean()), float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else 0.0


def train_encoder(
    config: EncoderConfig,
    out: str | Path | None = None,
    *,
    progress: bool = False,
    resume: bool = False,
    data: Dataset | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> EncoderRun:
    """Train an encoder whose codes follow ``config.prior``; write a run folder if ``out`` is given.

    Data-parallel training: with ``config.devices = N > 1`` this spawns N processes (one per GPU,
    or gloo processes on the CPU) and returns rank 0's run; under ``torchrun`` (``WORLD_SIZE`` set)
    or inside an initialised process group every process calls this and shares the work. Rank 0
    evaluates and writes the run folder.

    Example:
        >>> run = train_encoder(EncoderConfig(epochs=2))   # doctest: +SKIP
        >>> run.metrics["kl_upper_bound_nats"]             # doctest: +SKIP
    """
    cfg = validate(config)
    from . import distributed as ddp

    external = ddp.launched_externally()
    if cfg.devices > 1 and not external and not ddp.is_active():
        if on_epoch is not None:
            raise ConfigError(
                "on_epoch callbacks cannot cross into spawned processes (devices > 1)"
            )
        return _spawn_training(cfg, out, progress, resume, data)
    owner = False
    if ddp.is_active():  # a spawned worker, or a caller that set up its own process group
        world = ddp.world_size()
        if cfg.devices > 1 and cfg.devices != world:
            raise ConfigError(f"devices is {cfg.devices} but the process group has {world}")
        device = _rank_device(cfg.device)
    elif external:  # torchrun
        if cfg.devices > 1 and cfg.devices != external:
            raise ConfigError(f"devices is {cfg.devices} but the launcher started {external}")
        if cfg.device.startswith("cuda:"):
            raise ConfigError(
                "with several processes each uses cuda:LOCAL_RANK: set device to auto or cuda"
            )
        device = ddp.init_from_env(resolve_device(cfg.device).type)
        owner = True
    else:
        device = resolve_device(cfg.device)
    threads = torch.get_num_threads()
    try:
        return _train(cfg, device, out, progress, resume, data, on_epoch)
    finally:
        torch.set_num_threads(threads)  # the caller's setting, not the run's
        if owner:
            import torch.distributed as dist

            dist.destroy_process_group()


def _rank_device(name: str) -> torch.device:
    """This process's device in a process group: ``cuda:LOCAL_RANK`` or the CPU."""
    device = resolve_device(name)
    if device.type != "cuda":
        return device
    if name.startswith("cuda:"):
        raise ConfigError(
            "with several processes each uses cuda:LOCAL_RANK: set device to auto or cuda"
        )
    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    return torch.device(f"cuda:{local}")


def _spawn_training(
    cfg: EncoderConfig, out: str | Path | None, progress: bool, resume: bool, data: Dataset | None
) -> EncoderRun:
    from .distributed import spawn

    device = resolve_device(cfg.device)
    if device.type == "cuda":
        if cfg.device.startswith("cuda:"):
            raise ConfigError("devices > 1 uses cuda:0 .. cuda:N-1: set device to auto or cuda")
        if cfg.devices > torch.cuda.device_count():
            raise ConfigError(
                f"devices {cfg.devices} but only {torch.cuda.device_count()} CUDA device(s)"
            )
    elif cfg.devices > max(2, os.cpu_count() or 1):
        raise ConfigError(
            f"devices {cfg.devices} exceeds the {os.cpu_count()} CPU cores of this machine"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    runs = spawn(_train_worker, cfg.devices, (cfg, out, progress, resume, data), backend=backend)
    return runs[0]


def _train_worker(
    cfg: EncoderConfig, out: str | Path | None, progress: bool, resume: bool, data: Dataset | None
) -> EncoderRun | None:
    from .distributed import rank

    run = train_encoder(cfg, out, progress=progress and rank() == 0, resume=resume, data=data)
    if rank() != 0:
        return None
    run.model.cpu()
    return run


def _train(
    cfg: EncoderConfig,
    device: torch.device,
    out: str | Path | None,
    progress: bool,
    resume: bool,
    data: Dataset | None,
    on_epoch: Callable[[int, float], None] | None,
) -> EncoderRun:
    from . import distributed as ddp

    rank, world = ddp.rank(), ddp.world_size()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif world > 1 and device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if device.type == "cpu":
        from .speed import tune_cpu_allocator

        tune_cpu_allocator()
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    run_dir = Path(out) if out is not None else None
    ckpt = run_dir / CHECKPOINT if run_dir is not None else None

    # Every check that can fail on one process is agreed on by all, so none is left waiting.
    error: DimgenError | None = None
    ds: Dataset | None = None
    try:
        ds = (
            data
            if data is not None
            else load_data(cfg.data, cfg.data_root, cfg.test_fraction, cfg.seed)
        )
        if cfg.max_train and cfg.max_train < len(ds.x_train):
            y = None if ds.y_train is None else ds.y_train[: cfg.max_train]
            ds = Dataset(ds.name, ds.x_train[: cfg.max_train], y, ds.x_test, ds.y_test)
        check_finite(ds.x_train, f"{cfg.data} (train)")
        check_finite(ds.x_test, f"{cfg.data} (test)")
        if len(ds.x_train) < 2 * world:
            raise ConfigError(f"{cfg.data}: need at least {2 * world} training samples")
        if rank == 0:
            if run_dir is not None and not resume and run_dir.exists() and any(run_dir.iterdir()):
                raise RunFolderError(f"output folder {run_dir} exists and is not empty")
            if resume and (ckpt is None or not ckpt.is_file()):
                raise RunFolderError(f"nothing to resume: no {CHECKPOINT} in {run_dir}")
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, ds.shape)
    except DimgenError as exc:
        error = exc
    ddp.agree(error)
    assert ds is not None

    gen = torch.Generator().manual_seed(cfg.seed)
    model = model.to(device)
    if world > 1:  # same initial weights everywhere, different noise on every process
        torch.manual_seed(ddp.rank_seed(cfg.seed, rank))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x_train = _to_device(ds.x_train, device)
    x_test = _to_device(ds.x_test, device)
    batch = min(cfg.batch_size, len(x_train))
    batch -= batch % world
    loader = TensorBatches(x_train, batch_size=batch, generator=gen, shard=(rank, world))

    start, history = 0, []
    error = None
    try:
        if resume:
            assert ckpt is not None
            start, history = load_checkpoint(ckpt, model, opt, gen, rank, world, device)
        elif run_dir is not None and rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.yaml")
    except DimgenError as exc:
        error = exc
    ddp.agree(error)

    train_model: nn.Module = model
    if world > 1:
        model.data_parallel = True
        train_model = _ddp(model, device)
    step = make_step(train_model, model, opt, cfg, device)
    bar = _progress(range(start, cfg.epochs), progress and rank == 0, cfg.epochs, start)
    t0 = time.perf_counter()
    train_model.train()
    for epoch in bar:
        total = torch.zeros((), device=device)
        for (xb,) in loader:
            total += step(xb)
        if world > 1:
            import torch.distributed as dist

            dist.all_reduce(total)
            total /= world
        mean = float(total) / len(loader)  # one host sync per epoch
        if not math.isfinite(mean):
            where = f"; last good checkpoint kept in {ckpt}" if ckpt and ckpt.exists() else ""
            raise ddp.everywhere(
                TrainingError(f"loss diverged (non-finite) at epoch {epoch + 1}{where}")
            )
        history.append(mean)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(mi=f"{mean:.3f}", cap=f"{model.channel.capacity():.3f}")
        if on_epoch is not None:
            on_epoch(epoch, mean)
        done = epoch + 1
        if (
            ckpt is not None
            and cfg.checkpoint_every
            and done % cfg.checkpoint_every == 0
            and done < cfg.epochs
        ):
            if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                where = f"; last good checkpoint kept in {ckpt}" if ckpt.exists() else ""
                raise ddp.everywhere(
                    TrainingError(f"weights became non-finite by epoch {done}{where}")
                )
            states = _gather_rng_states(device) if world > 1 else None
            if rank == 0:
                save_checkpoint(ckpt, model, opt, gen, done, history, cfg, states)
    train_seconds = time.perf_counter() - t0
    model.data_parallel = False
    model.eval()

    if rank != 0:  # rank 0 evaluates and writes; the weights are the same everywhere
        empty = np.zeros((0, cfg.dim), dtype=np.float32)
        return EncoderRun(cfg, model, {}, empty, None, np.array([], dtype=str), history)
    run = finish(cfg, model, ds, x_train, x_test, history)
    run.metrics["train_seconds"] = train_seconds
    run.metrics["processes"] = world
    if run_dir is not None:
        from .runs import write_encoder_run

        write_encoder_run(run, run_dir)
        if ckpt is not None and ckpt.exists():
            ckpt.unlink()  # the run is complete: weights live in encoder/critic.safetensors
        run.path = run_dir
    return run


def _ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel without per-step buffer broadcasts: the channel's running
    statistics are global and updated identically on every process."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
        return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def _gather_rng_states(device: torch.device) -> list[dict[str, Tensor]]:
    import torch.distributed as dist

    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, {k: v.cpu() for k, v in _rng_state(device).items()})
    return states


def make_step(
    train_model: nn.Module,
    model: NoisyInfoMax,
    opt: torch.optim.Optimizer,
    cfg: EncoderConfig,
    device: torch.device,
) -> Callable[[Tensor], Tensor]:
    """One optimisation step on a batch; returns the batch's bound as a device tensor (no sync).

    ``train_model`` is ``model`` or its DistributedDataParallel wrapper.
    """
    use_amp = cfg.amp and device.type == "cuda"

    def step(xb: Tensor) -> Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            bound = train_model(xb)
        opt.zero_grad(set_to_none=True)
        (-bound).backward()
        opt.step()
        return bound.detach().float()

    if cfg.compile:
        from .speed import CompiledStep

        return CompiledStep(step, [model], opt)
    return step


def _progress(it: range, enabled: bool, total: int, start: int) -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, initial=start, desc="encode", unit="epoch", leave=False)


def finish(
    cfg: EncoderConfig,
    model: NoisyInfoMax,
    ds: Dataset,
    x_train: Tensor,
    x_test: Tensor,
    history: list[float],
) -> EncoderRun:
    """Recalibrate the normalisation on the training data, estimate MI, compute codes and metrics."""
    model.eval()
    model.channel.calibrate([_outputs(model.encoder, x_train)])
    with torch.no_grad():
        codes_tr = model.channel.normalise(_outputs(model.encoder, x_train)).cpu().numpy()
        codes_te = model.channel.normalise(_outputs(model.encoder, x_test)).cpu().numpy()
    mi, mi_se = estimate_mi(model, x_test, cfg.batch_size, cfg.eval_batches, cfg.seed + 1)
    mi_tr, _ = estimate_mi(model, x_train, cfg.batch_size, cfg.eval_batches, cfg.seed + 2)
    cap = model.channel.capacity()
    from .runs import code_metrics

    metrics: dict[str, Any] = {
        "prior": cfg.prior,
        "dim": cfg.dim,
        "sigma": cfg.sigma if cfg.prior == "gaussian" else None,
        "eps": cfg.eps if cfg.prior == "uniform" else None,
        "capacity_nats": cap,
        "mi_lower_bound_nats": mi,
        "mi_lower_bound_stderr": mi_se,
        "mi_lower_bound_train_nats": mi_tr,
        "mi_bound_kind": cfg.bound,
        "mi_eval_batch": min(cfg.batch_size, len(x_test)),
        "kl_upper_bound_nats": cap - mi,
        "n_train": len(x_train),
        "n_test": len(x_test),
        "epochs": cfg.epochs,
        "final_train_bound_nats": history[-1] if history else None,
    }
    metrics.update(code_metrics(codes_tr, codes_te, ds.y_train, ds.y_test, cfg.prior))
    codes = np.concatenate([codes_tr, codes_te]).astype(np.float32)
    labels = None
    if ds.y_train is not None and ds.y_test is not None:
        labels = np.concatenate([ds.y_train, ds.y_test]).astype(np.int64)
    split = np.array(["train"] * len(codes_tr) + ["test"] * len(codes_te))
    return EncoderRun(cfg, model, metrics, codes, labels, split, history)
