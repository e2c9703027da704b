"""Named data sources and an on-device batch loader.

Sources: ``digits`` (scikit-learn's bundled 8x8 digits; no download), ``mnist``,
``fashion-mnist``, ``cifar10`` (torchvision layout under a root folder), ``npz:PATH`` (array ``x``,
optional ``y`` and ``split``), ``folder:PATH`` (your own images: an ImageFolder layout or a flat
folder, :mod:`dimgen.data.folder`). A ``:train`` / ``:test`` suffix selects one split (``mnist:test``).
All images become float32 tensors in [0, 1], shaped (N, C, H, W); vectors stay (N, F).

Image scale (one rule for every entry point, in :func:`unit_images`): ``uint8`` is divided by
255; floating-point values must already lie in [0, 1] (up to :data:`SCALE_TOLERANCE` for rounding,
then clipped); any other dtype (int16/32/64, uint16, bool, complex, strings) is refused, as is a
float array outside [0, 1], with one line naming the range seen and how to fix it.

Labels: integers in [0, :data:`MAX_LABEL`]; negative labels (a common "unlabelled" marker) and
absurdly large ones are refused when the data are loaded.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..arrays import as_array
from ..errors import DataError

__all__ = [
    "MAX_LABEL",
    "SCALE_TOLERANCE",
    "Dataset",
    "TensorBatches",
    "absolute_root",
    "absolute_source",
    "check_finite",
    "check_labels",
    "check_source_unchanged",
    "load_data",
    "parse_source",
    "read_npz",
    "read_npz_arrays",
    "source_digest",
    "unit_images",
]

SOURCES = ("digits", "mnist", "fashion-mnist", "cifar10", "npz:PATH", "folder:PATH")
SCALE_TOLERANCE = 1e-3
"""Float images may stray this far outside [0, 1] (rounding) before they are refused."""
MAX_LABEL = 1_000_000
"""Largest class label accepted (labels index histograms of size max + 1)."""


@dataclass
class Dataset:
    """Train and test arrays of one source; ``y`` arrays are None when there are no labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray | None

    def __post_init__(self) -> None:
        # The same rules for a Dataset built in Python as for every loader: images scaled by
        # unit_images, labels checked by check_labels.
        self.x_train = unit_images(self.x_train, f"{self.name} (train)")
        self.x_test = unit_images(self.x_test, f"{self.name} (test)")
        if self.y_train is not None:
            self.y_train = check_labels(self.y_train, len(self.x_train), f"{self.name} (train)")
        if self.y_test is not None:
            self.y_test = check_labels(self.y_test, len(self.x_test), f"{self.name} (test)")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample."""
        return tuple(self.x_train.shape[1:])

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray | None]:
        """``train``, ``test`` or ``all`` (train followed by test)."""
        if which == "train":
            return self.x_train, self.y_train
        if which == "test":
            return self.x_test, self.y_test
        x = np.concatenate([self.x_train, self.x_test])
        y = None
        if self.y_train is not None and self.y_test is not None:
            y = np.concatenate([self.y_train, self.y_test])
        return x, y


def parse_source(source: str) -> tuple[str, str | None]:
    """Split ``name[:split]`` (``npz:PATH`` and ``folder:PATH`` keep their path; no split suffix).

    Raises:
        DataError: an unknown source or split, or bad ``folder:`` options.
    """
    if not isinstance(source, str) or not source:
        raise DataError("data source must be a non-empty string")
    if source.startswith("npz:"):
        return source, None
    if source.startswith("folder:"):
        from .folder import parse_folder_source

        parse_folder_source(source)  # options checked before any image is read
        return source, None
    name, _, split = source.partition(":")
    if name not in ("digits", "mnist", "fashion-mnist", "cifar10"):
        raise DataError(f"unknown data source {source!r}{_source_hint(source, name)}")
    if split and split not in ("train", "test", "all"):
        raise DataError(f"unknown split {split!r} in {source!r} (expected train, test or all)")
    return name, split or None


def _source_hint(source: str, name: str) -> str:
    """What a mistyped source most likely meant: a near name (``mnistt``), or the ``npz:`` /
    ``folder:`` prefix a file or folder path lacks; else the known sources."""
    import difflib

    near = difflib.get_close_matches(name, ["digits", "mnist", "fashion-mnist", "cifar10"], n=1)
    if near:
        return f"; did you mean `{near[0]}{source[len(name) :]}`?"
    path = Path(source).expanduser()
    if path.suffix == ".npz" or path.is_file():
        return f"; a file of arrays is `npz:{source}`"
    if path.is_dir():
        return f"; a folder of images is `folder:{source}`"
    return f" (known: {', '.join(SOURCES)})"


def absolute_source(source: str) -> str:
    """``source`` with the path of an ``npz:`` / ``folder:`` source made absolute (options kept).

    Run folders record the absolute form, so a derived run (``train-gan``) started from another
    directory reads the same files. Named sources are returned unchanged.
    """
    for prefix in ("npz:", "folder:"):
        if source.startswith(prefix):
            body = source[len(prefix) :]
            parts = body.split(",") if prefix == "folder:" else [body]
            while len(parts) > 1 and "=" in parts[-1]:  # folder options (parse_folder_source)
                parts.pop()
            path = ",".join(parts)
            return prefix + str(Path(path).expanduser().resolve()) + body[len(path) :]
    return source


def source_digest(source: str) -> dict[str, Any] | None:
    """A cheap fingerprint of a file source: ``{"files": n, "sha256": ...}`` over the relative
    path, size and modification time of every file an ``npz:`` / ``folder:`` source reads (no
    pixel is read); ``None`` for a named source (its files are fixed).

    An encoder run records it; a derived run (GAN, diffusion) on the same source compares it, as
    images added or removed would silently re-split the data (held-out images in training).

    Raises:
        DataError: the source's files cannot be listed.
    """
    import hashlib
    import json

    if source.startswith("npz:"):
        root, files = None, [Path(source[4:]).expanduser()]
    elif source.startswith("folder:"):
        from .folder import _layout, parse_folder_source

        spec = parse_folder_source(source)
        root, files = spec.path, _layout(spec)[0]
    else:
        return None
    rows = []
    for f in files:
        try:
            st = f.stat()
        except OSError as exc:
            raise DataError(f"{f}: cannot be read ({exc.strerror or exc})") from None
        name = f.name if root is None else f.relative_to(root).as_posix()
        rows.append([os.fsencode(name).hex(), st.st_size, st.st_mtime_ns])
    text = json.dumps(rows, separators=(",", ":")).encode()
    return {"files": len(rows), "sha256": hashlib.sha256(text).hexdigest()}


def check_source_unchanged(source: str, recorded: Any, run_dir: Path, what: str) -> None:
    """Refuse a file source that changed since the run in ``run_dir`` recorded ``recorded``
    (:func:`source_digest`); nothing to compare for runs written before the digest existed.

    Raises:
        DataError: one line naming the source, the run and how many files there are now.
    """
    if not isinstance(recorded, dict) or "sha256" not in recorded:
        return
    now = source_digest(source)
    if now is None or now["sha256"] == recorded["sha256"]:
        return
    raise DataError(
        f"{source} changed since the encoder run {run_dir} read it ({now['files']} files now, "
        f"{recorded.get('files')} then; or sizes / modification times differ): its train/test "
        f"split would differ, so {what} could train on the encoder's held-out images; restore "
        "the files or train a new encoder"
    )


def absolute_root(root: str | None) -> str | None:
    """A data root as a resolved absolute path (None stays None); see :func:`absolute_source`."""
    return None if root is None else str(Path(root).expanduser().resolve())


def load_data(
    source: str, root: str | None = None, test_fraction: float = 0.2, seed: int = 0
) -> Dataset:
    """Load a named source with its train/test split (deterministic for sources without one).

    ``source`` is a bare name (``mnist``, ``npz:PATH``): this returns both splits, so a
    ``:train`` / ``:test`` suffix would be silently ignored and is refused instead (callers that
    honour a split, such as ``dimgen encode --encoder`` and ``sample --from-images``, strip it
    with :func:`parse_source` and pick :meth:`Dataset.split` themselves).

    Raises:
        DataError: unknown source, a split suffix, missing root, or invalid data.
    """
    name, split = parse_source(source)
    if split is not None:
        raise DataError(
            f"--data {source}: this command uses the whole data set with its own held-out split "
            f"and does not honour the ':{split}' suffix; pass --data {name}"
        )
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8) in [0, 1]
        return _random_split("digits", x, d.target.astype(np.int64), test_fraction, seed)
    if name.startswith("npz:"):
        return _load_npz(name[4:], test_fraction, seed)
    if name.startswith("folder:"):
        from .folder import parse_folder_source, read_folder

        spec = parse_folder_source(name)
        x, y, _ = read_folder(spec)
        return _random_split(spec.path.name or str(spec.path), x, y, test_fraction, seed)
    return _load_torchvision(name, _resolve_root(root))


def _resolve_root(root: str | None) -> Path:
    root = root or os.environ.get("DIMGEN_DATA")
    if not root:
        raise DataError("no data root: pass --data-root or set DIMGEN_DATA")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data root not found: {path}")
    return path


def _random_split(
    name: str, x: np.ndarray, y: np.ndarray | None, frac: float, seed: int
) -> Dataset:
    n = len(x)
    if n < 4:
        raise DataError(f"{name}: need at least 4 samples, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(frac * n))
    te, tr = perm[:n_test], perm[n_test:]
    return Dataset(name, x[tr], None if y is None else y[tr], x[te], None if y is None else y[te])


def unit_images(x: Any, name: str = "images") -> np.ndarray:
    """The one image-scale rule: any array of images or pixel vectors -> float32 in [0, 1].

    ``uint8`` is divided by 255. Floating point (float16/32/64, bfloat16 tensors) must lie in
    [0, 1] up to :data:`SCALE_TOLERANCE` (then clipped), and be finite. Every other dtype is
    refused: an int64 or uint16 array of 0..255 values is ambiguous (0..255? 0..65535?), so the
    caller converts it explicitly. Shape is unchanged.

    Args:
        x: numpy array, torch tensor or nested sequence, any shape.
        name: what the array is, for the error message (e.g. the file name).

    Raises:
        DataError: unsupported dtype, NaN / Inf rows, or float values outside [0, 1]; the message
            names the dtype and the range seen and says how to fix it.
    """
    arr = as_array(x, name)  # tensors (bfloat16 too) and ragged lists handled there
    fix = "pass uint8 0..255 or float in [0, 1] (e.g. divide by 255 or by the data's maximum)"
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(arr.dtype, np.floating):
        seen = ""
        if np.issubdtype(arr.dtype, np.integer) and arr.size:
            seen = f" with values in [{arr.min()}, {arr.max()}]"
        raise DataError(f"{name}: images of dtype {arr.dtype}{seen} are not supported; {fix}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, reported below
        out = arr.astype(np.float32, copy=False)  # no copy when already float32
    if out.ndim >= 1 and len(out):
        check_finite(out, name)
    elif out.size and not np.isfinite(out).all():
        raise DataError(f"{name}: contains NaN or Inf")
    if out.size:
        lo, hi = float(out.min()), float(out.max())
        if lo < -SCALE_TOLERANCE or hi > 1.0 + SCALE_TOLERANCE:
            raise DataError(
                f"{name}: float images must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]; {fix}"
            )
        if lo < 0.0 or hi > 1.0:  # rounding error within the tolerance: clip a copy
            out = np.clip(out, 0.0, 1.0)
    return out


def _to_float_images(x: np.ndarray, name: str) -> np.ndarray:
    """Scale by :func:`unit_images`; (N,H,W) -> (N,1,H,W); (N,H,W,C<=4) -> (N,C,H,W)."""
    if x.ndim not in (2, 3, 4):
        raise DataError(f"{name}: x must be (N, F), (N, H, W) or (N, C, H, W), got {x.shape}")
    x = unit_images(x, name)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def check_labels(y: Any, n: int, name: str) -> np.ndarray:
    """Validate class labels: (n,) integers in [0, :data:`MAX_LABEL`] -> int64 array.

    Raises:
        DataError: wrong length, non-integer dtype, negative labels (dimgen has no "unlabelled"
            marker: drop those rows or omit ``y``) or labels above :data:`MAX_LABEL`.
    """
    y = np.asarray(y).reshape(-1)
    if len(y) != n:
        raise DataError(f"{name}: y has {len(y)} entries but x has {n} rows")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{name}: y must hold integer labels, got dtype {y.dtype}")
    if len(y) and y.min() < 0:
        raise DataError(
            f"{name}: {int((y < 0).sum())} label(s) are negative (min {y.min()}); labels must be "
            f"0..{MAX_LABEL}: drop unlabelled rows or omit y"
        )
    if len(y) and y.max() > MAX_LABEL:
        raise DataError(f"{name}: label {y.max()} is larger than {MAX_LABEL}; use labels 0..K-1")
    return y.astype(np.int64)


def read_npz_arrays(path: str | Path, required: str, what: str = "npz") -> dict[str, np.ndarray]:
    """The data arrays (``x``, ``y``, ``split``) of an ``.npz``, bounded and never unpickled.

    Only those members are read (:func:`dimgen.data.npz.read_npz_members`); one-line errors if
    the file is missing, hostile or without ``required``.
    """
    from .npz import read_npz_members

    return read_npz_members(path, ("x", "y", "split", required), (required,), what=what)


def read_npz(path: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(x, y, split)`` of an npz file in file order, validated; ``y``/``split`` may be None."""
    p = Path(path).expanduser()
    arrays = read_npz_arrays(p, "x")
    x = _to_float_images(arrays["x"], str(p))
    if len(x) == 0:
        raise DataError(f"{p}: array x is empty")
    if x.ndim < 2 or 0 in x.shape[1:]:
        raise DataError(f"{p}: samples of x hold no values (shape {x.shape}); need (n, ...) data")
    y = arrays.get("y")
    if y is not None:
        y = check_labels(y, len(x), str(p))
    split = None
    if "split" in arrays:
        split = np.asarray(arrays["split"]).astype(str).reshape(-1)
        if len(split) != len(x):
            raise DataError(f"{p}: split has {len(split)} entries but x has {len(x)} rows")
    return x, y, split


