"""The interface a trainer implements to be driven by the one training loop (:func:`fit`).

A trainer supplies only what is specific to its objective: how to load its data and build its
models and optimisers (:meth:`Trainer.setup`), one unit of training (:meth:`Trainer.step`: an
epoch or an optimiser step), optional periodic artefacts (:meth:`Trainer.after_step`) and what
to compute and write at the end (:meth:`Trainer.finish`). The loop owns everything else:
devices and processes, the run folder, checkpoints and bit-exact resume, the non-finite guard,
progress and periodic scalars. The split is Lightning's ``LightningModule`` / ``Trainer`` one,
without the framework.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from .checkpoint import CheckpointState

__all__ = ["Context", "Fitted", "Trainer"]


@dataclass(frozen=True)
class Context:
    """Where a trainer runs: this process's device, rank and the number of processes;
    ``progress``: whether to show progress (bars and phases; False under ``--quiet`` and on
    ranks other than 0)."""

    device: torch.device
    rank: int = 0
    world: int = 1
    resume: bool = False
    progress: bool = False


@dataclass
class Fitted:
    """What the loop hands to :meth:`Trainer.finish`.

    ``history``: one record per logged window, ``{unit: units done, name: window mean, ...}``.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    context: Context | None = None


class Trainer(ABC):
    """One trained thing (encoder, GAN, ...) as the loop sees it.

    Class attributes: ``kind`` (the run folder's kind in ``run.json``, and the checkpoint's),
    ``unit`` (``epoch`` or ``step``: what one :meth:`step` call is), ``label`` (progress bar),
    ``keep_checkpoint`` (keep the final checkpoint in the complete folder), ``subfolders``
    (created beside ``config.yaml``). Instance attributes, set by the constructor or
    :meth:`setup`: ``config`` (a config dataclass; written to ``config.yaml`` and the
    checkpoint), ``total`` (units to train), ``log_every`` (units per scalar window),
    ``checkpoint_every`` (units between checkpoints, 0: none), ``threads`` (torch CPU threads,
    0: default).
    """

    kind: ClassVar[str]
    unit: ClassVar[str] = "step"
    label: ClassVar[str] = "train"
    keep_checkpoint: ClassVar[bool] = False
    subfolders: ClassVar[tuple[str, ...]] = ()

    config: Any
    total: int
    log_every: int = 1
    checkpoint_every: int = 0
    threads: int = 0
    substeps: int = 0
    """Optimiser steps in one unit, when a unit is an epoch (set in :meth:`setup`; 0 or 1: a
    unit is one step). The progress bar then counts steps: call :meth:`tick` after each."""
    _bar: Any = None

    def tick(self, n: int = 1) -> None:
        """``n`` of the :attr:`substeps` of the current unit are done: move the progress bar
        (the loop's, while progress is shown; nothing otherwise)."""
        if self._bar is not None:
            self._bar.update(n)

    @abstractmethod
    def setup(self, ctx: Context) -> CheckpointState:
        """Load and check data, seed, build models and optimisers on ``ctx.device``.

        Called on every process before anything is written; raise a ``DimgenError`` for bad
        input. Returns the named objects a checkpoint saves and restores.
        """

    def begin(self, ctx: Context) -> None:  # noqa: B027 - optional hook
        """After a resume (or a fresh start), before the first :meth:`step`: e.g. wrap models
        for data-parallel training (:func:`dimgen.training.devices.data_parallel`), train mode."""

    @abstractmethod
    def step(self, index: int) -> dict[str, Tensor]:
        """Train unit ``index`` (0-based); return its scalars as 0-d device tensors (no sync)."""

    def after_step(self, done: int, out: Path | None) -> None:  # noqa: B027 - optional hook
        """After ``done`` units: periodic artefacts (e.g. sample grids) into ``out``."""

    def images(self, done: int) -> dict[str, Tensor]:
        """Image grids (C, H, W) in [0, 1] to log to TensorBoard after ``done`` units (rank 0,
        only when TensorBoard is on); e.g. the GAN's sample grid every ``sample_every`` steps."""
        return {}

    def end(self) -> None:  # noqa: B027 - optional hook
        """After the last unit, before :meth:`finish` (e.g. unwrap, eval mode)."""

    def postfix(self, scalars: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows after a window."""
        return {k: f"{v:.3f}" for k, v in scalars.items()}

    @abstractmethod
    def finish(self, fitted: Fitted, out: Path | None) -> Any:
        """Evaluate and write the artefacts into ``out`` (None: no folder, or not rank 0).

        Called on every process; returns the trainer's result. ``run.json`` is not written
        here: the loop writes it after this returns, from :meth:`run_info`.
        """

    def run_info(self) -> dict[str, Any]:
        """Extra entries of ``run.json`` (e.g. the model spec)."""
        return {}
