"""Image data for SSL pre-training and probing: CIFAR through torchvision, the lossy CIFAR-10
test copy, an npz file or a folder of images (:mod:`dimgen.data.folder`); always
(N, 3, H, W) float32 in [0, 1], with integer labels where the source has them. A
``folder:PATH,stream=1`` source is listed, not decoded (:mod:`dimgen.data.stream`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.folder import DEFAULT_SIDE, parse_folder_source
from ..data.sources import Dataset, load_data
from ..data.stream import StreamedData, load_stream
from ..errors import DataError

__all__ = ["LOSSY_CIFAR10", "describe_split", "load_ssl_data"]

LOSSY_CIFAR10 = "CIFAR10/cifar10_test.npz"
"""Where ``cifar10-test-lossy`` lives under the data root (JPEG-decoded CIFAR-10 test set)."""


def load_ssl_data(
    source: str,
    root: str | None,
    test_fraction: float,
    seed: int,
    *,
    image_size: int = 32,
    labels: bool = True,
) -> Dataset | StreamedData:
    """The pre-training split (``x_train``) and probe split (``x_test``) of ``source``.

    ``cifar10-test-lossy``, ``npz:PATH`` and ``folder:PATH`` are split at random
    (``test_fraction``, ``seed``); ``cifar10`` / ``cifar100`` use their official splits. A
    folder's images are read as RGB and resized + centre-cropped to ``image_size``; with
    ``stream=1`` they are decoded on the fly (a :class:`~dimgen.data.stream.StreamedData` with
    the same split).

    Args:
        labels: require labels (the probe does; pre-training does not, so a flat folder works).
    Raises:
        DataError: missing files, images that are not 3-channel, or missing labels when required.
    """
    if source == "cifar10-test-lossy":
        path = _resolve_root(root) / LOSSY_CIFAR10
        if not path.is_file():
            raise DataError(f"cifar10-test-lossy: {path} not found (see shared/data/README.md)")
        ds = load_data(f"npz:{path}", None, test_fraction, seed)
        ds.name = source
    elif source.startswith("folder:"):
        folder = _folder_source(source, image_size)
        if parse_folder_source(folder).stream:
            ds = load_stream(folder, test_fraction, seed)
        else:
            ds = load_data(folder, root, test_fraction, seed)
        ds.name = source
    elif source == "cifar100":
        ds = _cifar100(_resolve_root(root))
    else:
        ds = load_data(source, root, test_fraction, seed)
    if len(ds.shape) != 3 or ds.shape[0] != 3:
        raise DataError(f"{source}: SSL pre-training needs (3, H, W) images, got {ds.shape}")
    if labels and (ds.y_train is None or ds.y_test is None):
        if source.startswith("folder:"):
            raise DataError(
                f"{source}: the probe needs labels, and a flat folder has none; use the "
                "ImageFolder layout PATH/<class>/<image>"
            )
        raise DataError(f"{source}: the probe needs labels (an array 'y')")
    return ds


def _folder_source(source: str, image_size: int) -> str:
    """``folder:PATH[,...]`` read as RGB at ``image_size`` (a given ``side`` must agree;
    ``stream`` and ``workers`` are kept)."""
    spec = parse_folder_source(source)
    if spec.mode == "grey":
        raise DataError(f"{source}: SSL pre-training needs RGB images (mode=rgb)")
    if spec.side not in (DEFAULT_SIDE, image_size):
        raise DataError(f"{source}: side={spec.side} contradicts image_size {image_size}")
    stream = f",stream=1,workers={spec.workers}" if spec.stream else ""
    return f"folder:{spec.path},side={image_size},mode=rgb{stream}"


def _resolve_root(root: str | None) -> Path:
    root = root or os.environ.get("DIMGEN_DATA")
    if not root:
        raise DataError("no data root: pass --data-root or set DIMGEN_DATA")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data root not found: {path}")
    return path


def _cifar100(root: Path) -> Dataset:
    try:
        from torchvision.datasets import CIFAR100

        tr = CIFAR100(str(root), train=True, download=True)
        te = CIFAR100(str(root), train=False, download=True)
    except Exception as exc:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DataError(f"cifar100 could not be loaded from {root} ({line})") from None
    to = lambda a: np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2))  # noqa: E731
    return Dataset("cifar100", to(tr.data), np.asarray(tr.targets), to(te.data),
                   np.asarray(te.targets))  # fmt: skip


def describe_split(source: str, ds: Dataset | StreamedData, test_fraction: float, seed: int) -> str:
    """How every number from this data must be labelled (e.g. the lossy copy's split N/M)."""
    n, m = len(ds.x_train), len(ds.x_test)
    if source == "cifar10-test-lossy":
        return f"CIFAR-10 test set, lossy copy, split {n}/{m} (seed {seed})"
    if source.startswith("npz:"):
        return f"{Path(source[4:]).name}, random split {n}/{m} (seed {seed})"
    if source.startswith("folder:"):
        return f"{parse_folder_source(source).path.name}/, random split {n}/{m} (seed {seed})"
    return f"{source}, official split {n}/{m}"
