"""The GAN trainer on the training harness: G(noise, code) against D(image, code).

Only the GAN's own parts live here (data and codes, nets and optimisers, one generator update,
sample grids, final artefacts and evaluation); the loop, checkpoints, resume, the non-finite
guard and the run folder are :mod:`dimgen.training`'s. One :meth:`GANTrainer.step` is
``d_steps`` discriminator updates and one generator update; scalars ``d_loss`` and ``g_loss``,
averaged over windows of ``log_every`` steps. A ``folder:PATH,stream=1`` source stays on disk:
the batch indices are drawn as for in-memory data (the checkpointed generator is the data
position) and only those images are decoded (:class:`dimgen.data.stream.StreamedImages`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..config import EncoderConfig, load_run_config, replace, validate
from ..data.sources import (
    Dataset,
    absolute_root,
    absolute_source,
    check_finite,
    check_source_unchanged,
    load_data,
    source_digest,
)
from ..data.stream import (
    StreamedData,
    StreamedImages,
    data_mode,
    is_streamed,
    load_stream,
    memory_source,
    take,
)
from ..errors import ConfigError, DataError, DimgenError
from ..infomax.tokenizer import Tokenizer
from ..io import atomic_copy, save_weights, write_json, write_text
from ..metric_keys import KL_BOUND, kl_upper_bound
from ..parsing import read_json
from ..training import CheckpointState, Context, Fitted, ScalarCallback, Trainer, fit, smoke
from ..training.devices import data_parallel, global_batch_statistics, launch, needs_spawn
from ..training.distributed import mean_over_processes
from ..training.phases import phase
from .config import MIN_EVAL_SAMPLES, GANConfig
from .evaluation import evaluate_gan
from .images import save_image_grid, write_samples
from .losses import d_loss, g_loss, r1_penalty
from .model import GAN
from .nets import build_discriminator, build_generator, ema_update, gan_spec
from .report import gan_report

__all__ = ["GANRun", "GANTrainer", "train_gan"]


@dataclass
class GANRun:
    """The result of :func:`train_gan`: the trained nets, metrics, loss history and run folder."""

    config: GANConfig
    gan: GAN
    discriminator: nn.Module
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    path: Path | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (a spawned process returns its run): the spectrally normalised
        discriminator travels as its spec and state dict, and is rebuilt on unpickling."""
        state = dict(self.__dict__)
        sd = {k: v.detach().cpu() for k, v in self.discriminator.state_dict().items()}
        state["discriminator"] = (self.gan.spec, sd)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        spec, sd = state["discriminator"]
        discriminator = build_discriminator(spec)
        discriminator.load_state_dict(sd)
        self.__dict__.update({**state, "discriminator": discriminator})


def load_encoder_run(cfg: GANConfig, device: torch.device) -> tuple[Path, EncoderConfig, Tokenizer]:
    from ..io import read_run

    if not cfg.encoder_run:
        raise ConfigError("encoder_run is required: the encoder run folder whose codes condition G")
    enc_dir, _ = read_run(cfg.encoder_run, "encoder")
    enc_cfg = load_run_config(enc_dir / "config.yaml")
    return enc_dir, enc_cfg, Tokenizer.from_pretrained(enc_dir, device)


def load_conditioning(
    cfg: Any, device: torch.device, data: Dataset | StreamedData | None, what: str
) -> tuple[Path, EncoderConfig, Tokenizer, Dataset | StreamedData, str, str | None]:
    """The encoder run a generator (``what``: "the GAN", "diffusion") is conditioned on, and its
    data split as the encoder split it: ``(enc_dir, enc_cfg, tok, ds, source, root)``; a
    ``stream=1`` folder is listed, not decoded (:func:`dimgen.data.stream.load_stream`).

    Raises:
        DataError: the data's samples are not the encoder's shape, not images (C, H, W), or
            not finite.
    """
    enc_dir, enc_cfg, tok = load_encoder_run(cfg, device)
    source = cfg.data or enc_cfg.data
    root = cfg.data_root or enc_cfg.data_root
    ds = data
    if ds is None:
        if absolute_source(source) == absolute_source(enc_cfg.data):  # the encoder's own data
            record = read_json(enc_dir / "run.json")
            check_source_unchanged(source, record.get("data_digest"), enc_dir, what)
        if is_streamed(source):
            ds = load_stream(source, enc_cfg.test_fraction, enc_cfg.split_seed)
        else:
            ds = load_data(source, root, enc_cfg.test_fraction, enc_cfg.split_seed)
    ds = smoke.cap_data(ds)  # DIMGEN_SMOKE: the first 1,024 / 512 samples only
    if ds.shape != tok.in_shape:
        raise DataError(f"{source} has samples of shape {ds.shape}, but the encoder of "
                        f"{enc_dir} expects {tok.in_shape}")  # fmt: skip
    if len(ds.shape) != 3:
        raise DataError(
            f"{what} generates images (C, H, W); {source} has samples of shape {ds.shape}"
        )
    if not isinstance(ds, StreamedData):  # decoded uint8 is always finite
        check_finite(ds.x_train, f"{source} (train)")
    return enc_dir, enc_cfg, tok, ds, source, root