def _load_npz(path: str, frac: float, seed: int) -> Dataset:
    x, y, split = read_npz(path)
    name = Path(path).name
    if split is not None:
        tr, te = split == "train", split == "test"
        if not tr.any() or not te.any():
            raise DataError(f"{path}: split must mark some rows 'train' and some 'test'")
        return Dataset(
            name, x[tr], None if y is None else y[tr], x[te], None if y is None else y[te]
        )
    return _random_split(name, x, y, frac, seed)


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format: uint8 payload), optionally gzipped, checked against its header.

    Raises:
        DataError: unreadable or truncated file, a magic number other than uint8 IDX, or a header
            whose shape does not match the payload size; the message names the file.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(
            f"{path}: cannot be read, damaged or truncated ({_first_line(exc)})"
        ) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise DataError(f"{path}: not a uint8 IDX file (bad magic number {data[:4].hex()!r})")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    want = math.prod(shape)
    if len(data) - offset != want:
        raise DataError(
            f"{path}: IDX header says shape {shape} ({want} bytes) but the payload has "
            f"{len(data) - offset} bytes (damaged or truncated file)"
        )
    return np.frombuffer(data, np.uint8, offset=offset).reshape(shape)


def _find_idx(raw: Path, stem: str) -> Path | None:
    for cand in (raw / stem, raw / f"{stem}.gz"):
        if cand.is_file():
            return cand
    return None


