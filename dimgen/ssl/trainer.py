"""SSL pre-training (noise-injected SimCLR / VICReg / Deep InfoMax) on the training harness.

Only the method's own parts live here: data, network, loss and LARS (:meth:`PretrainTrainer.setup`),
one optimiser step on two augmented views (:meth:`PretrainTrainer.step`), and the artefacts
(:meth:`PretrainTrainer.finish`). The loop, run folder, checkpoints, bit-exact resume, the
non-finite guard and progress are :func:`dimgen.training.fit`'s. One unit is one optimiser step;
the batch order and augmentations are functions of (seed, step, rank), so a resume replays
exactly; the channel noise comes from the global RNG, which checkpoints restore. A
``folder:PATH,stream=1`` source is decoded on the fly in DataLoader workers
(:class:`dimgen.data.stream.StreamBatches`, the same per-epoch order): the same batches, bit for
bit, and the step index is its data position.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..config import to_dict, validate
from ..data.sources import Dataset, check_finite, source_digest
from ..data.stream import StreamBatches, StreamedData, StreamedImages, data_mode
from ..errors import ConfigError
from ..io import save_npz, save_weights, write_json
from ..training import CheckpointState, Context, Fitted, ScalarCallback, Trainer, fit, smoke
from ..training.devices import data_parallel, global_batch_statistics, launch, needs_spawn
from ..training.distributed import mean_over_processes
from .augment import SSLAugment
from .config import PretrainConfig
from .data import describe_split, load_ssl_data
from .lars import LARS, param_groups, warmup_cosine
from .losses import make_loss
from .models import SSLNet

__all__ = ["PretrainRun", "PretrainTrainer", "build_net", "pretrain"]

WEIGHTS = "model.safetensors"
"""The backbone + projector (+ channel statistics) of a pretrain run folder."""


@dataclass
class PretrainRun:
    """The result of :func:`pretrain`: config, trained network, metrics, loss history, folder."""

    config: PretrainConfig
    net: SSLNet
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    path: Path | None = None


def build_net(cfg: PretrainConfig) -> SSLNet:
    """The network ``cfg`` describes (ResNet-18 CIFAR stem of ``cfg.width`` + projector)."""
    return SSLNet(cfg.method, cfg.width, cfg.proj_hidden, cfg.out_dim)


def _seed(*parts: int) -> int:
    """A 62-bit seed from integers (deterministic; distinct tuples give unrelated streams)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0]) >> 2


@torch.no_grad()
def embed(net: SSLNet, x: Tensor | StreamedImages, batch: int = 512) -> tuple[Tensor, Tensor]:
    """(N, 3, H, W) -> backbone features (N, F) and projector embeddings (N, d), eval mode, CPU.

    A streamed split (:class:`~dimgen.data.stream.StreamedImages`) is decoded ``batch`` images
    at a time: the same batches, so the same numbers, as its in-memory tensor."""
    was = net.training
    net.eval()
    feats, embs = [], []
    device = next(net.parameters()).device
    parts = x.to(device).chunks(batch) if isinstance(x, StreamedImages) else x.split(batch)
    for xb in parts:
        f = net.features(xb).float()
        feats.append(f.cpu())
        embs.append(net.projector(f).float().cpu())
    net.train(was)
    return torch.cat(feats), torch.cat(embs)


