"""The trained GAN: a generator with the tokenizer (frozen encoder) it was conditioned on."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..config import check_count, check_seed, load_config
from ..errors import ConfigError, DataError, RunFolderError
from ..generators.protocol import SpecGenerator
from ..infomax.tokenizer import Tokenizer
from ..io import load_spec_module, read_run
from .config import GANConfig
from .nets import build_generator

__all__ = ["GAN", "check_truncation", "child_seeds", "noise"]


def check_truncation(truncation: float | None) -> float | None:
    """``truncation`` as a float (None: off). Raises :class:`~dimgen.errors.ConfigError` unless
    it is finite and > 0."""
    if truncation is None:
        return None
    t = float(truncation)
    if not (math.isfinite(t) and t > 0):
        raise ConfigError(f"the truncation must be a finite number > 0, got {truncation}")
    return t


def noise(
    n: int, dim: int, generator: torch.Generator | None = None, truncation: float | None = None
) -> Tensor:
    """G's noise (n, dim) on the CPU: N(0, I), or with ``truncation`` t the truncated normal on
    [-t, t] per coordinate (BigGAN's truncation trick; drawn by inverse CDF, the law of
    resampling every |z_i| > t)."""
    if truncation is None:
        return torch.randn(n, dim, generator=generator)
    z = torch.empty(n, dim)
    t = check_truncation(truncation)
    return nn.init.trunc_normal_(z, 0.0, 1.0, -t, t, generator=generator)


def child_seeds(seed: int | None, k: int) -> list[int | None]:
    """Independent seeds for codes and noise derived from one user seed (None stays random)."""
    if seed is None:
        return [None] * k
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(k)]


class GAN(SpecGenerator):
    """A trained generator with the tokenizer (frozen encoder) it was conditioned on.

    ``generate(codes)`` is the core; ``sample_unconditional`` draws codes from the prior and
    ``sample_conditional`` encodes real images first. All outputs are CPU tensors in [0, 1].

    ``truncation`` (default None: off) is the truncation trick of BigGAN (Brock et al. 2019,
    section 3.1) on G's noise: z ~ N(0, I) truncated to [-t, t] in every coordinate, trading
    diversity for fidelity per sample. It never touches the codes, which stay the prior's.
    """

    truncation: float | None = None

    label = "this GAN"

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
        _check_record(record, run_dir)
        file = run_dir / "generator_ema.safetensors"
        if not (ema and file.is_file()):
            file = run_dir / "generator.safetensors"
        gen, spec = load_spec_module(file, "generator", build_generator, "a dimgen generator")
        tok = Tokenizer.from_weights(run_dir / "encoder.safetensors", device)
        cfg = load_config(run_dir / "config.yaml", GANConfig)
        return cls(gen.to(device), tok, spec, cfg, run_dir, record)

    @property
    def noise_dim(self) -> int:
        return int(self.spec["noise_dim"])

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @torch.no_grad()
    def generate(self, codes: Any, seed: int | None = None, batch_size: int = 1024) -> Tensor:
        """(n, d) codes -> (n, C, H, W) images in [0, 1]; ``seed`` fixes the noise (drawn on
        the CPU, so the same on any device), truncated to [-t, t] if ``self.truncation`` is t."""
        c = self.check_codes(codes)
        seed, batch_size = check_seed(seed), check_count(batch_size, "batch_size")
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        z = noise(len(c), self.noise_dim, g, self.truncation)
        self.generator.eval()
        out = [
            self.generator(
                z[i : i + batch_size].to(self.device), c[i : i + batch_size].to(self.device)
            ).cpu()
            for i in range(0, len(c), batch_size)
        ]
        return torch.cat(out)

    def sample_unconditional(
        self, n: int, seed: int | None = None, temperature: float | None = 1.0
    ) -> tuple[Tensor, Tensor]:
        """``n`` images from codes drawn from the encoder's prior (at ``temperature``, see
        :meth:`Tokenizer.sample_prior`); returns (images, codes)."""
        n, seed = check_count(n), check_seed(seed)
        s_codes, s_noise = child_seeds(seed, 2)
        codes = self.tokenizer.sample_prior(n, seed=s_codes, temperature=temperature)
        return self.generate(codes, seed=s_noise), codes

    def sample_conditional(self, x: Any, seed: int | None = None) -> tuple[Tensor, Tensor]:
        """One image per input image, from its code (frozen encoder); returns (images, codes)."""
        codes = self.tokenizer.encode(x)
        if len(codes) == 0:
            raise DataError("no images given")
        return self.generate(codes, seed=seed), codes


def _check_record(record: dict[str, Any], run_dir: Path) -> None:
    """The fields of a GAN run's ``run.json`` that loaders use, checked against their schema."""
    split = record.get("split", {})
    ok = isinstance(split, dict)
    if ok:
        frac, seed = split.get("test_fraction", 0.2), split.get("seed", 0)
        ok = type(frac) in (int, float) and 0 < frac < 1 and type(seed) is int and 0 <= seed < 2**64
    if not ok:
        raise RunFolderError(
            f"{run_dir}/run.json: 'split' must be {{test_fraction: a number in (0, 1), seed: an "
            f"integer >= 0}}, got {split!r:.80}"
        )
    if not isinstance(record.get("data", ""), str):
        raise RunFolderError(f"{run_dir}/run.json: 'data' must be a data source name")