def all_images(
    ds: Dataset | StreamedData,
) -> tuple[np.ndarray | StreamedImages, np.ndarray | None]:
    """Every image and label of ``ds``, train then test: arrays in memory, or for a streamed
    source a view of its files (read a batch at a time by whoever uses it)."""
    if not isinstance(ds, StreamedData):
        return ds.split("all")
    y = None
    if ds.y_train is not None and ds.y_test is not None:
        y = np.concatenate([ds.y_train, ds.y_test])
    return ds.x_train.joined(ds.x_test), y


def reference_classifier(
    cfg: Any, ds: Dataset | StreamedData, source: str, device: torch.device, label: str,
    show: bool,
) -> Any:  # fmt: skip
    """The data set's one reference classifier for FID and labels (trained once, then cached:
    every generator on this data is measured in the same feature space); None without labels
    or evaluation. Its training is an announced phase.

    A streamed source is read a batch at a time (:func:`dimgen.fidelity.reference_extractor`).
    """
    if ds.y_train is None or cfg.classifier_epochs <= 0 or cfg.eval_samples <= 0:
        return None
    from ..fidelity.extractor import reference_extractor

    x_all, y_all = all_images(ds)
    epochs = smoke.cap_size(cfg.classifier_epochs, 1)  # a smoke run's own (cached) classifier
    what = (f"reference classifier for FID and labels ({epochs} epochs on {len(x_all)} images; "
            "trained once per data set, then cached)")  # fmt: skip
    with phase(label, what, show):  # one classifier whether the source is streamed or not
        return reference_extractor(x_all, y_all, memory_source(source), epochs=epochs,
                                   path=cfg.fid_extractor, device=device, progress=show)  # fmt: skip


@torch.no_grad()
def _grid_samples(g: nn.Module, z: Tensor, codes: Tensor) -> Tensor:
    was = g.training
    g.eval()
    out = g(z, codes).cpu()
    g.train(was)
    return out


