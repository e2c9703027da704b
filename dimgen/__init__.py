"""dimgen: generative modelling with distribution-matched representations.

Noise-injected Deep InfoMax (Butakov et al., ICLR 2025) trains encoders whose codes follow a known
prior (Gaussian or uniform); dimgen trains them, certifies the match, and builds generators and
tokenizers on the codes. Heavy pieces are imported lazily, so ``import dimgen`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "EncoderConfig": ".config",
    "load_config": ".config",
    "train_encoder": ".infomax.trainer",
    "EncoderRun": ".infomax.trainer",
    "Tokenizer": ".infomax.tokenizer",
    "GaussianChannel": ".infomax.channel",
    "UniformChannel": ".infomax.channel",
    "DimgenError": ".errors",
    "FlowConfig": ".flows",
    "load_prior": ".flows",
    "transform_codes": ".flows",
    "GAN": ".gan",
    "GANConfig": ".gan",
    "train_gan": ".gan",
    "evaluate": ".diagnostics",
    "Evaluation": ".diagnostics",
    "EvalConfig": ".diagnostics",
    "evaluate_run": ".diagnostics.runs",
    "run_sweep": ".infomax.sweep",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'dimgen' has no attribute {name!r}")
