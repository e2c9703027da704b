"""Data sources: every way images enter dimgen, each read within bounds.

- :mod:`.sources`: :func:`~.sources.load_data` for ``digits``, ``mnist``, ``cifar10``, ``npz:PATH``
  and ``folder:PATH``; :class:`~.sources.Dataset`, :class:`~.sources.TensorBatches` and the one
  image-scale rule (:func:`~.sources.unit_images`);
- :mod:`.folder`: ``folder:PATH`` sources (ImageFolder or flat layouts of image files);
- :mod:`.stream`: ``folder:PATH,stream=1``: images decoded on the fly in DataLoader workers;
- :mod:`.npz`: bounded ``.npz`` reading (never unpickled) and the one codes-file loader.

This package never imports the method (:mod:`dimgen.infomax`) or the generators. Names are
imported lazily, so ``dimgen.data.npz`` loads without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    name: ".sources"
    for name in (
        "MAX_LABEL",
        "SCALE_TOLERANCE",
        "Dataset",
        "TensorBatches",
        "absolute_root",
        "absolute_source",
        "check_finite",
        "check_source_unchanged",
        "check_labels",
        "load_data",
        "parse_source",
        "read_npz",
        "read_npz_arrays",
        "source_digest",
        "unit_images",
    )
}
_LAZY.update({"read_codes": ".npz", "read_npz_members": ".npz", "read_folder": ".folder"})

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'dimgen.data' has no attribute {name!r}")