class GANTrainer(Trainer):
    """The code-conditional GAN of Appendix D as a :class:`~dimgen.training.Trainer`."""

    kind = "gan"
    unit = "step"
    label = "train-gan"
    keep_checkpoint = True  # the complete folder keeps G, D, EMA and both optimisers
    subfolders = ("samples",)

    def __init__(self, cfg: GANConfig, data: Dataset | StreamedData | None = None) -> None:
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
            cfg, device, self.data, "the GAN"
        )
        _check_sizes(cfg, ds, source)
        self.data_mode = data_mode(ds)
        if self.data is None:  # a resume refuses a changed source
            self.data_digest = source_digest(source)
        # A derived run stores the absolute data root it used (readable from any folder).
        abs_root = absolute_root(root)
        cfg = self.config = replace(cfg, encoder_run=str(enc_dir.resolve()),
                                    data=absolute_source(source), data_root=abs_root)  # fmt: skip
        self.enc_dir, self.enc_cfg, self.tok, self.ds, self.source = (
            enc_dir,
            enc_cfg,
            tok,
            ds,
            source,
        )
        self.spec = spec = gan_spec(cfg, ds.shape, tok.dim)
        self.device = device
        # Before the seeding below, so whether it was trained or found does not change the
        # GAN's random streams. Rank 0 alone evaluates: the others neither train nor read it.
        self.extractor = (
            reference_classifier(cfg, ds, source, device, self.label, self.show)
            if ctx.rank == 0 else None
        )  # fmt: skip

        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        if isinstance(ds, StreamedData):  # decoded as drawn: only this process's rows
            self.x_train: Tensor | StreamedImages = ds.x_train.to(device)
        else:
            self.x_train = torch.from_numpy(np.ascontiguousarray(ds.x_train)).to(device)
        self.c_train = tok.encode(ds.x_train).to(device)  # frozen encoder (a stream: chunks)
        # Data parallel: batch-norm statistics over the global batch (a no-op in one process).
        self.G = global_batch_statistics(build_generator(spec), device).to(device)
        self.D = global_batch_statistics(build_discriminator(spec), device).to(device)
        self.G_ema = copy.deepcopy(self.G).eval() if cfg.ema_decay > 0 else None
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=betas)

        # Fixed grid inputs: top half codes of held-out images, bottom half codes from the prior.
        g_fixed = torch.Generator().manual_seed(cfg.seed + 1)
        n_cond = min(32, len(ds.x_test))
        grid_codes = torch.cat(
            [tok.encode(take(ds.x_test, slice(n_cond))), tok.sample_prior(32, seed=cfg.seed + 2)]
        )
        grid_z = torch.randn(len(grid_codes), cfg.noise_dim, generator=g_fixed)
        self.grid_codes, self.grid_z = grid_codes.to(device), grid_z.to(device)
        self.batch = min(cfg.batch_size, len(self.x_train))
        self.batch -= self.batch % ctx.world  # every process an equal shard of the global batch
        if self.batch < ctx.world:
            raise DataError(
                f"{source}: {len(self.x_train)} training image(s) for {ctx.world} processes"
            )
        self.rank, self.world = ctx.rank, ctx.world

        modules = {"generator": self.G, "discriminator": self.D}
        if self.G_ema is not None:
            modules["generator_ema"] = self.G_ema
        return CheckpointState(modules, {"opt_g": self.opt_g, "opt_d": self.opt_d},
                               generators={"batches": self.gen})  # fmt: skip

    def begin(self, ctx: Context) -> None:
        self.G.train()
        self.D.train()
        # DDP averages the gradients of each update over processes (G and D as they are in
        # one process); in the generator update D is called unwrapped, so its unused gradients
        # are not synchronised (the next discriminator update discards them).
        self.G_train = data_parallel(self.G, ctx.device)
        self.D_train = data_parallel(self.D, ctx.device)

    def _draw(self) -> tuple[Tensor, Tensor]:
        """This process's rows of a global batch: (indices, G's noise).

        Both are drawn for the whole global batch from streams every process shares (the
        batch generator, the global RNG seeded alike), so N processes see the 1-process batch.
        """
        cfg, device, b = self.config, self.device, self.batch
        part = b // self.world
        rows = slice(self.rank * part, (self.rank + 1) * part)
        idx = torch.randint(len(self.x_train), (b,), generator=self.gen)[rows].to(device)
        z = torch.randn(b, cfg.noise_dim, device=device, dtype=self.x_train.dtype)[rows]
        return idx, z

    def step(self, index: int) -> dict[str, Tensor]:
        cfg, G, D = self.config, self.G, self.D_train
        for _ in range(cfg.d_steps):
            idx, z = self._draw()
            x, c = self.x_train[idx], self.c_train[idx]
            with torch.no_grad():
                fake = G(z, c)
            if cfg.r1_gamma > 0:
                x = x.detach().requires_grad_(True)
            real_s = D(x, c)
            loss_d = d_loss(real_s, D(fake, c), cfg.loss)
            if cfg.r1_gamma > 0:
                loss_d = loss_d + 0.5 * cfg.r1_gamma * r1_penalty(real_s, x)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
        idx, z = self._draw()
        c = self.c_train[idx]
        loss_g = g_loss(self.D(self.G_train(z, c), c), cfg.loss)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.opt_d.zero_grad(set_to_none=True)  # D's gradients of this update are not used
        if self.G_ema is not None:
            ema_update(self.G_ema, G, min(cfg.ema_decay, (1 + index) / (10 + index)))
        # The global batch's losses (means of the shards' means), the same on every process.
        losses = mean_over_processes(torch.stack([loss_d.detach(), loss_g.detach()]))
        return {"d_loss": losses[0], "g_loss": losses[1]}

    def postfix(self, scalars: dict[str, float]) -> dict[str, str]:
        return {"d": f"{scalars['d_loss']:.3f}", "g": f"{scalars['g_loss']:.3f}"}

    def after_step(self, done: int, out: Path | None) -> None:
        every = self.config.sample_every
        if out is not None and every and done % every == 0:
            save_image_grid(self._grid(), out / "samples" / f"step-{done:06d}.png")

    def images(self, done: int) -> dict[str, Tensor]:
        every = self.config.sample_every
        if not every or done % every:
            return {}
        from torchvision.utils import make_grid

        return {"samples": make_grid(self._grid(), nrow=8)}  # (C, H, W) in [0, 1]

    def _grid(self) -> Tensor:
        return _grid_samples(self.G_ema or self.G, self.grid_z, self.grid_codes)

    def end(self) -> None:
        self.G.eval()

    def finish(self, fitted: Fitted, out: Path | None) -> GANRun:
        cfg, tok, spec = self.config, self.tok, self.spec
        gan = GAN(self.G_ema or self.G, tok, spec, cfg, out)
        metrics: dict[str, Any] = {"train_seconds": fitted.train_seconds, "steps": self.total,
                                   "processes": self.world,
                                   "arch": spec["arch"], "code_dim": tok.dim, "prior": tok.prior_name}  # fmt: skip
        enc_metrics = read_json_or_empty(self.enc_dir / "metrics.json")
        if "knn_acc" in enc_metrics:
            metrics["encoder_knn_acc"] = enc_metrics["knn_acc"]
        bound = kl_upper_bound(enc_metrics)  # the certificate of the codes G is conditioned on
        if bound is not None:
            metrics[KL_BOUND] = bound
        if out is not None:
            self._write(out, gan, metrics, fitted.history)
        return GANRun(cfg, gan, self.D, metrics, fitted.history, out)

    def _write(
        self, out: Path, gan: GAN, metrics: dict[str, Any], history: list[dict[str, float]]
    ) -> None:
        cfg, ds, spec = self.config, self.ds, self.spec
        _write_weights(out, self.G, self.D, self.G_ema, spec, cfg)
        atomic_copy(self.enc_dir / "encoder.safetensors", out / "encoder.safetensors")
        atomic_copy(self.enc_dir / "config.yaml", out / "encoder-config.yaml")
        save_image_grid(self._grid(), out / "samples" / "final.png")
        clf_path = None
        eval_samples = smoke.cap_size(cfg.eval_samples, 200)
        if self.extractor is not None:  # a copy keeps the folder self-contained (evaluate-gan)
            clf_path = out / "classifier.safetensors"
            atomic_copy(self.extractor.path, clf_path)
            metrics.update(fid_extractor_sha256=self.extractor.sha256,
                           fid_extractor_accuracy=self.extractor.accuracy,
                           fid_extractor_path=str(self.extractor.path.resolve()))  # fmt: skip
        if eval_samples > 0:
            with phase("train-gan", f"evaluation: consistency, FID/KID on {eval_samples} samples",
                       self.show, 1, 2):  # fmt: skip
                metrics.update(evaluate_gan(gan, ds, classifier_path=clf_path, n=eval_samples,
                                            seed=cfg.seed, data_name=self.source, device=self.device))  # fmt: skip
        with phase("train-gan", "sample grids and report", self.show, 2, 2):
            write_final_grids(gan, ds, out, cfg.seed)
        write_json(out / "metrics.json", {**metrics, "history": history})
        write_text(out / "report.md", gan_report(metrics, cfg, self.enc_dir))
        gan.path = out

    def run_info(self) -> dict[str, Any]:
        split = {"test_fraction": self.enc_cfg.test_fraction, "seed": self.enc_cfg.split_seed}
        info = {"encoder_run": str(self.enc_dir.resolve()), "spec": self.spec,
                "data": self.source, "split": split, "data_mode": self.data_mode}  # fmt: skip
        if self.data_digest is not None:
            info["data_digest"] = self.data_digest
        return info


