"""One FID / KID feature extractor per data set: a reference classifier trained once and cached.

Every run on the same data computes ``fid_dimgen_classifier`` in the same feature space, so FIDs
of two runs (two seeds, a GAN and another generator) are comparable. The reference classifier
is trained on a canonical order of the data set's labelled images (rows sorted by content, so the
encoder run's split and seed do not matter) with a fixed seed (:data:`REFERENCE_SEED`): 80% for
training, 20% held out for the accuracy recorded in its metadata. It is cached as safetensors
(never pickle) in :func:`cache_dir` under a name that carries a fingerprint of the data and the
training settings; a later run on the same data finds and reuses it. Runs record the file's
sha256 (``fid_extractor_sha256`` in ``metrics.json``).

Cache folder: ``$DIMGEN_CACHE``, else ``$XDG_CACHE_HOME/dimgen``, else ``~/.cache/dimgen``.

The images may be a streamed folder (:class:`dimgen.data.stream.StreamedImages`): the
fingerprint, the training and the accuracy then read them a batch at a time (never all at once)
and give the in-memory array's key, weights and accuracy.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.stream import StreamedImages
from ..errors import DataError, RunFolderError

__all__ = ["REFERENCE_SEED", "Extractor", "cache_dir", "data_fingerprint", "reference_extractor"]

REFERENCE_SEED = 0
"""Seed of the reference classifier's split and training: the same for every run."""
REFERENCE_TEST_FRACTION = 0.2
"""Share of the canonical rows held out to measure the reference classifier's accuracy."""
_VERSION = 1  # bump when the classifier or its training changes: old cache entries are not reused


@dataclass(frozen=True)
class Extractor:
    """A reference classifier on disk: its path, sha256 and held-out accuracy (0..1)."""

    path: Path
    sha256: str
    accuracy: float
    trained: bool
    """True when this call trained it (False: found in the cache or at the given path)."""


def cache_dir() -> Path:
    """``$DIMGEN_CACHE``, else ``$XDG_CACHE_HOME/dimgen``, else ``~/.cache/dimgen``."""
    if os.environ.get("DIMGEN_CACHE"):
        return Path(os.environ["DIMGEN_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "dimgen"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_CHUNK = 1024
"""Images a streamed source decodes at a time for the fingerprint and the accuracy."""


def _blocks(x: np.ndarray | StreamedImages) -> Any:
    """float32 blocks of ``x``'s rows in order (the array itself when in memory)."""
    if isinstance(x, StreamedImages):
        return (xb.cpu().numpy() for xb in x.chunks(_CHUNK))
    return [np.ascontiguousarray(x)]


def _canonical(x: np.ndarray | StreamedImages, y: np.ndarray) -> np.ndarray:
    """Row order sorted by each row's content digest (then label): independent of any split."""
    keys = [
        hashlib.blake2b(row.tobytes(), digest_size=8).hexdigest()
        for block in _blocks(x)
        for row in block.reshape(len(block), -1)
    ]
    return np.lexsort((y, np.asarray(keys)))


def data_fingerprint(x: np.ndarray | StreamedImages, y: np.ndarray) -> str:
    """sha256 of the labelled images in canonical order (shape, dtype, pixels, labels); a
    streamed ``x`` is read twice, a chunk at a time, for the same digest."""
    order = _canonical(x, y)
    dtype = np.dtype(np.float32) if isinstance(x, StreamedImages) else x.dtype
    h = hashlib.sha256(f"{tuple(x.shape)}|{dtype}|v{_VERSION}".encode())
    if isinstance(x, StreamedImages):
        for block in _blocks(x.select(order)):
            h.update(block.tobytes())
    else:
        h.update(np.ascontiguousarray(x[order]).tobytes())
    h.update(np.ascontiguousarray(y[order]).astype(np.int64).tobytes())
    return h.hexdigest()


def _rows(x: np.ndarray | StreamedImages, rows: np.ndarray) -> np.ndarray | StreamedImages:
    return x.select(rows) if isinstance(x, StreamedImages) else x[rows]


def reference_extractor(
    x: np.ndarray | StreamedImages,
    y: np.ndarray,
    data: str,
    *,
    epochs: int = 20,
    path: str | Path | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> Extractor:
    """The data set's reference classifier: load it from ``path`` / the cache, or train it once.

    Args:
        x: every labelled image of the data set (train and test, any order), (N, C, H, W) in
            [0, 1]; or a streamed folder's images (read a batch at a time).
        y: their integer labels, (N,).
        data: the data source's name (for the cache file name and the metadata).
        epochs: training epochs (part of the cache key).
        path: ``--fid-extractor PATH``: use this file if it exists (it must fit the images),
            else train and write it there. None: the cache folder.
        device: where to train.
        progress: a tqdm bar over its training steps on stderr, when it is trained.

    Returns:
        The :class:`Extractor` (path, sha256 of the file, held-out accuracy).

    Raises:
        DataError: fewer than 2 classes or too few images.
        RunFolderError: ``path`` exists but is not a dimgen classifier for images of this shape
            and these classes.
    """
    from .metrics import (
        extractor_name,
        load_classifier,
        predict,
        save_classifier,
        train_classifier,
    )

    if len(x) != len(y) or len(x) < 10:
        raise DataError(f"the reference classifier needs >= 10 labelled images, got {len(x)}")
    fingerprint = data_fingerprint(x, y)
    key = hashlib.sha256(f"{fingerprint}|{epochs}|{REFERENCE_SEED}".encode()).hexdigest()[:16]
    if path is None:
        name = extractor_name(data).removeprefix("dimgen-classifier-")
        target = cache_dir() / f"fid-extractor-{name}-{key}.safetensors"
    else:
        target = Path(path).expanduser()
    n_classes = int(y.max()) + 1
    if target.is_file():
        try:
            clf, meta = load_classifier(target)
        except RunFolderError:
            if path is not None:
                raise
            clf, meta = None, {}  # a damaged cache entry: train it again
        if clf is not None:
            if list(clf.in_shape) != list(x.shape[1:]) or clf.n_classes != n_classes:
                raise RunFolderError(
                    f"{target}: a classifier for images {tuple(clf.in_shape)} with "
                    f"{clf.n_classes} classes, not {tuple(x.shape[1:])} with {n_classes}"
                )
            if path is not None or meta.get("key") == key:
                acc = float(meta.get("accuracy", float("nan")))
                return Extractor(target, _file_sha256(target), acc, trained=False)
    order = _canonical(x, y)
    perm = order[np.random.default_rng(REFERENCE_SEED).permutation(len(order))]
    n_test = max(1, round(REFERENCE_TEST_FRACTION * len(perm)))
    te, tr = perm[:n_test], perm[n_test:]
    clf = train_classifier(
        _rows(x, tr), y[tr], epochs=epochs, seed=REFERENCE_SEED, device=device, progress=progress
    )
    accuracy = float((predict(clf, _rows(x, te)) == y[te]).mean())
    meta: dict[str, Any] = {"data": data, "epochs": epochs, "seed": REFERENCE_SEED, "key": key,
                            "data_sha256": fingerprint, "accuracy": accuracy,
                            "n_train": len(tr), "n_test": len(te)}  # fmt: skip
    save_classifier(target, clf.cpu(), meta)
    return Extractor(target, _file_sha256(target), accuracy, trained=True)
