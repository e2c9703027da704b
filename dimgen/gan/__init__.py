"""A GAN conditioned on distribution-matched codes: training, sampling and evaluation (Appendix D).

The frozen encoder of an encoder run (``dimgen encode``) maps each training image x to its code
c(x) (inference mode: normalised, no channel noise). A conditional GAN learns G(noise, c) with
D(image, c). Because the codes follow a known prior, the same G samples

- *conditionally*: c = code of a real image (a variation of that image), and
- *unconditionally*: c drawn from the prior N(0, I) or U[0, 1]^d, no real data needed.

Loss: hinge (SNGAN) with spectral norm on every discriminator layer by default; the
non-saturating loss with an optional R1 penalty is the alternative. An exponential moving average
(EMA) of the generator's weights is kept and used for sampling.

One job per module: :mod:`.config` (``GANConfig``), :mod:`.losses`, :mod:`.nets` (G, D, EMA,
spec), :mod:`.images` (grids and sample files), :mod:`.model` (the trained ``GAN``),
:mod:`.sampling` (``dimgen sample``), :mod:`.trainer` (``train_gan`` on
:mod:`dimgen.training`), :mod:`.evaluation`, :mod:`.report`.

Example:
    >>> run = train_gan(GANConfig(encoder_run="runs/digits"), "runs/digits-gan")  # doctest: +SKIP
    >>> gan = GAN.from_pretrained("runs/digits-gan")                               # doctest: +SKIP
    >>> images, codes = gan.sample_unconditional(64, seed=0)                       # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Lazy (PEP 562): `from dimgen.gan import GANConfig` needs no torch (the CLI's --help reads it).
_LAZY = {
    "GANConfig": ".config",
    "evaluate_gan": ".evaluation",
    "evaluate_run": ".evaluation",
    "save_image_grid": ".images",
    "write_samples": ".images",
    "d_loss": ".losses",
    "g_loss": ".losses",
    "r1_penalty": ".losses",
    "GAN": ".model",
    "ema_update": ".nets",
    "gan_spec": ".nets",
    "gan_report": ".report",
    "Samples": ".sampling",
    "load_images": ".sampling",
    "prior_codes_from_flow": ".sampling",
    "read_codes": ".sampling",
    "sample": ".sampling",
    "GANRun": ".trainer",
    "GANTrainer": ".trainer",
    "train_gan": ".trainer",
}

__all__ = [
    "GAN",
    "GANConfig",
    "GANRun",
    "GANTrainer",
    "Samples",
    "d_loss",
    "ema_update",
    "evaluate_gan",
    "evaluate_run",
    "g_loss",
    "gan_report",
    "gan_spec",
    "load_images",
    "prior_codes_from_flow",
    "r1_penalty",
    "read_codes",
    "sample",
    "save_image_grid",
    "train_gan",
    "write_samples",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'dimgen.gan' has no attribute {name!r}")