def train_gan(
    config: GANConfig,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    resume: bool = False,
    data: Dataset | StreamedData | None = None,
    on_scalars: ScalarCallback | None = None,
) -> GANRun:
    """Train G(noise, code) on the codes of ``config.encoder_run``; write a run folder to ``out``.

    ``progress`` (default True, as the CLI): a tqdm bar and one line per phase on stderr;
    ``progress=False``: silent.

    The run folder holds config.yaml, a copy of the encoder (encoder.safetensors, so the folder
    is self-contained), generator[_ema].safetensors, discriminator.safetensors, a full
    checkpoint, samples/*.png, the evaluation classifier, metrics.json, report.md and run.json.
    Raises :class:`~dimgen.errors.ConfigError`, :class:`~dimgen.errors.DataError` and
    :class:`~dimgen.errors.RunFolderError` before training, and
    :class:`~dimgen.errors.TrainingError` if the losses or weights become non-finite.
    ``on_scalars(steps_done, {"d_loss": ..., "g_loss": ...})`` receives every window's means.

    With ``config.devices = N > 1`` N processes are spawned (one per GPU, or gloo on the CPU);
    under ``torchrun`` the launcher's processes are joined. Each takes 1/N of every global batch
    (DDP, batch-norm statistics over the global batch): the updates are those of one process;
    rank 0 evaluates and writes the folder. A checkpoint resumes with the same number of
    processes only.
    """
    cfg = validate(config, GANConfig)
    if on_scalars is not None and needs_spawn(cfg.devices):
        raise ConfigError("on_scalars cannot cross into spawned processes (devices > 1)")

    def run(device: torch.device) -> GANRun:
        return fit(GANTrainer(cfg, data), device, out, resume=resume, progress=progress,
                   on_scalars=on_scalars)  # fmt: skip

    return launch(run, cfg.device, cfg.devices, _worker, (cfg, out, progress, resume, data))


