"""Sample quality in one place: FID / KID, conditional consistency and the features they use.

- :mod:`.metrics`: FID / KID through torch-fidelity, the offline classifier feature extractor,
  conditional consistency and the class histogram;
- :mod:`.extractor`: the reference classifier, trained once per data set and cached, so runs
  of any generator on the same data are compared in the same feature space.

Names are imported lazily; torch-fidelity is imported only when a metric needs it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    name: ".metrics"
    for name in (
        "CLASSIFIER_FEATURES",
        "FID_CLASSIFIER",
        "INCEPTION_NAME",
        "KID_CLASSIFIER",
        "Classifier",
        "class_histogram_tv",
        "classifier_outputs",
        "conditional_consistency",
        "extractor_name",
        "fidelity_metrics",
        "find_inception_weights",
        "load_classifier",
        "load_inception_state",
        "precision_recall",
        "predict",
        "register_classifier_extractor",
        "register_inception_extractor",
        "save_classifier",
        "to_uint8",
        "train_classifier",
    )
}
_LAZY.update({"Extractor": ".extractor", "reference_extractor": ".extractor"})

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'dimgen.fidelity' has no attribute {name!r}")
