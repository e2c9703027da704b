"""What every trained code-conditioned generator offers (GAN, diffusion), and loading one.

:class:`Generator` is the small protocol that sampling (``dimgen sample``) and evaluation
(``dimgen evaluate-gan``) need; :func:`dimgen.generators.runs.load_generator` reads a complete run
folder of any generator kind. Both :class:`dimgen.gan.GAN` and :class:`dimgen.diffusion.DiffusionModel`
implement it, so neither the sampling nor the evaluation code knows which one it has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from ..arrays import as_array
from ..errors import DataError
from ..infomax.tokenizer import Tokenizer

__all__ = ["GENERATOR_KINDS", "Generator", "SpecGenerator", "check_codes"]

GENERATOR_KINDS = ("gan", "diffusion")
"""Run kinds (``run.json``) that :func:`load_generator` reads."""


@runtime_checkable
class Generator(Protocol):
    """A trained generator of images (n, C, H, W) in [0, 1] from codes (n, d) of a tokenizer.

    ``config`` has at least ``data_root`` and ``eval_samples``; ``record`` is its ``run.json``.
    """

    tokenizer: Tokenizer
    config: Any
    path: Path | None
    record: dict[str, Any]

    @property
    def code_dim(self) -> int: ...

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def split(self) -> tuple[float, int]: ...

    def check_codes(self, codes: Any) -> Tensor: ...

    def generate(self, codes: Any, seed: int | None = None) -> Tensor: ...

    def sample_unconditional(
        self, n: int, seed: int | None = None, temperature: float | None = 1.0
    ) -> tuple[Tensor, Tensor]: ...

    def sample_conditional(self, x: Any, seed: int | None = None) -> tuple[Tensor, Tensor]: ...


class SpecGenerator:
    """What GAN and diffusion models share: the properties read off their weights' ``spec`` and
    their ``run.json`` ``record``, and the code check. Subclasses set ``spec``, ``record`` and
    the class attribute ``label`` (for messages)."""

    label = "this generator"
    spec: dict[str, Any]
    record: dict[str, Any]

    @property
    def split(self) -> tuple[float, int]:
        """(test_fraction, seed) of the train/held-out split the run used (its encoder's)."""
        split = self.record.get("split") or {}
        return float(split.get("test_fraction", 0.2)), int(split.get("seed", 0))

    @property
    def code_dim(self) -> int:
        return int(self.spec["code_dim"])

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one generated image (C, H, W)."""
        return tuple(self.spec["shape"])

    def check_codes(self, codes: Any) -> Tensor:
        """Codes as a float32 (n, d) tensor; a :class:`DataError` for a wrong shape or NaN."""
        return check_codes(codes, self.code_dim, self.label)


def check_codes(codes: Any, dim: int, what: str = "this generator") -> Tensor:
    """Codes as a float32 (n, d) CPU tensor; a :class:`DataError` for a wrong shape or NaN."""
    if isinstance(codes, Tensor):
        c = codes.detach().cpu()
    else:
        arr = as_array(codes, "codes")  # ragged lists: one DataError
        if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
            raise DataError(f"codes must be numeric, got dtype {arr.dtype}")
        c = torch.as_tensor(arr)
    if c.ndim != 2 or c.shape[1] != dim:
        raise DataError(f"codes must have shape (n, {dim}) for {what}, got {tuple(c.shape)}")
    if len(c) == 0:
        raise DataError("no codes given (n must be >= 1)")
    if not torch.isfinite(c.float()).all():
        raise DataError("codes contain NaN or Inf")
    return c.float()