def _worker(
    cfg: GANConfig, out: str | Path | None, progress: bool, resume: bool, data: Dataset | None
) -> GANRun | None:
    """One spawned process of :func:`train_gan`; rank 0's result (on the CPU) goes back."""
    from ..training.distributed import rank

    run = train_gan(cfg, out, progress=progress and rank() == 0, resume=resume, data=data)
    if rank() != 0:
        return None
    for module in (run.gan.generator, run.gan.tokenizer.encoder, run.gan.tokenizer.channel):
        module.cpu()
    return run


def _check_sizes(cfg: GANConfig, ds: Dataset | StreamedData, source: str) -> None:
    """Refuse, before training, data the models or the evaluation cannot use.

    Raises:
        DataError: fewer than 2 training images (batch-norm needs 2 per batch), or fewer held-out
            images than ``MIN_EVAL_SAMPLES`` while ``eval_samples`` asks for an evaluation.
    """
    if len(ds.x_train) < 2:
        raise DataError(
            f"{source}: {len(ds.x_train)} training image(s); the GAN's batch-norm needs batches "
            "of at least 2"
        )
    if cfg.eval_samples and len(ds.x_test) < MIN_EVAL_SAMPLES:
        raise DataError(
            f"{source}: {len(ds.x_test)} held-out image(s); the evaluation needs at least "
            f"{MIN_EVAL_SAMPLES} (or set eval_samples=0)"
        )


def _write_weights(
    run_dir: Path,
    G: nn.Module,
    D: nn.Module,
    G_ema: nn.Module | None,
    spec: dict[str, Any],
    cfg: GANConfig,
) -> None:
    save_weights(
        run_dir / "generator.safetensors", G.state_dict(), {"kind": "generator", "spec": spec}
    )
    if G_ema is not None:
        save_weights(run_dir / "generator_ema.safetensors", G_ema.state_dict(),
                     {"kind": "generator", "spec": spec, "ema_decay": cfg.ema_decay})  # fmt: skip
    save_weights(run_dir / "discriminator.safetensors", D.state_dict(),
                 {"kind": "discriminator", "spec": spec, "loss": cfg.loss})  # fmt: skip


def write_final_grids(gan: GAN, ds: Dataset | StreamedData, run_dir: Path, seed: int) -> None:
    k = min(32, len(ds.x_test))
    x = take(ds.x_test, slice(k))
    imgs, codes = gan.sample_conditional(x, seed=seed)
    write_samples(run_dir / "samples" / "conditional.png", imgs, codes,
                  real=torch.from_numpy(x), labels=ds.y_test[:k] if ds.y_test is not None else None,
                  seed=seed)  # fmt: skip
    imgs, codes = gan.sample_unconditional(64, seed=seed)
    write_samples(run_dir / "samples" / "unconditional.png", imgs, codes, seed=seed)


def read_json_or_empty(path: Path) -> dict[str, Any]:
    from ..parsing import read_json

    try:
        obj = read_json(path)
    except DimgenError:
        return {}
    return obj if isinstance(obj, dict) else {}