def _load_torchvision(name: str, root: Path) -> Dataset:
    if name in ("mnist", "fashion-mnist"):
        folder = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[name]
        raw = root / folder / "raw"
        stems = [
            "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
        ]  # fmt: skip
        found = [_find_idx(raw, s) for s in stems]
        if all(found):  # read the IDX files directly: no writes into a read-only root
            xtr, ytr, xte, yte = (_read_idx(p) for p in found)  # type: ignore[arg-type]
        else:
            xtr, ytr, xte, yte = _torchvision_download(name, root)
        return Dataset(
            name,
            _to_float_images(np.asarray(xtr), name),
            check_labels(ytr, len(xtr), f"{name} train labels"),
            _to_float_images(np.asarray(xte), name),
            check_labels(yte, len(xte), f"{name} test labels"),
        )
    if name == "cifar10":
        try:
            from torchvision.datasets import CIFAR10

            tr = CIFAR10(str(root), train=True, download=True)
            te = CIFAR10(str(root), train=False, download=True)
        except Exception as exc:
            raise DataError(
                f"cifar10 could not be loaded from {root} ({_first_line(exc)})"
            ) from None
        return Dataset(
            name,
            _to_float_images(np.asarray(tr.data), name),
            np.asarray(tr.targets, dtype=np.int64),
            _to_float_images(np.asarray(te.data), name),
            np.asarray(te.targets, dtype=np.int64),
        )
    raise DataError(f"unknown data source {name!r}")


