"""A GAN conditioned on distribution-matched codes: training, sampling and evaluation (Appendix D).

The frozen encoder of an encoder run (``dimgen encode``) maps each training image x to its code
c(x) (inference mode: normalised, no channel noise). A conditional GAN learns G(noise, c) with
D(image, c). Because the codes follow a known prior, the same G samples

- *conditionally*: c = code of a real image (a variation of that image), and
- *unconditionally*: c drawn from the prior N(0, I) or U[0, 1]^d, no real data needed.

Loss: hinge (SNGAN) with spectral norm on every discriminator layer by default; the
non-saturating loss with an optional R1 penalty is the alternative. An exponential moving average
(EMA) of the generator's weights is kept and used for sampling.

Example:
    >>> run = train_gan(GANConfig(encoder_run="runs/digits"), "runs/digits-gan")  # doctest: +SKIP
    >>> gan = GAN.from_pretrained("runs/digits-gan")                               # doctest: +SKIP
    >>> images, codes = gan.sample_unconditional(64, seed=0)                       # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import (
    EncoderConfig,
    load_config,
    load_run_config,
    register_validator,
    replace,
    save_config,
    to_dict,
    validate,
)
from .data import Dataset, check_finite, load_data, parse_source
from .errors import ConfigError, DataError, RunFolderError, TrainingError
from .gan_nets import build_discriminator, build_generator, resolve_arch
from .io import load_weights, read_run, save_npz, save_weights, write_json, write_run, write_text
from .tokenizer import Tokenizer

__all__ = [
    "GAN",
    "GANConfig",
    "GANRun",
    "Samples",
    "d_loss",
    "ema_update",
    "evaluate_gan",
    "evaluate_run",
    "g_loss",
    "load_images",
    "prior_codes_from_flow",
    "r1_penalty",
    "read_codes",
    "sample",
    "save_image_grid",
    "train_gan",
    "write_samples",
]

CHECKPOINT = "checkpoint.safetensors"


@dataclass
class GANConfig:
    """Everything needed to train the code-conditional GAN; defaults are the quick digits run."""

    encoder_run: str | None = None
    """Encoder run folder whose frozen encoder supplies the codes (required)."""
    data: str | None = None
    """Training images (``digits``, ``mnist``, ``npz:PATH``, ...); None: the encoder run's data."""
    data_root: str | None = None
    """Folder for torchvision data sets; None: the encoder run's, else ``DIMGEN_DATA``."""
    arch: str = "auto"
    """``auto`` (dcgan for square images of side >= 16 and a multiple of 4, else mlp), ``mlp``, ``dcgan``."""
    conditioning: str = "concat"
    """How D sees the code: ``concat`` ([h(x), e(c)] -> head) or ``projection`` (<h(x), e(c)>)."""
    noise_dim: int = 32
    """Dimension of G's Gaussian noise input."""
    g_width: int = 128
    """Generator width (MLP hidden units; dcgan base channels)."""
    d_width: int = 128
    """Discriminator width (MLP hidden units; dcgan base channels)."""
    loss: str = "hinge"
    """``hinge`` or ``nonsaturating``."""
    spectral_norm: bool = True
    """Spectral norm on every discriminator layer."""
    r1_gamma: float = 0.0
    """Weight of the R1 penalty (gamma / 2) E||grad_x D(x, c)||^2 on real data (0: off)."""
    steps: int = 1000
    """Generator updates."""
    d_steps: int = 1
    """Discriminator updates per generator update."""
    batch_size: int = 128
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    beta1: float = 0.0
    beta2: float = 0.9
    ema_decay: float = 0.999
    """Decay of the generator EMA (0: no EMA); warmed up as min(decay, (1+t)/(10+t))."""
    seed: int = 0
    device: str = "auto"
    """``auto`` (cuda if available), ``cpu``, ``cuda`` or ``cuda:N``."""
    sample_every: int = 500
    """Save a sample grid to ``samples/`` every N steps (0: only at the end)."""
    checkpoint_every: int = 500
    """Save a full, resumable checkpoint every N steps (0: only at the end)."""
    log_every: int = 100
    """Average the losses over windows of N steps for the history (and divergence checks)."""
    classifier_epochs: int = 20
    """Epochs of the evaluation classifier (labelled data only; 0: no classifier, no label metrics)."""
    eval_samples: int = 2000
    """Held-out images (and as many unconditional samples) evaluated at the end (0: skip)."""
    threads: int = 0
    """CPU threads for torch (0: torch's default)."""