class PretrainTrainer(Trainer):
    """Noise-injected SimCLR / VICReg / DIM as a :class:`~dimgen.training.Trainer` (``loss``)."""

    kind = "pretrain"
    unit = "step"
    label = "pretrain"

    def __init__(self, cfg: PretrainConfig, data: Dataset | StreamedData | None = None) -> None:
        self.config = cfg
        self.data = data
        self.log_every = cfg.log_every
        self.checkpoint_every = cfg.checkpoint_every
        self.threads = cfg.threads
        self.total = 0
        self.data_digest: dict[str, Any] | None = None

    def setup(self, ctx: Context) -> CheckpointState:
        cfg, world = self.config, ctx.world
        ds = self.data
        if ds is None:
            ds = load_ssl_data(cfg.data, cfg.data_root, cfg.test_fraction, cfg.seed,
                               image_size=cfg.image_size, labels=False)  # fmt: skip
            self.data_digest = source_digest(cfg.data)  # a resume refuses a changed source
        streamed = isinstance(ds, StreamedData)
        self.split = describe_split(cfg.data, ds, cfg.test_fraction, cfg.seed)
        if cfg.max_train and cfg.max_train < len(ds.x_train):
            self.split += f"; pre-trained on the first {cfg.max_train} images of its first part"
            if streamed:
                ds = ds.head(cfg.max_train, len(ds.x_test))
            else:
                y = None if ds.y_train is None else ds.y_train[: cfg.max_train]
                ds = Dataset(ds.name, ds.x_train[: cfg.max_train], y, ds.x_test, ds.y_test)
        ds = smoke.cap_data(ds)  # DIMGEN_SMOKE: the first 1,024 / 512 samples only
        if not streamed:  # decoded uint8 is always finite
            check_finite(ds.x_train, f"{cfg.data} (train)")
        if len(ds.shape) != 3 or ds.shape[0] != 3:
            raise ConfigError(
                f"{cfg.data}: SSL pre-training needs (3, H, W) images, got {ds.shape}"
            )
        batch = min(cfg.batch_size, len(ds.x_train))
        batch -= batch % world
        if batch < 2 * world:
            raise ConfigError(f"{cfg.data}: need at least {2 * world} training images")
        self.ds, self.batch, self.ctx = ds, batch, ctx
        self.per_epoch = len(ds.x_train) // batch
        self.total = cfg.epochs * self.per_epoch
        self.warmup = round(cfg.warmup_epochs * self.per_epoch)

        torch.manual_seed(cfg.seed)
        # Batch statistics over the global batch: SyncBatchNorm on CUDA, GlobalBatchNorm (gloo)
        # on the CPU; the same state-dict keys either way.
        self.net = global_batch_statistics(build_net(cfg), ctx.device).to(ctx.device)
        self.loss = make_loss(cfg.method, cfg.out_dim, cfg.sigma, cfg.temperature, cfg.critic,
                              cfg.critic_hidden).to(ctx.device)  # fmt: skip
        if world > 1:
            from ..training.distributed import rank_seed

            torch.manual_seed(rank_seed(cfg.seed, ctx.rank))  # different channel noise per rank
        # The network, then the loss's own parameters (DIM's critic; none for SimCLR / VICReg).
        self.opt = LARS(param_groups(nn.ModuleList([self.net, self.loss])), lr=cfg.lr, weight_decay=cfg.weight_decay,
                        momentum=cfg.momentum, eta=cfg.eta)  # fmt: skip
        self.augment = SSLAugment(size=ds.shape[-1], groups=cfg.aug_groups)
        self.data_mode = data_mode(ds)
        self._perm: tuple[int, Tensor] | None = None
        self.stream: StreamBatches | None = None
        if streamed:  # batches decoded in DataLoader workers, this process's shard only
            self.x_train: Tensor | StreamedImages = ds.x_train.to(ctx.device)
            self.stream = StreamBatches(self.x_train, batch_size=batch, shard=(ctx.rank, world))
            self._next: tuple[int, Any] | None = None  # (the next step, its epoch's iterator)
        else:
            self.x_train = torch.from_numpy(np.ascontiguousarray(ds.x_train)).to(ctx.device)
        return CheckpointState({"net": self.net, "loss": self.loss}, {"opt": self.opt})

    def begin(self, ctx: Context) -> None:
        # Negatives, VICReg's variance / covariance and the channel's statistics over the
        # global batch (every process's shard), with gradients.
        self.loss.data_parallel = ctx.world > 1
        self.train_net = data_parallel(self.net, ctx.device)
        self.train_net.train()
        self.loss.train()
        has_params = any(True for _ in self.loss.parameters())
        # A loss with parameters (DIM's critic) averages their gradients over processes too.
        self.train_loss = data_parallel(self.loss, ctx.device) if has_params else self.loss

    def _batch(self, index: int) -> Tensor:
        """This process's shard of global batch ``index``: a per-epoch permutation of (seed, epoch)."""
        epoch, b = divmod(index, self.per_epoch)
        if self.stream is not None:  # the same permutation, drawn by StreamBatches
            if self._next is None or self._next[0] != index or b == 0:
                self.stream.generator = torch.Generator().manual_seed(
                    _seed(self.config.seed, epoch)
                )
                self._next = (index, self.stream.epoch(start=b))  # a resume starts at batch b
            (x,) = next(self._next[1])
            self._next = (index + 1, self._next[1])
            return x
        if self._perm is None or self._perm[0] != epoch:
            gen = torch.Generator().manual_seed(_seed(self.config.seed, epoch))
            self._perm = (epoch, torch.randperm(len(self.x_train), generator=gen))
        sel = self._perm[1][b * self.batch : (b + 1) * self.batch]
        part = self.batch // self.ctx.world
        sel = sel[self.ctx.rank * part : (self.ctx.rank + 1) * part]
        return self.x_train[sel.to(self.x_train.device)]

    def step(self, index: int) -> dict[str, Tensor]:
        cfg, device = self.config, self.ctx.device
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * warmup_cosine(index, self.total, self.warmup)
        x = self._batch(index)
        gen = torch.Generator().manual_seed(_seed(cfg.seed, index, self.ctx.rank, 1))
        v_a, v_b = self.augment(x, gen), self.augment(x, gen)
        amp = cfg.amp and device.type == "cuda"
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        with ctx:
            z = self.train_net(torch.cat([v_a, v_b]))
        z_a, z_b = z.float().chunk(2)
        loss = self.train_loss(z_a, z_b)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        # The global batch's loss (the mean of the shards' losses), the same on every process.
        return {"loss": mean_over_processes(loss.detach())}

    def end(self) -> None:
        self._next = None  # a streamed epoch's iterator (its workers serve the evaluation next)
        self.loss.data_parallel = False
        self.net.eval()
        self.loss.eval()

    def finish(self, fitted: Fitted, out: Path | None) -> PretrainRun:
        cfg, ds = self.config, self.ds
        if self.loss.channel is not None:
            # Exact statistics over the (clean) training embeddings, as the encoder does: the
            # inference codes then have E c = 0, E c^2 = 1 on that data (running means lag).
            _, emb = embed(self.net, self.x_train)
            self.loss.channel.calibrate([emb])
        metrics: dict[str, Any] = {
            "method": cfg.method, "sigma": cfg.sigma, "prior": "gaussian",
            "steps": self.total, "epochs": cfg.epochs, "train_images": len(ds.x_train),
            "probe_images": len(ds.x_test), "batch_size": self.batch,
            "data": self.split,
            "device": str(self.ctx.device), "processes": self.ctx.world,
            "train_seconds": fitted.train_seconds,
            "final_loss": fitted.history[-1]["loss"] if fitted.history else None,
        }  # fmt: skip
        if out is not None:
            self._write(out, metrics, fitted.history)
        return PretrainRun(cfg, self.net, metrics, fitted.history, out)

    def _write(self, out: Path, metrics: dict[str, Any], history: list[dict[str, float]]) -> None:
        ds = self.ds
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        tensors.update({f"loss.{k}": v for k, v in self.loss.state_dict().items()})
        save_weights(out / WEIGHTS, tensors, {"kind": "pretrain", "config": to_dict(self.config)})
        # Codes for `dimgen evaluate`: the channel's normalised embeddings of the probe split
        # (raw projector embeddings when sigma = 0: there is no channel to normalise them).
        if isinstance(ds.x_test, StreamedImages):
            x_test: Tensor | StreamedImages = ds.x_test
        else:
            x_test = torch.from_numpy(np.ascontiguousarray(ds.x_test)).to(self.ctx.device)
        _, emb = embed(self.net, x_test)
        codes = emb if self.loss.channel is None else self.loss.channel.cpu()(emb)
        labels = {} if ds.y_test is None else {"labels": np.asarray(ds.y_test)}  # flat folder
        save_npz(out / "codes.npz", codes=codes.detach().numpy().astype(np.float32),
                 split=np.full(len(emb), "test"), **labels)  # fmt: skip
        write_json(out / "metrics.json", {**metrics, "history": history})

    def run_info(self) -> dict[str, Any]:
        info = {"data": self.config.data, "method": self.config.method, "sigma": self.config.sigma,
                "split": {"test_fraction": self.config.test_fraction, "seed": self.config.seed},
                "data_mode": self.data_mode}  # fmt: skip
        if self.data_digest is not None:
            info["data_digest"] = self.data_digest
        return info


