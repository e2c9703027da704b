"""The trained diffusion generator: a code-conditioned ``diffusers`` UNet with its tokenizer.

:class:`DiffusionModel` implements :class:`dimgen.generators.Generator`, so ``dimgen sample``
and ``dimgen evaluate-gan`` treat it exactly like a GAN: ``generate(codes)`` denoises from
noise with the run's sampler, ``sample_unconditional`` draws the codes from the encoder's prior
(no extra network), ``sample_conditional`` encodes real images first. Images are CPU tensors
(n, C, H, W) in [0, 1]; the network works in [-1, 1] (x = 2 image - 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import load_config
from ..errors import DataError
from ..gan.model import child_seeds
from ..generators.protocol import SpecGenerator
from ..infomax.tokenizer import Tokenizer
from ..integrations.diffusers import (
    CodeConditionedUNet,
    CodeEmbedding,
    build_unet,
    make_scheduler,
    sample_with_scheduler,
)
from ..io import load_spec_module, read_run
from .config import DiffusionConfig

__all__ = ["DiffusionModel", "build_net", "diffusion_spec"]


def diffusion_spec(cfg: DiffusionConfig, shape: tuple[int, ...], tok: Tokenizer) -> dict[str, Any]:
    """Everything that rebuilds the network (stored in its safetensors metadata and run.json)."""
    return {
        "shape": list(shape),
        "code_dim": tok.dim,
        "prior": tok.prior_name,
        "block_out_channels": [cfg.width * 2**i for i in range(cfg.levels)],
        "layers_per_block": cfg.layers_per_block,
        "norm_groups": cfg.norm_groups,
        "num_train_timesteps": cfg.num_train_timesteps,
        "beta_schedule": cfg.beta_schedule,
    }


def build_net(spec: dict[str, Any]) -> CodeConditionedUNet:
    """A fresh :class:`CodeConditionedUNet` from a :func:`diffusion_spec`."""
    unet = build_unet(tuple(spec["shape"]), tuple(spec["block_out_channels"]),
                      int(spec["layers_per_block"]), int(spec["norm_groups"]))  # fmt: skip
    width = 4 * int(spec["block_out_channels"][0])
    return CodeConditionedUNet(unet, CodeEmbedding(int(spec["code_dim"]), width, spec["prior"]))


class DiffusionModel(SpecGenerator):
    """A trained code-conditioned diffusion model with the tokenizer it was conditioned on.

    ``scheduler`` (``ddim`` / ``ddpm``), ``sample_steps`` and ``guidance_scale`` (classifier-free
    guidance s; 0: the null code alone) set how :meth:`generate` samples; change them freely.
    """

    label = "this diffusion model"

    def __init__(
        self,
        net: CodeConditionedUNet,
        tokenizer: Tokenizer,
        spec: dict[str, Any],
        config: DiffusionConfig | None = None,
        path: Path | None = None,
        record: dict[str, Any] | None = None,
    ) -> None:
        self.net = net.eval()
        self.tokenizer = tokenizer
        self.spec = spec
        self.config = config or DiffusionConfig()
        self.path = path
        self.record = record or {}
        self.scheduler = self.config.scheduler
        self.sample_steps = self.config.sample_steps
        self.guidance_scale = self.config.guidance_scale
        self.progress = False  # a tqdm bar over the denoising steps of generate() (stderr)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device = "cpu", ema: bool = True
    ) -> DiffusionModel:
        """Load a complete diffusion run folder (``dimgen train-diffusion``); EMA weights if ``ema``."""
        run_dir, record = read_run(path, "diffusion")
        file = run_dir / "model_ema.safetensors"
        if not (ema and file.is_file()):
            file = run_dir / "model.safetensors"
        net, spec = load_spec_module(file, "diffusion", build_net, "a dimgen diffusion model")
        tok = Tokenizer.from_weights(run_dir / "encoder.safetensors", device)
        cfg = load_config(run_dir / "config.yaml", DiffusionConfig)
        return cls(net.to(device), tok, spec, cfg, run_dir, record)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def make_scheduler(self) -> Any:
        """The ``diffusers`` scheduler :meth:`generate` uses (the run's noise schedule)."""
        return make_scheduler(self.scheduler, int(self.spec["num_train_timesteps"]),
                              beta_schedule=self.spec["beta_schedule"])  # fmt: skip

    @torch.no_grad()
    def generate(self, codes: Any, seed: int | None = None, batch_size: int = 500) -> Tensor:
        """(n, d) codes -> (n, C, H, W) images in [0, 1]; ``seed`` fixes the noise."""
        from tqdm.auto import tqdm

        c = self.check_codes(codes)
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        starts = range(0, len(c), batch_size)
        with tqdm(total=len(starts) * self.sample_steps, desc=f"sampling {len(c)} images",
                  unit="step", leave=False, disable=not self.progress) as bar:  # fmt: skip
            out = [
                sample_with_scheduler(
                    self.net,
                    self.make_scheduler(),
                    c[i : i + batch_size],
                    num_inference_steps=self.sample_steps,
                    guidance_scale=self.guidance_scale,
                    generator=g,
                    on_step=bar.update,
                )
                for i in starts
            ]
        return ((torch.cat(out) + 1) / 2).clamp(0, 1)

    def sample_unconditional(
        self, n: int, seed: int | None = None, temperature: float | None = 1.0
    ) -> tuple[Tensor, Tensor]:
        """``n`` images from codes drawn from the encoder's prior (at ``temperature``, see
        :meth:`Tokenizer.sample_prior`); returns (images, codes)."""
        if n < 1:
            raise DataError(f"n must be >= 1, got {n}")
        s_codes, s_noise = child_seeds(seed, 2)
        codes = self.tokenizer.sample_prior(n, seed=s_codes, temperature=temperature)
        return self.generate(codes, seed=s_noise), codes

    def sample_conditional(self, x: Any, seed: int | None = None) -> tuple[Tensor, Tensor]:
        """One image per input image, from its code (frozen encoder); returns (images, codes)."""
        codes = self.tokenizer.encode(x)
        if len(codes) == 0:
            raise DataError("no images given")
        return self.generate(codes, seed=seed), codes