def _check_gan(cfg: GANConfig) -> None:
    if cfg.arch not in ("auto", "mlp", "dcgan"):
        raise ConfigError(f"arch must be auto, mlp or dcgan, got {cfg.arch!r}")
    if cfg.conditioning not in ("concat", "projection"):
        raise ConfigError(f"conditioning must be concat or projection, got {cfg.conditioning!r}")
    if cfg.loss not in ("hinge", "nonsaturating"):
        raise ConfigError(f"loss must be hinge or nonsaturating, got {cfg.loss!r}")
    for name in ("noise_dim", "g_width", "d_width", "steps", "d_steps", "batch_size", "log_every"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in (
        "sample_every",
        "checkpoint_every",
        "classifier_epochs",
        "eval_samples",
        "threads",
    ):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    for name in ("lr_g", "lr_d"):
        v = getattr(cfg, name)
        if not (math.isfinite(v) and v > 0):
            raise ConfigError(f"{name} must be > 0, got {v}")
    for name in ("beta1", "beta2", "ema_decay"):
        v = getattr(cfg, name)
        if not (math.isfinite(v) and 0 <= v < 1):
            raise ConfigError(f"{name} must lie in [0, 1), got {v}")
    if not (math.isfinite(cfg.r1_gamma) and cfg.r1_gamma >= 0):
        raise ConfigError(f"r1_gamma must be >= 0, got {cfg.r1_gamma}")
    dev = cfg.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {dev!r}")


register_validator(GANConfig, _check_gan)


# ---------------------------------------------------------------------------------------------
# losses


def d_loss(real: Tensor, fake: Tensor, kind: str = "hinge") -> Tensor:
    """Discriminator loss on scores (B,) of real and generated pairs.

    hinge: E[relu(1 - D(x, c))] + E[relu(1 + D(G(z, c), c))];
    nonsaturating: E[softplus(-D(x, c))] + E[softplus(D(G(z, c), c))].
    """
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if kind == "nonsaturating":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    raise ConfigError(f"unknown GAN loss {kind!r}")


def g_loss(fake: Tensor, kind: str = "hinge") -> Tensor:
    """Generator loss on scores (B,) of generated pairs: -E[D] (hinge) or E[softplus(-D)]."""
    if kind == "hinge":
        return -fake.mean()
    if kind == "nonsaturating":
        return F.softplus(-fake).mean()
    raise ConfigError(f"unknown GAN loss {kind!r}")


def r1_penalty(scores: Tensor, x: Tensor) -> Tensor:
    """E ||grad_x D(x, c)||^2 over the batch (``x`` must require grad; scores (B,))."""
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers (BN statistics) copied."""
    for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(p.detach(), 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(b)


# ---------------------------------------------------------------------------------------------
# images on disk


def save_image_grid(images: Tensor | np.ndarray, path: str | Path, nrow: int = 8) -> None:
    """Write (N, C, H, W) images in [0, 1] as one PNG grid (tiles upscaled to >= 28 px, atomic)."""
    from PIL import Image
    from torchvision.utils import make_grid

    from .io import atomic_path

    x = torch.as_tensor(np.asarray(images)) if not isinstance(images, Tensor) else images
    x = x.detach().float().cpu().clamp(0, 1)
    if x.ndim == 2:  # vectors: show as one row of pixels each
        x = x[:, None, None, :]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"cannot draw images of shape {tuple(x.shape)} (need N x 1|3 x H x W)")
    scale = max(1, math.ceil(28 / min(x.shape[2:])))
    if scale > 1:
        x = F.interpolate(x, scale_factor=scale, mode="nearest")
    grid = make_grid(x, nrow=max(1, nrow), padding=2, pad_value=1.0)  # (C, H', W')
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def write_samples(
    out: str | Path,
    images: Tensor,
    codes: Tensor,
    *,
    real: Tensor | None = None,
    labels: np.ndarray | None = None,
    seed: int | None = None,
    nrow: int = 8,
) -> tuple[Path, Path]:
    """Write a PNG grid and an ``.npz`` (``images``, ``codes``, [``real``, ``labels``]) beside it.

    With ``real``, the grid alternates columns real | generated (pairs side by side).
    Returns (png path, npz path).
    """
    png = Path(out)
    if png.suffix.lower() != ".png":
        raise ConfigError(f"--out must be a .png file, got {png}")
    npz = png.with_suffix(".npz")
    if real is not None:
        pairs = torch.stack([real.cpu(), images.cpu()], 1).flatten(0, 1)  # (2N, C, H, W)
        save_image_grid(pairs, png, nrow=2 * max(1, nrow // 2))
    else:
        save_image_grid(images, png, nrow=nrow)
    arrays: dict[str, np.ndarray] = {
        "images": images.cpu().numpy().astype(np.float32),
        "codes": codes.cpu().numpy().astype(np.float32),
    }
    if real is not None:
        arrays["real"] = real.cpu().numpy().astype(np.float32)
    if labels is not None:
        arrays["labels"] = np.asarray(labels, dtype=np.int64)
    if seed is not None:
        arrays["seed"] = np.asarray(seed, dtype=np.int64)
    save_npz(npz, **arrays)
    return png, npz


# ---------------------------------------------------------------------------------------------
# the trained generator


def _child_seeds(seed: int | None, k: int) -> list[int | None]:
    """Independent seeds for codes and noise derived from one user seed (None stays random)."""
    if seed is None:
        return [None] * k
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(k)]


class GAN:
    """A trained generator with the tokenizer (frozen encoder) it was conditioned on.

    ``generate(codes)`` is the core; ``sample_unconditional`` draws codes from the prior and
    ``sample_conditional`` encodes real images first. All outputs are CPU tensors in [0, 1].
    """

    def __init__(
        self,
        generator: nn.Module,
        tokenizer: Tokenizer,
        spec: dict[str, Any],
        config: GANConfig | None = None,
        path: Path | None = None,
        record: dict[str, Any] | None = None,
    ) -> None:
        self.generator = generator.eval()
        self.tokenizer = tokenizer
        self.spec = spec
        self.config = config
        self.path = path
        self.record = record or {}

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device = "cpu", ema: bool = True
    ) -> GAN:
        """Load a complete GAN run folder (``dimgen train-gan``); the EMA generator if ``ema``."""
        run_dir, record = read_run(path, "gan")
        file = run_dir / "generator_ema.safetensors"
        if not (ema and file.is_file()):
            file = run_dir / "generator.safetensors"
        tensors, meta = load_weights(file)
        spec = meta.get("spec")
        if meta.get("kind") != "generator" or not isinstance(spec, dict):
            raise RunFolderError(f"{file} is not a dimgen generator")
        try:
            gen = build_generator(spec)
            gen.load_state_dict(tensors)
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise RunFolderError(
                f"{file}: weights do not match their spec ({str(exc)[:120]})"
            ) from None
        tok = Tokenizer.from_weights(run_dir / "encoder.safetensors", device)
        cfg = load_config(run_dir / "config.yaml", GANConfig)
        return cls(gen.to(device), tok, spec, cfg, run_dir, record)

    @property
    def split(self) -> tuple[float, int]:
        """(test_fraction, seed) of the train/held-out split the run used (its encoder's)."""
        split = self.record.get("split") or {}
        return float(split.get("test_fraction", 0.2)), int(split.get("seed", 0))

    @property
    def code_dim(self) -> int:
        return int(self.spec["code_dim"])

    @property
    def noise_dim(self) -> int:
        return int(self.spec["noise_dim"])

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one generated image (C, H, W)."""
        return tuple(self.spec["shape"])

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def check_codes(self, codes: Any) -> Tensor:
        """Codes as a float32 (n, d) tensor; a :class:`DataError` for a wrong shape or NaN."""
        c = (
            codes.detach().cpu()
            if isinstance(codes, Tensor)
            else torch.as_tensor(np.asarray(codes))
        )
        if c.ndim != 2 or c.shape[1] != self.code_dim:
            raise DataError(
                f"codes must have shape (n, {self.code_dim}) for this GAN, got {tuple(c.shape)}"
            )
        if len(c) == 0:
            raise DataError("no codes given (n must be >= 1)")
        if not torch.isfinite(c.float()).all():
            raise DataError("codes contain NaN or Inf")
        return c.float()

    @torch.no_grad()
    def generate(self, codes: Any, seed: int | None = None, batch_size: int = 1024) -> Tensor:
        """(n, d) codes -> (n, C, H, W) images in [0, 1]; ``seed`` fixes the noise."""
        c = self.check_codes(codes)
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        z = torch.randn(len(c), self.noise_dim, generator=g)  # drawn on the CPU: same on any device
        self.generator.eval()
        out = [
            self.generator(
                z[i : i + batch_size].to(self.device), c[i : i + batch_size].to(self.device)
            ).cpu()
            for i in range(0, len(c), batch_size)
        ]
        return torch.cat(out)

    def sample_unconditional(self, n: int, seed: int | None = None) -> tuple[Tensor, Tensor]:
        """``n`` images from codes drawn from the encoder's prior; returns (images, codes)."""
        if n < 1:
            raise DataError(f"n must be >= 1, got {n}")
        s_codes, s_noise = _child_seeds(seed, 2)
        codes = self.tokenizer.sample_prior(n, seed=s_codes)
        return self.generate(codes, seed=s_noise), codes

    def sample_conditional(self, x: Any, seed: int | None = None) -> tuple[Tensor, Tensor]:
        """One image per input image, from its code (frozen encoder); returns (images, codes)."""
        codes = self.tokenizer.encode(x)
        if len(codes) == 0:
            raise DataError("no images given")
        return self.generate(codes, seed=seed), codes


def prior_codes_from_flow(
    path: str | Path, n: int, seed: int | None, dim: int, prior_name: str | None = None
) -> Tensor:
    """``n`` codes from a flow-defined prior (``dimgen.flows.load_prior``), in the encoder's space."""
    if n < 1:
        raise DataError(f"n must be >= 1, got {n}")
    try:
        from .flows import load_prior  # type: ignore[attr-defined]
    except ImportError as exc:
        raise ConfigError(
            f"--prior needs dimgen.flows (flow-defined priors), which is not available here ({exc})"
        ) from None
    prior = load_prior(path)
    source = getattr(prior, "source_prior", None)
    if prior_name is not None and source is not None and source != prior_name:
        raise ConfigError(
            f"the flow prior {path} maps back to {source} codes; this GAN was trained on "
            f"{prior_name} codes"
        )
    codes = torch.as_tensor(prior.to_source(prior.sample(n, seed=seed))).detach().float().cpu()
    if codes.ndim != 2 or codes.shape[1] != dim:
        raise DataError(
            f"the flow prior {path} gives codes of shape {tuple(codes.shape)}; this GAN needs (n, {dim})"
        )
    return codes


def load_images(
    source: str, data_root: str | None = None, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    """Images and labels of a data source for conditional sampling.

    ``name:split`` takes that split; a bare name takes the held-out ``test`` split; ``npz:PATH``
    takes every row.
    """
    name, which = parse_source(source)
    ds = load_data(name, data_root, test_fraction, seed)
    if name.startswith("npz:"):
        return ds.split("all")
    return ds.split(which or "test")


def read_codes(path: str | Path) -> np.ndarray:
    """The ``codes`` array (n, d) of an ``.npz`` (e.g. written by ``dimgen encode --encoder``)."""
    from .data import read_npz_arrays

    p = Path(path)
    codes = np.asarray(read_npz_arrays(p, "codes", what="codes")["codes"])
    if not np.issubdtype(codes.dtype, np.number):
        raise DataError(f"{p}: codes must be numeric, got dtype {codes.dtype}")
    return codes.astype(np.float32)


@dataclass
class Samples:
    """Generated images (n, C, H, W) with their codes; ``real`` / ``labels`` when from images."""

    images: Tensor
    codes: Tensor
    mode: str
    real: Tensor | None = None
    labels: np.ndarray | None = None


def sample(
    run: str | Path | GAN,
    *,
    unconditional: bool = False,
    from_images: str | None = None,
    codes: Any = None,
    prior: str | Path | None = None,
    n: int | None = None,
    seed: int = 0,
    data_root: str | None = None,
    ema: bool = True,
) -> Samples:
    """The library side of ``dimgen sample``: exactly one of the three modes.

    - ``unconditional``: ``n`` (default 64) codes from the encoder's prior, or from the
      flow-defined prior at ``prior``;
    - ``from_images``: a data source (``digits``, ``mnist:test``, ``npz:PATH``; a bare name means
      its held-out split), ``n`` (default 32) images picked with ``seed``, one sample each;
    - ``codes``: an (n, d) array or the path of an ``.npz`` holding ``codes`` (first ``n`` rows).
    """
    given = [m for m, on in (("unconditional", unconditional), ("from_images", from_images is not None),
                             ("codes", codes is not None)) if on]  # fmt: skip
    if len(given) != 1:
        raise ConfigError("give exactly one of unconditional, from_images, codes")
    if prior is not None and not unconditional:
        raise ConfigError("a flow prior only applies to unconditional sampling")
    if n is not None and n < 1:
        raise DataError(f"n must be >= 1, got {n}")
    gan = run if isinstance(run, GAN) else GAN.from_pretrained(run, ema=ema)
    if unconditional:
        count = 64 if n is None else n
        if prior is None:
            images, c = gan.sample_unconditional(count, seed=seed)
        else:
            c = prior_codes_from_flow(prior, count, seed, gan.code_dim, gan.tokenizer.prior_name)
            images = gan.generate(c, seed=seed)
        return Samples(images, c, "unconditional")
    if from_images is not None:
        frac, split_seed = gan.split
        root = data_root or (gan.config.data_root if gan.config else None)
        x, y = load_images(from_images, root, frac, split_seed)
        count = min(32 if n is None else n, len(x))
        sel = np.sort(np.random.default_rng(seed).choice(len(x), count, replace=False))
        real = torch.from_numpy(np.ascontiguousarray(x[sel]))
        images, c = gan.sample_conditional(real, seed=seed)
        return Samples(images, c, "conditional", real, None if y is None else y[sel])
    arr = read_codes(codes) if isinstance(codes, (str, Path)) else codes
    c = gan.check_codes(arr)
    if n is not None:
        c = c[:n]
    return Samples(gan.generate(c, seed=seed), c, "codes")


# ---------------------------------------------------------------------------------------------
# training


@dataclass
class GANRun:
    """The result of :func:`train_gan`: the trained nets, metrics, loss history and run folder."""

    config: GANConfig
    gan: GAN
    discriminator: nn.Module
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    path: Path | None = None


def gan_spec(cfg: GANConfig, shape: tuple[int, ...], code_dim: int) -> dict[str, Any]:
    """Everything needed to rebuild G and D (stored in the weights' metadata)."""
    return {
        "arch": resolve_arch(cfg.arch, shape),
        "shape": list(shape),
        "code_dim": code_dim,
        "noise_dim": cfg.noise_dim,
        "g_width": cfg.g_width,
        "d_width": cfg.d_width,
        "conditioning": cfg.conditioning,
        "spectral_norm": cfg.spectral_norm,
    }


def _encoder_setup(cfg: GANConfig, device: torch.device) -> tuple[Path, EncoderConfig, Tokenizer]:
    if not cfg.encoder_run:
        raise ConfigError("encoder_run is required: the encoder run folder whose codes condition G")
    enc_dir, _ = read_run(cfg.encoder_run, "encoder")
    enc_cfg = load_run_config(enc_dir / "config.yaml")
    return enc_dir, enc_cfg, Tokenizer.from_pretrained(enc_dir, device)


def _save_checkpoint(
    path: Path,
    nets: dict[str, nn.Module],
    opts: dict[str, torch.optim.Optimizer],
    gen: torch.Generator,
    step: int,
    history: list[dict[str, float]],
    cfg: GANConfig,
    partial: Tensor | None = None,
) -> None:
    """G, D, EMA, both optimisers, step, history and RNG states: everything a resume needs."""
    from .train import _opt_tensors

    tensors: dict[str, Tensor] = {}
    meta: dict[str, Any] = {"kind": "gan-checkpoint", "step": step, "history": history,
                            "config": to_dict(cfg), "optimizers": {}}  # fmt: skip
    for name, net in nets.items():
        tensors.update({f"{name}.{k}": v for k, v in net.state_dict().items()})
    for name, opt in opts.items():
        t, m = _opt_tensors(opt)
        tensors.update({f"{name}.{k}": v for k, v in t.items()})
        meta["optimizers"][name] = m
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.batches"] = gen.get_state()
    tensors["loss_window"] = (partial if partial is not None else torch.zeros(2)).detach().cpu()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    save_weights(path, tensors, meta)


def _load_checkpoint(
    path: Path,
    nets: dict[str, nn.Module],
    opts: dict[str, torch.optim.Optimizer],
    gen: torch.Generator,
) -> tuple[int, list[dict[str, float]], Tensor]:
    """Restore :func:`_save_checkpoint`'s state; returns (step, history, partial loss window)."""
    from .train import _opt_load

    tensors, meta = load_weights(path)
    if meta.get("kind") != "gan-checkpoint":
        raise RunFolderError(f"{path} is not a GAN checkpoint")
    try:
        for name, net in nets.items():
            prefix = f"{name}."
            net.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
        for name, opt in opts.items():
            prefix = f"{name}."
            sub = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            _opt_load(opt, sub, meta["optimizers"][name])
        torch.set_rng_state(tensors["rng.torch"])
        gen.set_state(tensors["rng.batches"])
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
        return int(meta["step"]), list(meta["history"]), tensors["loss_window"]
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise RunFolderError(f"{path} does not match this configuration ({exc})") from None


@torch.no_grad()
def _grid_samples(g: nn.Module, z: Tensor, codes: Tensor) -> Tensor:
    was = g.training
    g.eval()
    out = g(z, codes).cpu()
    g.train(was)
    return out


def train_gan(
    config: GANConfig,
    out: str | Path | None = None,
    *,
    progress: bool = False,
    resume: bool = False,
    data: Dataset | None = None,
) -> GANRun:
    """Train G(noise, code) on the codes of ``config.encoder_run``; write a run folder to ``out``.

    The run folder holds config.yaml, a copy of the encoder (encoder.safetensors, so the folder
    is self-contained), generator[_ema].safetensors, discriminator.safetensors, a full
    checkpoint, samples/*.png, the evaluation classifier, metrics.json, report.md and run.json.
    """
    cfg = validate(config)
    device = _device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    enc_dir, enc_cfg, tok = _encoder_setup(cfg, device)
    source = cfg.data or enc_cfg.data
    root = cfg.data_root or enc_cfg.data_root
    ds = (
        data
        if data is not None
        else load_data(source, root, enc_cfg.test_fraction, enc_cfg.split_seed)
    )
    check_finite(ds.x_train, f"{source} (train)")
    if ds.shape != tok.in_shape:
        raise DataError(
            f"{source} has samples of shape {ds.shape}, but the encoder of {enc_dir} expects {tok.in_shape}"
        )
    if len(ds.shape) != 3:
        raise DataError(
            f"the GAN generates images (C, H, W); {source} has samples of shape {ds.shape}"
        )
    run_dir = Path(out) if out is not None else None
    if resume and (run_dir is None or not (run_dir / CHECKPOINT).is_file()):
        raise RunFolderError(f"nothing to resume: no {CHECKPOINT} in {run_dir}")
    if (
        not resume
        and run_dir is not None
        and run_dir.exists()
        and (not run_dir.is_dir() or any(run_dir.iterdir()))
    ):
        raise RunFolderError(f"output folder {run_dir} exists and is not empty")
    cfg = replace(cfg, encoder_run=str(enc_dir.resolve()), data=source)
    spec = gan_spec(cfg, ds.shape, tok.dim)

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x_train = torch.from_numpy(np.ascontiguousarray(ds.x_train)).to(device)
    c_train = tok.encode(ds.x_train).to(device)  # frozen encoder, inference mode: (N, d)
    G, D = build_generator(spec).to(device), build_discriminator(spec).to(device)
    G_ema = copy.deepcopy(G).eval() if cfg.ema_decay > 0 else None
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))

    # Fixed grid inputs: top half codes of held-out images, bottom half codes from the prior.
    g_fixed = torch.Generator().manual_seed(cfg.seed + 1)
    n_cond = min(32, len(ds.x_test))
    grid_codes = torch.cat(
        [tok.encode(ds.x_test[:n_cond]), tok.sample_prior(32, seed=cfg.seed + 2)]
    )
    grid_z = torch.randn(len(grid_codes), cfg.noise_dim, generator=g_fixed)
    grid_codes, grid_z = grid_codes.to(device), grid_z.to(device)

    n, b = len(x_train), min(cfg.batch_size, len(x_train))
    history: list[dict[str, float]] = []
    sums = torch.zeros(2, device=device)
    start = 0
    if resume:
        assert run_dir is not None
        start, history, partial = _load_checkpoint(
            run_dir / CHECKPOINT, _nets(G, D, G_ema), {"opt_g": opt_g, "opt_d": opt_d}, gen
        )
        sums = partial.to(device)
    elif run_dir is not None:
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")

    t0 = time.perf_counter()
    steps = range(start, cfg.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(
            steps, total=cfg.steps, initial=start, desc="train-gan", unit="step", leave=False
        )
    G.train()
    D.train()
    for step in steps:
        for _ in range(cfg.d_steps):
            idx = torch.randint(n, (b,), generator=gen).to(device)
            x, c = x_train[idx], c_train[idx]
            with torch.no_grad():
                fake = G(torch.randn(b, cfg.noise_dim, device=device), c)
            if cfg.r1_gamma > 0:
                x = x.detach().requires_grad_(True)
            real_s = D(x, c)
            loss_d = d_loss(real_s, D(fake, c), cfg.loss)
            if cfg.r1_gamma > 0:
                loss_d = loss_d + 0.5 * cfg.r1_gamma * r1_penalty(real_s, x)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        idx = torch.randint(n, (b,), generator=gen).to(device)
        c = c_train[idx]
        loss_g = g_loss(D(G(torch.randn(b, cfg.noise_dim, device=device), c), c), cfg.loss)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if G_ema is not None:
            ema_update(G_ema, G, min(cfg.ema_decay, (1 + step) / (10 + step)))
        sums += torch.stack([loss_d.detach(), loss_g.detach()])
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            k = (done - 1) % cfg.log_every + 1
            ld, lg = (sums / k).tolist()  # one host sync per window
            sums.zero_()
            if not (math.isfinite(ld) and math.isfinite(lg)):
                raise TrainingError(f"GAN losses diverged (non-finite) by step {done}")
            history.append({"step": done, "d_loss": ld, "g_loss": lg})
            if hasattr(steps, "set_postfix"):
                steps.set_postfix(d=f"{ld:.3f}", g=f"{lg:.3f}")
        if run_dir is not None and cfg.sample_every and done % cfg.sample_every == 0:
            save_image_grid(_grid_samples(G_ema or G, grid_z, grid_codes),
                            run_dir / "samples" / f"step-{done:06d}.png")  # fmt: skip
        if (run_dir is not None and cfg.checkpoint_every and done % cfg.checkpoint_every == 0
                and done < cfg.steps):  # fmt: skip
            _save_checkpoint(run_dir / CHECKPOINT, _nets(G, D, G_ema), {"opt_g": opt_g, "opt_d": opt_d},
                             gen, done, history, cfg, sums)  # fmt: skip
    train_seconds = time.perf_counter() - t0

    G.eval()
    gan = GAN(G_ema or G, tok, spec, cfg, run_dir)
    metrics: dict[str, Any] = {"train_seconds": train_seconds, "steps": cfg.steps,
                               "arch": spec["arch"], "code_dim": tok.dim, "prior": tok.prior_name}  # fmt: skip
    enc_metrics = _read_json(enc_dir / "metrics.json")
    if "knn_acc" in enc_metrics:
        metrics["encoder_knn_acc"] = enc_metrics["knn_acc"]
    clf_path = None
    if run_dir is not None:
        _write_weights(run_dir, G, D, G_ema, spec, cfg)
        _save_checkpoint(run_dir / CHECKPOINT, _nets(G, D, G_ema), {"opt_g": opt_g, "opt_d": opt_d},
                         gen, cfg.steps, history, cfg, sums)  # fmt: skip
        shutil.copyfile(enc_dir / "encoder.safetensors", run_dir / "encoder.safetensors")
        shutil.copyfile(enc_dir / "config.yaml", run_dir / "encoder-config.yaml")
        save_image_grid(
            _grid_samples(G_ema or G, grid_z, grid_codes), run_dir / "samples" / "final.png"
        )
        if ds.y_train is not None and cfg.classifier_epochs > 0:
            from .fidelity import save_classifier, train_classifier

            clf = train_classifier(ds.x_train, ds.y_train, epochs=cfg.classifier_epochs,
                                   seed=cfg.seed, device=device)  # fmt: skip
            clf_path = run_dir / "classifier.safetensors"
            save_classifier(clf_path, clf, {"data": source, "epochs": cfg.classifier_epochs})
        if cfg.eval_samples > 0:
            metrics.update(evaluate_gan(gan, ds, classifier_path=clf_path, n=cfg.eval_samples,
                                        seed=cfg.seed, data_name=source, device=device))  # fmt: skip
        _final_grids(gan, ds, run_dir, cfg.seed)
        write_json(run_dir / "metrics.json", {**metrics, "history": history})
        write_text(run_dir / "report.md", gan_report(metrics, cfg, enc_dir))
        write_run(run_dir, "gan", encoder_run=str(enc_dir.resolve()), spec=spec,
                  data=source, split={"test_fraction": enc_cfg.test_fraction, "seed": enc_cfg.split_seed})  # fmt: skip
        gan.path = run_dir
    return GANRun(cfg, gan, D, metrics, history, run_dir)


def _device(name: str) -> torch.device:
    from .train import resolve_device

    return resolve_device(name)


def _nets(G: nn.Module, D: nn.Module, G_ema: nn.Module | None) -> dict[str, nn.Module]:
    nets = {"generator": G, "discriminator": D}
    if G_ema is not None:
        nets["generator_ema"] = G_ema
    return nets


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


def _final_grids(gan: GAN, ds: Dataset, run_dir: Path, seed: int) -> None:
    k = min(32, len(ds.x_test))
    imgs, codes = gan.sample_conditional(ds.x_test[:k], seed=seed)
    write_samples(run_dir / "samples" / "conditional.png", imgs, codes,
                  real=torch.from_numpy(ds.x_test[:k]), labels=ds.y_test[:k] if ds.y_test is not None else None,
                  seed=seed)  # fmt: skip
    imgs, codes = gan.sample_unconditional(64, seed=seed)
    write_samples(run_dir / "samples" / "unconditional.png", imgs, codes, seed=seed)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


# ---------------------------------------------------------------------------------------------
# evaluation


def evaluate_gan(
    gan: GAN,
    ds: Dataset,
    *,
    classifier_path: str | Path | None,
    n: int = 2000,
    seed: int = 0,
    data_name: str = "data",
    inception_weights: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Conditional vs unconditional generation, side by side, on held-out images of ``ds``.

    Conditional: G(z, code(x)) for up to ``n`` held-out x; unconditional: as many G(z, c) with
    c from the prior. With a classifier and labels: ``conditional_consistency`` (% of G(z,
    code(x)) classified as x's label), class histograms against the data's (``class_tv_*``,
    ``class_coverage_*``). FID / KID against the held-out images in the classifier's feature
    space (``fid_dimgen_classifier_*``), with a real-vs-real reference (training images); with
    local Inception weights also ``fid_*`` / ``kid_*``.
    """
    from .fidelity import (
        class_histogram_tv,
        conditional_consistency,
        extractor_name,
        fidelity_metrics,
        load_classifier,
        predict,
    )

    if n < 1:
        raise DataError(f"n must be >= 1, got {n}")
    x_ref, y_ref = ds.x_test, ds.y_test
    rng = np.random.default_rng(seed)
    if len(x_ref) > n:
        sel = np.sort(rng.choice(len(x_ref), n, replace=False))
        x_ref, y_ref = x_ref[sel], None if y_ref is None else y_ref[sel]
    m = len(x_ref)
    s_cond, s_uncond = _child_seeds(seed, 2)
    imgs_c, _ = gan.sample_conditional(x_ref, seed=s_cond)
    imgs_u, _ = gan.sample_unconditional(m, seed=s_uncond)
    out: dict[str, Any] = {"n_eval": m, "eval_seed": seed}
    if classifier_path is not None and y_ref is not None:
        clf, _ = load_classifier(classifier_path, device)
        k = clf.n_classes
        out["classifier_accuracy_real"] = conditional_consistency(predict(clf, x_ref), y_ref)
        out["conditional_consistency"] = conditional_consistency(predict(clf, imgs_c), y_ref)
        out["chance_consistency"] = float(100.0 * np.bincount(y_ref).max() / len(y_ref))
        out["n_classes"] = k
        for mode, imgs in (("conditional", imgs_c), ("unconditional", imgs_u)):
            h = class_histogram_tv(predict(clf, imgs), y_ref, k)
            out[f"class_tv_{mode}"] = h["tv"]
            out[f"class_coverage_{mode}"] = h["coverage"]
            out[f"class_histogram_{mode}"] = h["histogram"]
        out["class_histogram_data"] = (np.bincount(y_ref, minlength=k)[:k] / len(y_ref)).tolist()
    if classifier_path is not None or inception_weights is not None:
        name = extractor_name(data_name)
        x_real_ref = ds.x_train[
            np.sort(rng.choice(len(ds.x_train), min(m, len(ds.x_train)), replace=False))
        ]
        for mode, imgs in (
            ("conditional", imgs_c),
            ("unconditional", imgs_u),
            ("real", x_real_ref),
        ):
            fm = fidelity_metrics(x_ref, imgs, classifier_path, name,
                                  inception_weights=inception_weights, device=device, seed=seed)  # fmt: skip
            out.update({f"{k}_{mode}": v for k, v in fm.items()})
        if classifier_path is not None:
            out["feature_extractor"] = name
    return out


def evaluate_run(
    run: str | Path,
    *,
    n: int | None = None,
    seed: int = 0,
    data_root: str | None = None,
    device: str = "auto",
    inception_weights: str | Path | None = None,
    ema: bool = True,
) -> dict[str, Any]:
    """The library side of ``dimgen evaluate-gan``: :func:`evaluate_gan` on a GAN run folder."""
    dev = _device(device)
    gan = GAN.from_pretrained(run, device=dev, ema=ema)
    cfg = gan.config or GANConfig()
    frac, split_seed = gan.split
    source = str(gan.record.get("data") or cfg.data)
    ds = load_data(source, data_root or cfg.data_root, frac, split_seed)
    clf = gan.path / "classifier.safetensors" if gan.path is not None else None
    return evaluate_gan(gan, ds, classifier_path=clf if clf is not None and clf.is_file() else None,
                        n=n if n is not None else (cfg.eval_samples or 2000), seed=seed,
                        data_name=source, inception_weights=inception_weights, device=dev)  # fmt: skip


def gan_report(metrics: dict[str, Any], cfg: GANConfig, enc_dir: Path) -> str:
    """A short human-readable summary of a GAN run (report.md)."""
    lines = [
        "# dimgen conditional GAN run",
        "",
        f"Encoder run `{enc_dir}` ({metrics['prior']} prior, d = {metrics['code_dim']}); data `{cfg.data}`; "
        f"{metrics['arch']} G/D, {cfg.conditioning} conditioning, {cfg.loss} loss"
        f"{' + spectral norm' if cfg.spectral_norm else ''}{f' + R1 ({cfg.r1_gamma})' if cfg.r1_gamma else ''}; "
        f"{cfg.steps} steps, batch {cfg.batch_size}; EMA {cfg.ema_decay or 'off'}; "
        f"{metrics['train_seconds']:.0f} s.",
        "",
    ]
    if "n_eval" in metrics:
        lines += [f"## Conditional vs unconditional ({metrics['n_eval']} held-out images / samples)", "",
                  "| metric | conditional (codes of real images) | unconditional (codes from the prior) |",
                  "|---|---|---|"]  # fmt: skip
        if "conditional_consistency" in metrics:
            lines.append(f"| label consistency (%) | {metrics['conditional_consistency']:.1f} "
                         f"(classifier on real: {metrics['classifier_accuracy_real']:.1f}, chance "
                         f"{metrics['chance_consistency']:.1f}) | n/a |")  # fmt: skip
            lines.append(
                f"| class histogram TV vs data | {_num(metrics['class_tv_conditional'])} "
                f"| {_num(metrics['class_tv_unconditional'])} |"
            )
            lines.append(
                f"| classes covered (of {metrics['n_classes']}) | "
                f"{metrics['class_coverage_conditional']} | {metrics['class_coverage_unconditional']} |"
            )
        for key in ("fid_dimgen_classifier", "kid_dimgen_classifier", "fid", "kid"):
            if f"{key}_conditional" in metrics:
                lines.append(f"| {key} | {_num(metrics[f'{key}_conditional'])} | "
                             f"{_num(metrics[f'{key}_unconditional'])} |")  # fmt: skip
        if "encoder_knn_acc" in metrics and "conditional_consistency" in metrics:
            lines += ["", f"The codes keep {100 * metrics['encoder_knn_acc']:.1f}% 5-NN label accuracy "
                          "(held-out): roughly the ceiling for the label consistency."]  # fmt: skip
        if "fid_dimgen_classifier_real" in metrics:
            lines += ["", f"Reference: training vs held-out real images give fid_dimgen_classifier = "
                          f"{metrics['fid_dimgen_classifier_real']:.3f}, kid_dimgen_classifier = "
                          f"{metrics['kid_dimgen_classifier_real']:.4f} (the metric's floor at this sample size)."]  # fmt: skip
        if "feature_extractor" in metrics:
            lines += ["", f"`fid_dimgen_classifier` / `kid_dimgen_classifier` use the penultimate features of a "
                          f"classifier trained on the labelled training images (torch-fidelity extractor "
                          f"`{metrics['feature_extractor']}`), not Inception: compare them across runs on the same "
                          f"data, not with published FIDs."]  # fmt: skip
        lines.append("")
    lines += ["## Samples", "",
              "Conditional (columns alternate real | generated):", "", "![conditional](samples/conditional.png)", "",
              "Unconditional (codes from the prior):", "", "![unconditional](samples/unconditional.png)", ""]  # fmt: skip
    return "\n".join(lines)


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