def _torchvision_download(name: str, root: Path) -> tuple[np.ndarray, ...]:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[name]
    try:
        tr = cls(str(root), train=True, download=True)
        te = cls(str(root), train=False, download=True)
    except Exception as exc:
        raise DataError(
            f"{name} not found under {root} and could not be downloaded ({_first_line(exc)})"
        ) from None
    return tr.data.numpy(), tr.targets.numpy(), te.data.numpy(), te.targets.numpy()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


def check_finite(x: np.ndarray, name: str) -> None:
    """Raise a :class:`DataError` listing the first rows with NaN or Inf."""
    flat = x.reshape(len(x), -1)
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(str(r) for r in rows[:10]) + (" ..." if len(rows) > 10 else "")
        raise DataError(f"{name}: {len(rows)} row(s) contain NaN or Inf (rows {shown})")


class TensorBatches:
    """Shuffled mini-batches of tensors that already live on the training device.

    No per-sample Python work: one ``randperm`` per epoch and index slicing on the device.
    ``shard=(rank, world)`` yields rank's contiguous 1/world of every global batch (all processes
    share the generator's seed, so together they cover exactly the single-process batches).
    """

    def __init__(
        self,
        *tensors: Tensor,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = True,
        generator: torch.Generator | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if not tensors:
            raise ValueError("TensorBatches needs at least one tensor")
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            raise ValueError("all tensors must have the same first dimension")
        rank, world = shard
        if world < 1 or not 0 <= rank < world or batch_size % world:
            raise ValueError(f"shard {shard} does not divide batches of {batch_size}")
        if world > 1 and not drop_last:
            raise ValueError("sharded batches need drop_last=True (equal shards)")
        self.tensors, self.n = tensors, n
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.generator, self.shard = generator, shard

    def __len__(self) -> int:
        if self.drop_last:
            return self.n // self.batch_size
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        dev = self.tensors[0].device
        if self.shuffle:
            idx = torch.randperm(self.n, generator=self.generator).to(dev)
        else:
            idx = torch.arange(self.n, device=dev)
        rank, world = self.shard
        for b in range(len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            if world > 1:
                part = self.batch_size // world
                sel = sel[rank * part : (rank + 1) * part]
            yield tuple(t[sel] for t in self.tensors)
