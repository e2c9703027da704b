"""The encoder trainer: noise-injected Deep InfoMax on the training harness.

``train_encoder(config)`` is the library entry point behind ``dimgen encode``: it loads the data,
trains, recalibrates the normalisation over the training data, estimates the MI lower bound on
held-out data and (given ``out``) writes a self-describing run folder. Only the objective's own
parts live here (model, one epoch, final metrics); the loop, checkpoints, resume, run folder,
devices and data-parallel processes are :mod:`dimgen.training`'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..config import EncoderConfig, replace, validate
from ..data.sources import (
    Dataset,
    TensorBatches,
    absolute_root,
    absolute_source,
    check_finite,
    load_data,
    source_digest,
)
from ..data.stream import StreamBatches, StreamedData, data_mode, is_streamed, load_stream
from ..errors import ConfigError, DataError
from ..training import (
    CHECKPOINT,
    CheckpointState,
    Context,
    Fitted,
    ScalarCallback,
    Trainer,
    fit,
    smoke,
)
from ..training.devices import data_parallel, launch, needs_spawn, resolve_device
from ..training.phases import phase
from ..training.schedules import cosine_scheduler
from .augment import build_augmentation
from .channel import UniformChannel, make_channel
from .critics import build_critic
from .encoders import build_encoder
from .objectives import NoisyInfoMax
from .runs import EncoderRun, code_metrics, model_spec, token_metrics, write_encoder_artefacts

__all__ = [
    "CHECKPOINT",
    "EncoderRun",
    "EncoderTrainer",
    "build_model",
    "estimate_mi",
    "finish",
    "make_step",
    "model_spec",
    "resolve_device",
    "train_encoder",
]


def build_model(cfg: EncoderConfig, in_shape: tuple[int, ...]) -> NoisyInfoMax:
    """Encoder, channel, critic and augmentation for ``cfg`` on inputs of ``in_shape``."""
    encoder = build_encoder(cfg.encoder, in_shape, cfg.dim, cfg.encoder_hidden)
    channel = make_channel(cfg.prior, cfg.dim, cfg.sigma, cfg.eps, cfg.squash,
                           cfg.squash_temp_start, cfg.whiten)  # fmt: skip
    critic = build_critic(cfg.critic, cfg.dim, cfg.critic_hidden, cfg.critic_chunk)
    augment = build_augmentation(
        cfg.aug_noise, in_shape, cfg.aug_shift, cfg.aug_rotate, cfg.aug_scale
    )
    return NoisyInfoMax(encoder, channel, critic, augment, cfg.bound, cfg.view_norm, cfg.sigreg)


def squash_temperature(cfg: EncoderConfig, epoch: int, epochs: int) -> float:
    """The ``steps`` squash temperature at 0-based ``epoch`` of ``epochs``: geometric from
    ``cfg.squash_temp_start`` (first epoch) to ``cfg.squash_temp`` (last epoch)."""
    frac = min(1.0, epoch / (epochs - 1)) if epochs > 1 else 1.0
    return cfg.squash_temp_start * (cfg.squash_temp / cfg.squash_temp_start) ** frac


def _to_device(x: np.ndarray, device: torch.device) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device)


@torch.inference_mode()
def _outputs(encoder: nn.Module, x: Tensor, batch: int = 4096) -> Tensor:
    """Encoder outputs (n, d) of images x (n, ...), in batches, without autograd."""
    return torch.cat([encoder(x[i : i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def estimate_mi(
    model: NoisyInfoMax, x: Tensor, batch_size: int, batches: int, seed: int
) -> tuple[float, float]:
    """Mean and standard error (nats) of the MI lower bound over random held-out batches."""
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


#: Training images whose encoder outputs fix the per-epoch statistics and fit its 5-NN probe,
#: and held-out images coded for its 5-NN and prior-match statistic (the final certificate,
#: :func:`finish`, uses all of them).
CURVE_TRAIN_IMAGES, CURVE_TEST_IMAGES = 10_000, 5_000


@torch.no_grad()
def heldout_certificate(
    model: NoisyInfoMax,
    x_train: Tensor,
    x_test: Tensor,
    y_train: np.ndarray | None,
    y_test: np.ndarray | None,
    batch_size: int,
    batches: int,
    seed: int,
) -> dict[str, float]:
    """The certificate as it stands now, with fixed statistics, leaving the model untouched.

    Calibrates the normalisation on the first :data:`CURVE_TRAIN_IMAGES` training images (as
    :func:`finish` does on all of them), then returns ``certified_mi`` (held-out MI lower bound
    in nats, ``batches`` batches), ``kl_bound`` (capacity minus it, nats: the bound on
    KL(f(X) + Z || prior * noise), Butakov et al.), ``knn5`` (held-out 5-NN accuracy, when labels
    exist) and ``prior_ratio`` (:func:`dimgen.infomax.sigreg.prior_match_ratio` of the held-out codes,
    mapped through the normal quantile for the uniform prior). The normalisation statistics, the
    train / eval mode and the global RNG are restored, so training resumes bit-exactly.
    """
    was = model.training
    saved = {name: t.clone() for name, t in model.channel.named_buffers()}  # the statistics
    devices = [x_train.device] if x_train.device.type == "cuda" else []
    try:
        model.eval()
        model.channel.calibrate([_outputs(model.encoder, x_train[:CURVE_TRAIN_IMAGES])])
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            mi, _ = estimate_mi(model, x_test, batch_size, batches, seed)
        out = {"certified_mi": mi, "kl_bound": model.channel.capacity() - mi}
        codes_te = model.channel.normalise(_outputs(model.encoder, x_test[:CURVE_TEST_IMAGES]))
        if not bool(torch.isfinite(codes_te).all()):  # diverged: the loop stops on the NaN
            return {**out, "certified_mi": math.nan, "kl_bound": math.nan}
        if y_train is not None and y_test is not None and len(np.unique(y_train)) > 1:
            from sklearn.neighbors import KNeighborsClassifier

            n_fit = min(CURVE_TRAIN_IMAGES, len(x_train))
            codes_tr = model.channel.normalise(_outputs(model.encoder, x_train[:n_fit]))
            knn = KNeighborsClassifier(n_neighbors=min(5, n_fit)).fit(
                codes_tr.cpu().numpy(), y_train[:n_fit]
            )
            out["knn5"] = float(knn.score(codes_te.cpu().numpy(), y_test[:CURVE_TEST_IMAGES]))
        if isinstance(model.channel, UniformChannel):
            codes_te = torch.special.ndtri(codes_te.double().clamp(1e-6, 1 - 1e-6))
        if len(codes_te) >= 2:
            from .sigreg import prior_match_ratio

            out["prior_ratio"] = prior_match_ratio(codes_te, seed)
        return out
    finally:
        for name, t in model.channel.named_buffers():
            t.copy_(saved[name])
        model.train(was)


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
            bound, penalty = train_model(xb, with_penalty=True)
        opt.zero_grad(set_to_none=True)
        (penalty - bound).backward()
        opt.step()
        return bound.detach().float()

    if cfg.compile:
        from ..training.speed import CompiledStep

        return CompiledStep(step, [model], opt)
    return step


def _check_sizes(cfg: EncoderConfig, ds: Dataset | StreamedData, world: int) -> None:
    """Refuse, before training, splits the run cannot use (each later ended in an internal error).

    Raises:
        DataError: fewer than 2 training samples per process (in-batch negatives, batch-norm) or
            fewer than 2 held-out samples (the held-out MI estimate needs batches of B >= 2).
    """
    fix = "use more data or change test_fraction"
    n_train, n_test = len(ds.x_train), len(ds.x_test)
    if n_train < 2 * world:
        raise DataError(
            f"{cfg.data}: {n_train} training sample(s) (test_fraction {cfg.test_fraction:g}); "
            f"training needs at least {2 * world}: {fix}"
        )
    if n_test < 2:
        raise DataError(
            f"{cfg.data}: {n_test} held-out sample(s) (test_fraction {cfg.test_fraction:g}); "
            f"the held-out MI estimate needs at least 2: {fix}"
        )


class EncoderTrainer(Trainer):
    """Noise-injected InfoMax: one :meth:`step` is one epoch; scalar ``bound`` (nats)."""

    kind = "encoder"
    unit = "epoch"
    label = "encode"

    def __init__(self, cfg: EncoderConfig, data: Dataset | StreamedData | None = None) -> None:
        self.config = cfg
        self.data = data
        self.total = cfg.epochs
        self.checkpoint_every = cfg.checkpoint_every
        self.threads = cfg.threads
        self.spec: dict[str, Any] = {}
        self.data_digest: dict[str, Any] | None = None
        self.data_mode: dict[str, Any] = {"mode": "memory"}

    def setup(self, ctx: Context) -> CheckpointState:
        cfg, world = self.config, ctx.world
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        ds = self.data
        if ds is None:
            if is_streamed(cfg.data):  # decoded on the fly by DataLoader workers
                ds = load_stream(cfg.data, cfg.test_fraction, cfg.split_seed)
            else:
                ds = load_data(cfg.data, cfg.data_root, cfg.test_fraction, cfg.split_seed)
            self.data_digest = source_digest(cfg.data)  # derived runs refuse a changed source
        streamed = isinstance(ds, StreamedData)
        if cfg.max_train and cfg.max_train < len(ds.x_train):
            y = None if ds.y_train is None else ds.y_train[: cfg.max_train]
            if streamed:
                x = ds.x_train.subset(cfg.max_train)
                ds = StreamedData(ds.name, x, y, ds.x_test, ds.y_test, ds.workers)
            else:
                ds = Dataset(ds.name, ds.x_train[: cfg.max_train], y, ds.x_test, ds.y_test)
        if not streamed:  # a streamed source is capped by the smoke step limit alone
            ds = smoke.cap_data(ds)  # DIMGEN_SMOKE: the first 1,024 / 512 samples only
        _check_sizes(cfg, ds, world)
        # recorded absolute, so a derived run started from another directory finds the data
        cfg = self.config = replace(
            cfg, data=absolute_source(cfg.data), data_root=absolute_root(cfg.data_root)
        )
        if not streamed:  # decoded uint8 is always finite
            check_finite(ds.x_train, f"{cfg.data} (train)")
            check_finite(ds.x_test, f"{cfg.data} (test)")
        self.ds = ds
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, ds.shape)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.model = model.to(ctx.device)
        if world > 1:  # same initial weights everywhere, different noise on every process
            from ..training.distributed import rank_seed

            torch.manual_seed(rank_seed(cfg.seed, ctx.rank))
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        batch = min(cfg.batch_size, len(ds.x_train))
        batch -= batch % world
        # the epoch order is drawn from self.gen in both modes: the checkpointed generator is
        # the data position, and a streamed run sees the in-memory run's batches
        if streamed:
            self.x_train, self.x_test = ds.x_train.to(ctx.device), ds.x_test.to(ctx.device)
            self.loader: TensorBatches | StreamBatches = StreamBatches(
                self.x_train, batch_size=batch, generator=self.gen, shard=(ctx.rank, world)
            )
        else:
            self.x_train = _to_device(ds.x_train, ctx.device)
            self.x_test = _to_device(ds.x_test, ctx.device)
            self.loader = TensorBatches(
                self.x_train, batch_size=batch, generator=self.gen, shard=(ctx.rank, world)
            )
        self.data_mode = data_mode(ds)
        # DIMGEN_SMOKE: at most 30 optimiser steps in all, whatever the epochs and the data.
        self.per_epoch = smoke.cap_batches(len(self.loader), smoke.cap_units(cfg.epochs, "epoch"))
        self.substeps = self.per_epoch
        # lr_schedule cosine: one scheduler step per optimiser step; constant: no scheduler at
        # all, so constant runs are the runs made before the option existed, bit for bit
        self.sched: torch.optim.lr_scheduler.LambdaLR | None = None
        schedulers: dict[str, Any] = {}
        if cfg.lr_schedule == "cosine":
            self.sched = cosine_scheduler(self.opt, self.per_epoch * self.total,
                                          self.per_epoch * cfg.lr_warmup_epochs)  # fmt: skip
            schedulers["lr"] = self.sched
        return CheckpointState({"model": self.model}, {"opt": self.opt}, schedulers,
                               generators={"batches": self.gen})  # fmt: skip

    def begin(self, ctx: Context) -> None:
        self.ctx = ctx
        if ctx.world > 1:
            self.model.data_parallel = True
        train_model = data_parallel(self.model, ctx.device)
        self._step = make_step(train_model, self.model, self.opt, self.config, ctx.device)
        train_model.train()

    def step(self, index: int) -> dict[str, Tensor]:
        channel = self.model.channel
        if isinstance(channel, UniformChannel) and channel.squash_name == "steps":
            channel.set_temperature(squash_temperature(self.config, index, self.total))
        total = torch.zeros((), device=self.ctx.device)
        for i, (xb,) in enumerate(self.loader):
            if i == self.per_epoch:  # a smoke run's capped epoch
                break
            total += self._step(xb)
            if self.sched is not None:
                self.sched.step()
            self.tick()
        if self.ctx.world > 1:
            import torch.distributed as dist

            dist.all_reduce(total)
            total /= self.ctx.world
        out = {"bound": total.double() / self.per_epoch}  # the epoch's mean, as float(total) / n
        every = self.config.curve_every
        if every and ((index + 1) % every == 0 or index + 1 == self.total):
            # Every process computes the same numbers (same weights, fixed seed): no collective.
            ds, cfg = self.ds, self.config
            cert = heldout_certificate(self.model, self.x_train, self.x_test, ds.y_train,
                                       ds.y_test, cfg.batch_size, smoke.cap_size(cfg.eval_batches, 2),
                                       cfg.seed + 1 + index)  # fmt: skip
            out.update({k: torch.tensor(v, dtype=torch.float64) for k, v in cert.items()})
        return out

    def postfix(self, scalars: dict[str, float]) -> dict[str, str]:
        out = {"mi": f"{scalars['bound']:.3f}", "cap": f"{self.model.channel.capacity():.3f}"}
        if "certified_mi" in scalars:
            out["certified"] = f"{scalars['certified_mi']:.3f}"
        return out

    def end(self) -> None:
        self.model.data_parallel = False
        self.model.eval()

    def finish(self, fitted: Fitted, out: Path | None) -> EncoderRun:
        cfg = self.config
        history = [float(h["bound"]) for h in fitted.history]
        if self.ctx.rank != 0:  # rank 0 evaluates and writes; the weights are the same everywhere
            empty = np.zeros((0, cfg.dim), dtype=np.float32)
            return EncoderRun(cfg, self.model, {}, empty, None, np.array([], dtype=str), history)
        run = finish(cfg, self.model, self.ds, self.x_train, self.x_test, history, self.total,
                     show=self.ctx.progress)  # fmt: skip
        run.metrics["train_seconds"] = fitted.train_seconds
        run.metrics["processes"] = self.ctx.world
        # An epoch is floor(n_train / batch) steps: the last partial batch is dropped.
        run.metrics["steps_per_epoch"] = self.per_epoch
        run.metrics["steps"] = self.per_epoch * self.total
        run.metrics["seed"] = self.config.seed
        curve = [{k: float(v) for k, v in h.items()} for h in fitted.history if "certified_mi" in h]
        if curve:  # the held-out certificate over training (log.csv has the same rows)
            run.metrics["curve"] = curve
        run.metrics["split_seed"] = self.config.split_seed
        if out is not None:
            with phase("encode", "writing codes, plots and report", self.ctx.progress, 4, 4):
                self.spec = write_encoder_artefacts(run, out)
            run.path = out
        return run

    def run_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"spec": self.spec, "data_mode": self.data_mode}
        if self.data_digest is not None:
            info["data_digest"] = self.data_digest
        return info


def train_encoder(
    config: EncoderConfig,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    resume: bool = False,
    data: Dataset | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    on_scalars: ScalarCallback | None = None,
) -> EncoderRun:
    """Train an encoder whose codes follow ``config.prior``; write a run folder if ``out`` is given.

    Data-parallel training: with ``config.devices = N > 1`` this spawns N processes (one per GPU,
    or gloo processes on the CPU) and returns rank 0's run; under ``torchrun`` (``WORLD_SIZE`` set)
    or inside an initialised process group every process calls this and shares the work. Rank 0
    evaluates and writes the run folder. ``progress`` (default True, as the CLI): a tqdm bar
    and one line per evaluation phase on stderr; ``progress=False`` is silent (``--quiet``).
    ``on_epoch(epoch, bound)`` is called after every epoch
    (0-based epoch, training bound in nats); ``on_scalars(epochs_done, {"bound": ...})`` is the
    harness's generic form of the same (e.g. for a log writer).

    Raises :class:`~dimgen.errors.ConfigError`, :class:`~dimgen.errors.DataError`,
    :class:`~dimgen.errors.RunFolderError` before training and
    :class:`~dimgen.errors.TrainingError` if the loss or weights become non-finite.

    Example:
        >>> run = train_encoder(EncoderConfig(epochs=2))   # doctest: +SKIP
        >>> run.metrics["kl_upper_bound_nats"]             # doctest: +SKIP
    """
    cfg = validate(config, EncoderConfig)
    callbacks = [c for c in (on_epoch, on_scalars) if c is not None]
    if callbacks and needs_spawn(cfg.devices):
        raise ConfigError("on_epoch callbacks cannot cross into spawned processes (devices > 1)")

    def scalars(done: int, values: dict[str, float]) -> None:
        if on_epoch is not None:
            on_epoch(done - 1, values["bound"])
        if on_scalars is not None:
            on_scalars(done, values)

    def run(device: torch.device) -> EncoderRun:
        trainer = EncoderTrainer(cfg, data)
        return fit(trainer, device, out, resume=resume, progress=progress,
                   on_scalars=scalars if callbacks else None)  # fmt: skip

    return launch(run, cfg.device, cfg.devices, _train_worker, (cfg, out, progress, resume, data),
                  out=out)  # fmt: skip


def _train_worker(
    cfg: EncoderConfig, out: str | Path | None, progress: bool, resume: bool, data: Dataset | None
) -> EncoderRun | None:
    from ..training.distributed import rank

    run = train_encoder(cfg, out, progress=progress and rank() == 0, resume=resume, data=data)
    if rank() != 0:
        return None
    run.model.cpu()
    return run


def finish(
    cfg: EncoderConfig,
    model: NoisyInfoMax,
    ds: Dataset,
    x_train: Tensor,
    x_test: Tensor,
    history: list[float],
    epochs: int | None = None,
    *,
    show: bool = False,
) -> EncoderRun:
    """Recalibrate the normalisation on the training data, estimate MI, compute codes and metrics.

    ``epochs``: epochs trained (default ``cfg.epochs``; fewer in a smoke run). The MI estimate uses
    ``cfg.eval_batches`` batches (at most 2 in a smoke run, :mod:`dimgen.training.smoke`).
    """
    model.eval()
    with phase("encode", "recalibrating the normalisation on the training data", show, 1, 4):
        h_train = _outputs(model.encoder, x_train)  # once: calibration and codes share it
        model.channel.calibrate([h_train])
        with torch.no_grad():
            codes_tr = model.channel.normalise(h_train).cpu().numpy()
            codes_te = model.channel.normalise(_outputs(model.encoder, x_test)).cpu().numpy()
        del h_train
    n_eval = smoke.cap_size(cfg.eval_batches, 2)
    with phase("encode", f"held-out MI bound ({n_eval} batches)", show, 2, 4):
        mi, mi_se = estimate_mi(model, x_test, cfg.batch_size, n_eval, cfg.seed + 1)
        mi_tr, _ = estimate_mi(model, x_train, cfg.batch_size, n_eval, cfg.seed + 2)
    cap = model.channel.capacity()
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
        "epochs": cfg.epochs if epochs is None else epochs,
        "final_train_bound_nats": history[-1] if history else None,
    }
    with phase("encode", "code statistics and 5-NN accuracy", show, 3, 4):
        metrics.update(code_metrics(codes_tr, codes_te, ds.y_train, ds.y_test, cfg.prior))
        if cfg.prior == "uniform" and len(codes_te):
            metrics["tokens"] = token_metrics(codes_te, cfg.eps)
    codes = np.concatenate([codes_tr, codes_te]).astype(np.float32)
    labels = None
    if ds.y_train is not None and ds.y_test is not None:
        labels = np.concatenate([ds.y_train, ds.y_test]).astype(np.int64)
    split = np.array(["train"] * len(codes_tr) + ["test"] * len(codes_te))
    return EncoderRun(cfg, model, metrics, codes, labels, split, history)
