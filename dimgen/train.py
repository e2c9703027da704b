"""Training loop for noise-injected Deep InfoMax encoders, with checkpoints and resume.

``train_encoder(config)`` is the library entry point behind ``dimgen encode``: it loads the data,
trains, recalibrates the normalisation over the training data, estimates the MI lower bound on
held-out data and (given ``out``) writes a self-describing run folder.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .augment import GaussianPixelNoise
from .channel import NoiseChannel, make_channel
from .config import EncoderConfig, save_config, to_dict, validate
from .critics import build_critic
from .data import Dataset, TensorBatches, check_finite, load_data
from .errors import ConfigError, RunFolderError, TrainingError
from .io import load_weights, save_weights
from .nets import build_encoder, resolve_encoder_kind
from .objectives import NoisyInfoMax

__all__ = ["EncoderRun", "build_model", "resolve_device", "train_encoder"]

CHECKPOINT = "checkpoint.safetensors"


@dataclass
class EncoderRun:
    """The result of :func:`train_encoder`: trained modules, codes, metrics and the run folder."""

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
    return NoisyInfoMax(encoder, channel, critic, GaussianPixelNoise(cfg.aug_noise), cfg.bound)


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


def save_checkpoint(
    path: Path,
    model: NoisyInfoMax,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    epoch: int,
    history: list[float],
    cfg: EncoderConfig,
) -> None:
    """Weights, optimiser, RNG states and epoch: all a bit-exact resume needs."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_t, opt_meta = _opt_tensors(opt)
    tensors.update(opt_t)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.loader"] = gen.get_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    meta = {"kind": "encoder-checkpoint", "epoch": epoch, "history": history,
            "optimizer": opt_meta, "config": to_dict(cfg)}  # fmt: skip
    save_weights(path, tensors, meta)


def load_checkpoint(
    path: Path, model: NoisyInfoMax, opt: torch.optim.Optimizer, gen: torch.Generator
) -> tuple[int, list[float]]:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns (epoch, history)."""
    tensors, meta = load_weights(path)
    if meta.get("kind") != "encoder-checkpoint":
        raise RunFolderError(f"{path} is not an encoder checkpoint")
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        _opt_load(opt, tensors, meta["optimizer"])
        torch.set_rng_state(tensors["rng.torch"])
        gen.set_state(tensors["rng.loader"])
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

    Example:
        >>> run = train_encoder(EncoderConfig(epochs=2))   # doctest: +SKIP
        >>> run.metrics["kl_upper_bound_nats"]             # doctest: +SKIP
    """
    cfg = validate(config)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
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
    if len(ds.x_train) < 2:
        raise ConfigError(f"{cfg.data}: need at least 2 training samples")

    run_dir = Path(out) if out is not None else None
    ckpt = run_dir / CHECKPOINT if run_dir is not None else None
    if run_dir is not None and not resume and run_dir.exists() and any(run_dir.iterdir()):
        raise RunFolderError(f"output folder {run_dir} exists and is not empty")
    if resume and (ckpt is None or not ckpt.is_file()):
        raise RunFolderError(f"nothing to resume: no {CHECKPOINT} in {run_dir}")

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg, ds.shape).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x_train = _to_device(ds.x_train, device)
    x_test = _to_device(ds.x_test, device)
    batch = min(cfg.batch_size, len(x_train))
    loader = TensorBatches(x_train, batch_size=batch, generator=gen)

    start, history = 0, []
    if resume:
        assert ckpt is not None
        start, history = load_checkpoint(ckpt, model, opt, gen)
    elif run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")

    step = _make_step(model, opt, cfg, device)
    bar = _progress(range(start, cfg.epochs), progress, cfg.epochs, start)
    t0 = time.perf_counter()
    model.train()
    for epoch in bar:
        total = torch.zeros((), device=device)
        for (xb,) in loader:
            total += step(xb)
        mean = float(total) / len(loader)  # one host sync per epoch
        if not math.isfinite(mean):
            where = f"; last good checkpoint kept in {ckpt}" if ckpt and ckpt.exists() else ""
            raise TrainingError(f"loss diverged (non-finite) at epoch {epoch + 1}{where}")
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
                raise TrainingError(f"weights became non-finite by epoch {done}{where}")
            save_checkpoint(ckpt, model, opt, gen, done, history, cfg)
    train_seconds = time.perf_counter() - t0

    run = finish(cfg, model, ds, x_train, x_test, history)
    run.metrics["train_seconds"] = train_seconds
    if run_dir is not None:
        from .runs import write_encoder_run

        write_encoder_run(run, run_dir)
        if ckpt is not None and ckpt.exists():
            ckpt.unlink()  # the run is complete: weights live in encoder/critic.safetensors
        run.path = run_dir
    return run


def _make_step(
    model: NoisyInfoMax, opt: torch.optim.Optimizer, cfg: EncoderConfig, device: torch.device
) -> Callable[[Tensor], Tensor]:
    use_amp = cfg.amp and device.type == "cuda"

    def step(xb: Tensor) -> Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            bound = model(xb)
        opt.zero_grad(set_to_none=True)
        (-bound).backward()
        opt.step()
        return bound.detach().float()

    if cfg.compile:
        try:
            compiled = torch.compile(step)
        except Exception:  # no compiler available: eager is correct, only slower
            return step
        return compiled
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
