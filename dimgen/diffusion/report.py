"""The human-readable summary of a diffusion run (``report.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..gan.report import comparison_section
from .config import DiffusionConfig

__all__ = ["diffusion_report"]


def diffusion_report(metrics: dict[str, Any], cfg: DiffusionConfig, enc_dir: Path) -> str:
    """A short summary of a diffusion run: setup, the shared metric table, the sample grids."""
    lines = [
        "# dimgen code-conditioned diffusion run (diffusers UNet2DModel)",
        "",
        f"Encoder run `{enc_dir}` ({metrics['prior']} prior, d = {metrics['code_dim']}); data "
        f"`{cfg.data}`; UNet width {cfg.width} x {cfg.levels} levels "
        f"({metrics['parameters']} parameters), {cfg.beta_schedule} schedule, T = "
        f"{cfg.num_train_timesteps}, null-code rate {cfg.p_uncond}; {cfg.steps} steps, batch "
        f"{cfg.batch_size}; EMA {cfg.ema_decay or 'off'}; {metrics['train_seconds']:.0f} s. "
        f"Sampling: {cfg.scheduler}, {cfg.sample_steps} steps, guidance {cfg.guidance_scale}.",
        "",
    ]
    lines += comparison_section(metrics)
    lines += ["## Samples", "",
              "Conditional (columns alternate real | generated):", "",
              "![conditional](samples/conditional.png)", "",
              "Unconditional (codes from the prior):", "",
              "![unconditional](samples/unconditional.png)", ""]  # fmt: skip
    return "\n".join(lines)
