"""Input checks of the diagnostics: codes, labels and splits, each refused with a
:class:`~dimgen.errors.DataError` that names the problem."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..arrays import as_array
from ..errors import DataError
from .settings import MIN_SAMPLES

__all__ = ["check_codes"]


MAX_ABS_CODE = 1e6
"""Largest |code| the tests accept (squares and whitening stay far from overflow)."""


def check_codes(codes: Any, name: str = "codes") -> np.ndarray:
    """Return codes as a finite float64 (n, d) array or raise :class:`DataError`."""
    arr = as_array(codes, name)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise DataError(f"{name} must be real, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = " (use codes.reshape(-1, 1) for d = 1)" if arr.ndim == 1 else ""
        raise DataError(f"{name} must be a 2-D array (n, d), got shape {arr.shape}{hint}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{name} is empty (shape {arr.shape})")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr).all(1)
    if bad.any():
        rows = ", ".join(map(str, np.flatnonzero(bad)[:10]))
        raise DataError(f"{name} contain NaN or Inf in {int(bad.sum())} row(s) (rows {rows})")
    big = float(np.abs(arr).max())
    if big > MAX_ABS_CODE:
        raise DataError(
            f"{name} reach |x| = {big:.3g}, beyond {MAX_ABS_CODE:g}: no code under a N(0, I) or "
            "U[0, 1] prior is that large, and the tests' moments would overflow"
        )
    return arr


def _need(n: int, test: str, what: str = "codes") -> None:
    need = MIN_SAMPLES[test]
    if n < need:
        label = {"dagostino": "D'Agostino-Pearson", "shapiro": "Shapiro-Wilk", "ks": "KS"}[test]
        raise DataError(f"too few {what} for the {label} test: it needs at least {need}, got {n}")


def _check_labels(labels: Any, n: int) -> np.ndarray:
    y = as_array(labels, "labels")
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"labels must be a 1-D array of {n} entries, got shape {y.shape}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not np.all(y == np.round(y)):
            raise DataError("labels must be integers (class indices)")
        y = y.astype(np.int64)
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"labels must be integers (class indices), got dtype {y.dtype}")
    return y


def _check_split(split: Any, n: int) -> np.ndarray:
    s = as_array(split, "split").astype(str)
    if s.ndim != 1 or len(s) != n:
        raise DataError(f"split must be a 1-D array of {n} entries, got shape {s.shape}")
    unknown = sorted(set(np.unique(s).tolist()) - {"train", "test", "all"})
    if unknown:  # else a misspelt split would silently test every code, training ones too
        shown = ", ".join(repr(u) for u in unknown[:3]) + (", ..." if len(unknown) > 3 else "")
        raise DataError(f"split entries must be 'train', 'test' or 'all', got {shown}")
    return s


def _check_unit_interval(x: np.ndarray) -> None:
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise DataError(
            f"uniform prior: codes must lie in [0, 1], found values in [{lo:.4g}, {hi:.4g}] "
            "(use --prior gaussian for unbounded codes)"
        )
