"""User-supplied arrays read as numpy, with one :class:`~dimgen.errors.DataError` for what
numpy cannot read (ragged nested lists, unconvertible objects) instead of its own exceptions.

Example:
    >>> as_array([[1, 2], [3, 4]], "codes").shape
    (2, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DataError

__all__ = ["as_array"]


def as_array(x: Any, name: str) -> np.ndarray:
    """``np.asarray(x)``; a torch tensor is detached and moved to the CPU first.

    Args:
        x: array, tensor or (nested) sequence of numbers.
        name: what ``x`` is, for the message (``codes``, ``inputs``, ``labels``).

    Raises:
        DataError: ``x`` is a ragged nested list (rows of different lengths) or an object numpy
            cannot turn into an array.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if str(getattr(x, "dtype", "")) == "torch.bfloat16":
            x = x.float()
        x = x.numpy()
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:
        ragged = "inhomogeneous" in str(exc) or "sequence" in str(exc)
        what = "a ragged list (rows of different lengths)" if ragged else type(x).__name__
        raise DataError(
            f"{name} must be a rectangular array of numbers, got {what}; give every row the "
            "same length"
        ) from None
