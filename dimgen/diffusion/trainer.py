"""The diffusion trainer on the training harness: a ``diffusers`` UNet denoising under codes.

Only the diffusion model's own parts live here (data and codes, the network and optimiser, one
denoising step, sample grids, final artefacts); the loop, checkpoints, bit-exact resume, the
non-finite guard and the run folder are :mod:`dimgen.training`'s. One
:meth:`DiffusionTrainer.step` is one Adam step on the epsilon-prediction loss of DDPM (Ho et
al. 2020, eq. 14): E ||eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t, c)||^2 with
t uniform and, with probability ``p_uncond``, c replaced by the learned null code (Ho &
Salimans 2022). Every random draw comes from one CPU generator that the checkpoint stores (the
data position too: a ``folder:PATH,stream=1`` source decodes just the drawn images).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..config import replace, validate
from ..data.sources import Dataset, absolute_root, absolute_source, source_digest
from ..data.stream import StreamedData, StreamedImages, data_mode, take
from ..errors import ConfigError, DataError
from ..gan.evaluation import evaluate_gan
from ..gan.images import save_image_grid
from ..gan.nets import ema_update
from ..gan.trainer import (
    load_conditioning,
    read_json_or_empty,
    reference_classifier,
    write_final_grids,
)
from ..integrations.diffusers import make_scheduler
from ..io import atomic_copy, save_weights, write_json, write_text
from ..training import CheckpointState, Context, Fitted, ScalarCallback, Trainer, fit, smoke
from ..training.devices import data_parallel, launch, needs_spawn
from ..training.distributed import mean_over_processes
from ..training.phases import phase
from .config import DiffusionConfig
from .model import DiffusionModel, build_net, diffusion_spec
from .report import diffusion_report

__all__ = ["DiffusionRun", "DiffusionTrainer", "train_diffusion"]


@dataclass
class DiffusionRun:
    """The result of :func:`train_diffusion`: the model, metrics, loss history and run folder."""

    config: DiffusionConfig
    model: DiffusionModel
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    path: Path | None = None


class DiffusionTrainer(Trainer):
    """A code-conditioned ``diffusers`` UNet as a :class:`~dimgen.training.Trainer`."""

    kind = "diffusion"
    unit = "step"
    label = "train-diffusion"
    keep_checkpoint = True  # the complete folder keeps the net, its EMA and the optimiser
    subfolders = ("samples",)

    def __init__(self, cfg: DiffusionConfig, data: Dataset | StreamedData | None = None) -> None:
        self.config = cfg
        self.data = data
        self.data_digest: dict[str, Any] | None = None
        self.total = cfg.steps
        self.log_every = cfg.log_every
        self.checkpoint_every = cfg.checkpoint_every
        self.threads = cfg.threads

    def setup(self, ctx: Context) -> CheckpointState:
        self.show = ctx.progress
        cfg, device = self.config, ctx.device
        enc_dir, enc_cfg, tok, ds, source, root = load_conditioning(
            cfg, device, self.data, "diffusion"
        )
        self.data_mode = data_mode(ds)
        if self.data is None:  # a resume refuses a changed source
            self.data_digest = source_digest(source)
        self.config = cfg = replace(cfg, encoder_run=str(enc_dir.resolve()),
                                    data=absolute_source(source), data_root=absolute_root(root))  # fmt: skip
        self.enc_dir, self.enc_cfg, self.tok, self.ds, self.source = (
            enc_dir,
            enc_cfg,
            tok,
            ds,
            source,
        )
        self.spec = spec = diffusion_spec(cfg, ds.shape, tok)
        self.device = device
        torch.manual_seed(cfg.seed)
        self.net = build_net(spec).to(device)  # DataError / ConfigError for an unfit shape
        self.ema = copy.deepcopy(self.net).eval() if cfg.ema_decay > 0 else None
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        self.noise = make_scheduler(
            "ddpm", cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule
        )
        self.gen = torch.Generator().manual_seed(cfg.seed)
        # After the UNet is built (an unfit shape fails before anything trains) and initialised;
        # later draws come from self.gen only, so whether it was trained or found changes nothing.
        # Rank 0 alone evaluates: the other processes neither train nor read the classifier.
        self.extractor = (
            reference_classifier(cfg, ds, source, device, self.label, self.show)
            if ctx.rank == 0 else None
        )  # fmt: skip
        if isinstance(ds, StreamedData):  # decoded as drawn (this process's rows), then scaled
            self.x_train: Tensor | StreamedImages = ds.x_train.to(device)
        else:
            x = torch.from_numpy(np.ascontiguousarray(ds.x_train))
            self.x_train = (2 * x - 1).to(device)  # [0, 1] -> [-1, 1], (N, C, H, W)
        with phase(self.label, f"codes of {len(ds.x_train)} training images", self.show):
            self.c_train = tok.encode(ds.x_train).to(device)  # frozen encoder: (N, d)
        self.batch = min(cfg.batch_size, len(self.x_train))
        self.batch -= self.batch % ctx.world  # every process an equal shard of the global batch
        if self.batch < ctx.world:
            raise DataError(
                f"{source}: {len(self.x_train)} training image(s) for {ctx.world} processes"
            )
        self.rank, self.world = ctx.rank, ctx.world
        n_cond = min(32, len(ds.x_test))
        self.grid_codes = torch.cat([tok.encode(take(ds.x_test, slice(n_cond))),
                                     tok.sample_prior(32, seed=cfg.seed + 2)])  # fmt: skip
        modules: dict[str, nn.Module] = {"model": self.net}
        if self.ema is not None:
            modules["model_ema"] = self.ema
        return CheckpointState(modules, {"opt": self.opt}, generators={"draws": self.gen})

    def begin(self, ctx: Context) -> None:
        self.net.train()
        self.train_net = data_parallel(self.net, ctx.device)  # DDP: gradients averaged

    def step(self, index: int) -> dict[str, Tensor]:
        cfg, g, b, dev = self.config, self.gen, self.batch, self.device
        # Every draw is made for the whole global batch from the generator all processes share
        # (in the 1-process order); each process keeps its rows, so N processes train on the
        # 1-process batch.
        part = b // self.world
        rows = slice(self.rank * part, (self.rank + 1) * part)
        idx = torch.randint(len(self.x_train), (b,), generator=g)
        eps = torch.randn((b, *self.x_train.shape[1:]), generator=g)[rows]
        t = torch.randint(cfg.num_train_timesteps, (b,), generator=g)[rows].to(dev)
        drop = (torch.rand(b, generator=g) < cfg.p_uncond)[rows].to(dev)
        idx = idx[rows].to(dev)
        x0, c = self.x_train[idx], self.c_train[idx]
        if isinstance(self.x_train, StreamedImages):
            x0 = 2 * x0 - 1  # as the in-memory copy was scaled
        eps = eps.to(dev, x0.dtype)
        x_t = self.noise.add_noise(x0, eps, t)
        loss = torch.nn.functional.mse_loss(self.train_net(x_t, t, c, drop), eps)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.ema is not None:
            ema_update(self.ema, self.net, min(cfg.ema_decay, (1 + index) / (10 + index)))
        # The global batch's loss (the mean of the shards' means), the same on every process.
        return {"loss": mean_over_processes(loss.detach())}

    def _model(self, out: Path | None = None) -> DiffusionModel:
        net = self.ema if self.ema is not None else self.net
        return DiffusionModel(net, self.tok, self.spec, self.config, out)

    def after_step(self, done: int, out: Path | None) -> None:
        every = self.config.sample_every
        if out is not None and every and done % every == 0:
            imgs = self._model().generate(self.grid_codes, seed=self.config.seed + 1)
            save_image_grid(imgs, out / "samples" / f"step-{done:06d}.png")
            self.net.train()

    def end(self) -> None:
        self.net.eval()

    def finish(self, fitted: Fitted, out: Path | None) -> DiffusionRun:
        cfg, tok = self.config, self.tok
        model = self._model(out)
        metrics: dict[str, Any] = {"train_seconds": fitted.train_seconds, "steps": self.total,
                                   "processes": self.world,
                                   "code_dim": tok.dim, "prior": tok.prior_name,
                                   "parameters": sum(p.numel() for p in self.net.parameters())}  # fmt: skip
        enc_metrics = read_json_or_empty(self.enc_dir / "metrics.json")
        if "knn_acc" in enc_metrics:
            metrics["encoder_knn_acc"] = enc_metrics["knn_acc"]
        if out is not None:
            self._write(out, model, metrics, fitted.history)
        return DiffusionRun(cfg, model, metrics, fitted.history, out)

    def _write(self, out: Path, model: DiffusionModel, metrics: dict[str, Any],
               history: list[dict[str, float]]) -> None:  # fmt: skip
        cfg, ds, spec = self.config, self.ds, self.spec
        meta = {"kind": "diffusion", "spec": spec}
        save_weights(out / "model.safetensors", self.net.state_dict(), meta)
        if self.ema is not None:
            save_weights(out / "model_ema.safetensors", self.ema.state_dict(),
                         {**meta, "ema_decay": cfg.ema_decay})  # fmt: skip
        atomic_copy(self.enc_dir / "encoder.safetensors", out / "encoder.safetensors")
        atomic_copy(self.enc_dir / "config.yaml", out / "encoder-config.yaml")
        clf_path = None
        if self.extractor is not None:  # a copy keeps the folder self-contained (evaluate-gan)
            clf_path = out / "classifier.safetensors"
            atomic_copy(self.extractor.path, clf_path)
            metrics.update(fid_extractor_sha256=self.extractor.sha256,
                           fid_extractor_accuracy=self.extractor.accuracy,
                           fid_extractor_path=str(self.extractor.path.resolve()))  # fmt: skip
        eval_samples = smoke.cap_size(cfg.eval_samples, 200)
        if eval_samples > 0:
            with phase(self.label, f"evaluation: consistency, FID/KID on {eval_samples} samples "
                       f"({cfg.sample_steps} {cfg.scheduler} steps each)", self.show, 1, 2):  # fmt: skip
                metrics.update(evaluate_gan(model, ds, classifier_path=clf_path, n=eval_samples,
                                            seed=cfg.seed, data_name=self.source, device=self.device))  # fmt: skip
        with phase(self.label, "sample grids and report", self.show, 2, 2):
            save_image_grid(model.generate(self.grid_codes, seed=cfg.seed + 1),
                            out / "samples" / "final.png")  # fmt: skip
            write_final_grids(model, ds, out, cfg.seed)  # type: ignore[arg-type]
        write_json(out / "metrics.json", {**metrics, "history": history})
        write_text(out / "report.md", diffusion_report(metrics, cfg, self.enc_dir))

    def run_info(self) -> dict[str, Any]:
        split = {"test_fraction": self.enc_cfg.test_fraction, "seed": self.enc_cfg.split_seed}
        info = {"encoder_run": str(self.enc_dir.resolve()), "spec": self.spec,
                "data": self.source, "split": split, "data_mode": self.data_mode}  # fmt: skip
        if self.data_digest is not None:
            info["data_digest"] = self.data_digest
        return info


def train_diffusion(
    config: DiffusionConfig,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    resume: bool = False,
    data: Dataset | StreamedData | None = None,
    on_scalars: ScalarCallback | None = None,
) -> DiffusionRun:
    """Train a ``diffusers`` UNet on the codes of ``config.encoder_run``; a run folder at ``out``.

    ``progress`` (default True, as the CLI): a tqdm bar and one line per phase on stderr;
    ``progress=False``: silent.

    The folder holds config.yaml, a copy of the encoder, model[_ema].safetensors, the full
    checkpoint, samples/*.png, a copy of the data set's reference classifier (FID space), metrics.json, report.md and run.json.
    Raises :class:`~dimgen.errors.ConfigError` (also when ``dimgen[diffusers]`` is missing),
    :class:`~dimgen.errors.DataError` and :class:`~dimgen.errors.RunFolderError` before
    training, :class:`~dimgen.errors.TrainingError` if the loss or weights become non-finite.

    With ``config.devices = N > 1`` N processes are spawned (one per GPU, or gloo on the CPU);
    under ``torchrun`` the launcher's processes are joined. Each takes 1/N of every global batch
    (DDP): the updates are those of one process; rank 0 evaluates and writes the folder. A
    checkpoint resumes with the same number of processes only.
    """
    cfg = validate(config)
    from ..integrations.diffusers import require_diffusers

    require_diffusers()
    if on_scalars is not None and needs_spawn(cfg.devices):
        raise ConfigError("on_scalars cannot cross into spawned processes (devices > 1)")

    def run(device: torch.device) -> DiffusionRun:
        return fit(DiffusionTrainer(cfg, data), device, out, resume=resume, progress=progress,
                   on_scalars=on_scalars)  # fmt: skip

    return launch(run, cfg.device, cfg.devices, _worker, (cfg, out, progress, resume, data))


def _worker(
    cfg: DiffusionConfig,
    out: str | Path | None,
    progress: bool,
    resume: bool,
    data: Dataset | None,
) -> DiffusionRun | None:
    """One spawned process of :func:`train_diffusion`; rank 0's result (on the CPU) goes back."""
    from ..training.distributed import rank

    run = train_diffusion(cfg, out, progress=progress and rank() == 0, resume=resume, data=data)
    if rank() != 0:
        return None
    for module in (run.model.net, run.model.tokenizer.encoder, run.model.tokenizer.channel):
        module.cpu()
    return run
