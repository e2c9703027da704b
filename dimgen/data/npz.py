"""Bounded ``.npz`` reading: only the members asked for, sizes checked before decompressing.

An ``.npz`` is a zip of ``.npy`` members. :func:`numpy.load` decompresses a member whole on
access and trusts its header, so a 2 MB file can ask for tens of GB, and an unused member is
still paid for when every key is read. :func:`read_npz_members` opens the zip itself, refuses
members that are links, directories, object arrays or declare more than :data:`MAX_NPZ_BYTES`,
checks each ``.npy`` header's shape against the member's declared size, and reads only the
named members (the zip reader stops at the declared size and checks the CRC).

:func:`read_codes` is the one loader of codes files (``codes`` (n, d), optional ``labels`` and
``split`` of length n) used by every command. Torch-free, so argument checks stay fast.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["MAX_CODE_ABS", "MAX_NPZ_BYTES", "read_codes", "read_npz_members"]

MAX_NPZ_BYTES = 2 * 1024**3
"""Largest uncompressed size (bytes) of one member read from an ``.npz`` (2 GiB)."""

MAX_CODE_ABS = 1e6
"""Largest |code| accepted: codes are normalised (Gaussian: about N(0, 1); uniform: [0, 1])."""

_S_IFMT, _S_IFLNK = 0o170000, 0o120000


def read_npz_members(
    path: str | Path,
    members: tuple[str, ...],
    required: tuple[str, ...] = (),
    *,
    what: str = "npz",
    max_bytes: int = MAX_NPZ_BYTES,
    error: type[Exception] = DataError,
) -> dict[str, np.ndarray]:
    """The arrays ``members`` of an ``.npz`` that exist (never unpickled); others are not read.

    Args:
        path: the file.
        members: names to read (without ``.npy``); absent optional ones are left out.
        required: names that must be present.
        what: how messages name the file when it is missing.
        max_bytes: limit on one member's uncompressed size (declared and from its header).
        error: the :class:`~dimgen.errors.DimgenError` subclass raised.

    Raises:
        error: missing or unreadable file, a member that is missing, a link, not a ``.npy``,
            an object array, or larger than ``max_bytes``; the message names the file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise error(f"{what} file not found: {p}")
    try:
        zf = zipfile.ZipFile(p)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise error(f"{p} is not a readable .npz file ({type(exc).__name__})") from None
    with zf:
        infos = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
        missing = [m for m in required if m not in infos]
        if missing:
            found = ", ".join(sorted(infos)) or "none"
            raise error(f"{p} has no array named '{missing[0]}' (found: {found})")
        out = {}
        for name in members:
            if name in infos:
                out[name] = _read_member(zf, infos[name], p, max_bytes, error)
    return out


def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, p: Path, limit: int, error: type[Exception]
) -> np.ndarray:
    name = info.filename[:-4]
    if (info.external_attr >> 16) & _S_IFMT == _S_IFLNK or info.is_dir():
        raise error(f"{p}: member '{name}' is a link or folder, not an array")
    if info.file_size > limit:
        raise error(
            f"{p}: member '{name}' declares {info.file_size} bytes uncompressed, more than the "
            f"limit of {limit}"
        )
    fmt = np.lib.format
    try:
        with zf.open(info) as fh:
            version = fmt.read_magic(fh)
            header = fmt.read_array_header_2_0 if version >= (2, 0) else fmt.read_array_header_1_0
            shape, _, dtype = header(fh)
            if dtype.hasobject:
                raise error(f"{p}: member '{name}' holds Python objects; only numeric arrays")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > min(limit, info.file_size):
                raise error(
                    f"{p}: member '{name}' claims shape {shape} ({nbytes} bytes) but declares "
                    f"{info.file_size} bytes (limit {limit})"
                )
        with zf.open(info) as fh:
            return fmt.read_array(fh, allow_pickle=False)
    except error:
        raise
    except Exception as exc:  # zipfile/numpy raise several types for corrupt members
        raise error(
            f"{p}: member '{name}' is not a readable array ({type(exc).__name__})"
        ) from None


def read_codes(
    path: str | Path, error: type[Exception] = DataError
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(codes (n, d) float64, labels (n,) int64 or None, split (n,) str or None)`` of a codes file.

    The one loader for codes files (``dimgen encode``'s ``codes.npz``, ``--codes``, ``sample
    --codes``, flows): everything is checked here, before any work.

    Raises:
        error: no ``codes``; codes not a numeric (n, d) array with n, d >= 1; a non-finite code
            or one with |x| > :data:`MAX_CODE_ABS`; ``labels`` not integers of length n;
            ``split`` not of length n; any failure of :func:`read_npz_members`.
    """
    p = Path(path).expanduser()
    arrays = read_npz_members(
        p, ("codes", "labels", "split"), ("codes",), what="codes", error=error
    )
    codes = arrays["codes"]
    if codes.ndim != 2 or codes.shape[0] < 1 or codes.shape[1] < 1:
        raise error(
            f"{p}: codes must be a 2-D (n, d) array with n, d >= 1, got shape {codes.shape}"
        )
    if not (np.issubdtype(codes.dtype, np.floating) or np.issubdtype(codes.dtype, np.integer)):
        raise error(f"{p}: codes must be numeric, got dtype {codes.dtype}")
    codes = codes.astype(np.float64)
    if not np.isfinite(codes).all():
        raise error(f"{p}: {int((~np.isfinite(codes)).sum())} code value(s) are NaN or infinite")
    big = float(np.abs(codes).max())
    if big > MAX_CODE_ABS:
        raise error(
            f"{p}: codes reach |x| = {big:.3g}, beyond {MAX_CODE_ABS:g}; dimgen codes are "
            "normalised (about N(0, 1) or in [0, 1])"
        )
    n = len(codes)
    labels = arrays.get("labels")
    if labels is not None:
        if labels.ndim != 1 or len(labels) != n or not np.issubdtype(labels.dtype, np.integer):
            raise error(
                f"{p}: labels must be {n} integers (one per code), got {labels.dtype} of shape "
                f"{labels.shape}"
            )
        labels = labels.astype(np.int64)
    split = arrays.get("split")
    if split is not None:
        if split.ndim != 1 or len(split) != n or split.dtype.kind not in "US":
            raise error(
                f"{p}: split must be {n} strings (one per code), got {split.dtype} of shape "
                f"{split.shape}"
            )
        split = split.astype(str)
    return codes, labels, split
