"""Post-hoc priors: exact elementwise maps and normalizing flows, with KL bounds carried over.

Noise-injected DIM matches a Gaussian or uniform prior; any other prior is reached by an
invertible map T applied afterwards, and data processing carries the KL bound through it:
KL(T#P || T#Q) <= KL(P || Q). Modules, one job each:

- :mod:`.targets`: target laws and their spec strings (``laplace``, ``mixture:8``, samples);
- :mod:`.transforms`: the :class:`Bijection` interface and exact elementwise maps;
- :mod:`.backend`: trained flows (nflows MAF / RQS) behind :class:`FlowBackend`;
- :mod:`.kl`: kNN estimators of KL divergence and entropy;
- :mod:`.prior`: :class:`Prior` and :func:`load_prior`, what the GAN's sampler uses;
- :mod:`.runs`: :func:`transform_codes`, the library side of ``dimgen flow``.

Names are imported lazily so ``import dimgen.flows`` pulls in neither scipy nor nflows.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "FlowConfig": ".config",
    "Prior": ".prior",
    "load_prior": ".prior",
    "FlowRun": ".runs",
    "transform_codes": ".runs",
    "make_target": ".targets",
    "parse_spec": ".targets",
    "Bijection": ".transforms",
    "ElementwiseMap": ".transforms",
    "prior_map": ".transforms",
    "FlowBackend": ".backend",
    "NflowsBackend": ".backend",
    "fit_flow": ".backend",
    "knn_kl_divergence": ".kl",
    "knn_entropy": ".kl",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'dimgen.flows' has no attribute {name!r}")