def pretrain(
    config: PretrainConfig,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    resume: bool = False,
    data: Dataset | StreamedData | None = None,
    on_scalars: ScalarCallback | None = None,
) -> PretrainRun:
    """Pre-train ``config.method`` with the noise channel; write a run folder to ``out``.

    ``progress`` (default True, as the CLI): a tqdm bar on stderr; ``progress=False``: silent.

    The folder holds config.yaml, model.safetensors (backbone, projector, channel statistics),
    codes.npz (probe-split embeddings after the channel), metrics.json and run.json. With
    ``config.devices = N > 1``, N processes are spawned (DDP; batch-norm statistics, negatives,
    VICReg's variance and covariance and the channel's statistics over the global batch); under
    torchrun the launcher's processes are joined.

    Raises:
        ConfigError, DataError, RunFolderError: before training starts;
        TrainingError: a non-finite loss or weights.
    """
    cfg = validate(config)
    if on_scalars is not None and needs_spawn(cfg.devices):
        raise ConfigError("on_scalars cannot cross into spawned processes (devices > 1)")

    def run(device: torch.device) -> PretrainRun:
        return fit(PretrainTrainer(cfg, data), device, out, resume=resume, progress=progress,
                   on_scalars=on_scalars)  # fmt: skip

    return launch(run, cfg.device, cfg.devices, _worker, (cfg, out, progress, resume, data),
                  out=out)  # fmt: skip


def _worker(
    cfg: PretrainConfig, out: str | Path | None, progress: bool, resume: bool, data: Dataset | None
) -> PretrainRun | None:
    from ..training.distributed import rank

    run = pretrain(cfg, out, progress=progress and rank() == 0, resume=resume, data=data)
    if rank() != 0:
        return None
    run.net.cpu()
    return run
