"""Noise-injected Deep InfoMax (Butakov et al., ICLR 2025): the paper's method in one package.

An encoder maps an image x to a code c; a noise channel adds Z to it; a critic scores
(x', c + Z) pairs and an MI lower bound (InfoNCE by default) is maximised. The noise caps the
mutual information, and the codes that maximise it follow the channel's prior (Gaussian or
uniform), which is what dimgen certifies and samples from.

One module per concept, read in this order:

- :mod:`.channel`: the noise channels (Gaussian, uniform), their capacity and the normalisation;
- :mod:`.critics`: critics T(x, y) on all B x B pairs of a batch;
- :mod:`.bounds`: the MI lower bounds (InfoNCE, NWJ, DV) on a score matrix;
- :mod:`.objectives`: :class:`~.objectives.NoisyInfoMax`, encoder + channel + critic + bound;
- :mod:`.encoders`: the encoder networks (conv, MLP);
- :mod:`.augment`: batched augmentations (the paper's pixel noise, a random affine warp);
- :mod:`.trainer`: :func:`~.trainer.train_encoder` on the shared harness (:mod:`dimgen.training`);
- :mod:`.runs`: an encoder run's artefacts (codes, metrics, report, weights);
- :mod:`.sweep`: the noise sweep of the paper's Figure 1;
- :mod:`.tokenizer` and :mod:`.hub`: the frozen encoder as a :class:`~.tokenizer.Tokenizer`, and
  its Hugging Face-style export.

Names are imported lazily, so ``import dimgen.infomax.channel`` does not load the trainer.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "GaussianChannel": ".channel",
    "NoiseChannel": ".channel",
    "UniformChannel": ".channel",
    "make_channel": ".channel",
    "build_critic": ".critics",
    "MIBound": ".bounds",
    "NoisyInfoMax": ".objectives",
    "build_encoder": ".encoders",
    "build_augmentation": ".augment",
    "EncoderRun": ".trainer",
    "EncoderTrainer": ".trainer",
    "train_encoder": ".trainer",
    "SweepConfig": ".sweep",
    "run_sweep": ".sweep",
    "Tokenizer": ".tokenizer",
    "export_run": ".hub",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'dimgen.infomax' has no attribute {name!r}")
