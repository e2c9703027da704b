"""Training logs in the run folder: ``log.csv`` for every trainer, TensorBoard on request, a plot.

The loop (:func:`dimgen.training.loop.fit`) opens one :class:`ScalarLog` on rank 0 of a run with a
folder and writes every scalar window through it, so every trainer gets the same logs without a
line of its own. ``log.csv`` has one row per window: the unit (``epoch`` or ``step``) and the
window means of the trainer's scalars. On ``--resume`` the file is rewritten from the
checkpoint's history, so rows written after the checkpoint by the interrupted run are dropped
and the resumed run never duplicates a unit. TensorBoard events (``tensorboard/``) carry the same
scalars plus the trainer's images (:meth:`Trainer.images`, e.g. the GAN's sample grids); a resume
purges events after the checkpoint (``SummaryWriter(purge_step=...)``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from ..errors import DimgenError
from ..io import atomic_path

__all__ = ["CURVES", "LOG", "TENSORBOARD", "ScalarLog", "plot_curves", "read_log"]

LOG = "log.csv"
"""File name of the scalar log in a run folder."""
CURVES = "curves.png"
"""File name of the training-curve plot in a run folder."""
TENSORBOARD = "tensorboard"
"""Sub-folder of a run folder holding TensorBoard event files."""


class ScalarLog:
    """Rank 0's writer of ``log.csv`` (and TensorBoard events) for one run folder.

    Args:
        folder: the run folder (already started).
        unit: the first column's name, ``epoch`` or ``step``.
        history: the records already trained (``{unit: done, name: value}``), from a checkpoint
            on resume (empty for a new run): the file is rewritten to exactly these rows.
        tensorboard: also write TensorBoard events (needs the ``tensorboard`` package).

    Raises:
        DimgenError: ``tensorboard`` requested but the package is not installed.
    """

    def __init__(
        self,
        folder: Path,
        unit: str,
        history: Sequence[dict[str, float]] = (),
        *,
        tensorboard: bool = False,
    ) -> None:
        self.path = Path(folder) / LOG
        self.unit = unit
        self.rows: list[dict[str, float]] = [dict(r) for r in history]
        self.columns: list[str] = _columns(unit, self.rows)
        self._rewrite()
        self.writer: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise DimgenError(
                    "--tensorboard needs the tensorboard package (pip install tensorboard)"
                ) from None
            done = int(self.rows[-1][unit]) if self.rows else 0
            self.writer = SummaryWriter(
                str(Path(folder) / TENSORBOARD), purge_step=done + 1 if self.rows else None
            )

    def write(self, done: int, scalars: dict[str, float]) -> None:
        """Append one window's means (after ``done`` units) to the log and to TensorBoard."""
        row = {self.unit: done, **scalars}
        self.rows.append(row)
        if any(k not in self.columns for k in row):  # a new scalar: widen the header
            self.columns = _columns(self.unit, self.rows)
            self._rewrite()
        else:
            with self.path.open("a", newline="") as fh:
                csv.DictWriter(fh, self.columns).writerow(row)
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, done)
            self.writer.flush()

    def images(self, done: int, images: dict[str, Tensor]) -> None:
        """Log image grids ((C, H, W) in [0, 1]) to TensorBoard; no-op without it."""
        if self.writer is None:
            return
        for name, img in images.items():
            self.writer.add_image(name, img.detach().float().cpu().clamp(0, 1), done)
        self.writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer (``log.csv`` is always complete on disk)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _rewrite(self) -> None:
        with atomic_path(self.path) as tmp, Path(tmp).open("w", newline="") as fh:
            w = csv.DictWriter(fh, self.columns)
            w.writeheader()
            w.writerows(self.rows)


def _columns(unit: str, rows: Sequence[dict[str, float]]) -> list[str]:
    cols = [unit]
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def read_log(path: str | Path) -> tuple[str, list[dict[str, float]]]:
    """``(unit, rows)`` of a ``log.csv``; empty cells are NaN.

    Raises:
        DimgenError: a missing file or one that is not a dimgen log (no header, non-numbers).
    """
    p = Path(path)
    if not p.is_file():
        raise DimgenError(f"no training log: {p}")
    try:
        with p.open(newline="") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            rows = [{k: float(v) if v not in ("", None) else math.nan for k, v in r.items()}
                    for r in reader]  # fmt: skip
    except (ValueError, csv.Error, UnicodeDecodeError) as exc:
        raise DimgenError(f"{p}: not a dimgen training log ({exc})") from None
    if not fields:
        raise DimgenError(f"{p}: not a dimgen training log (no header)")
    return fields[0], rows


def plot_curves(log: str | Path, out: str | Path) -> Path | None:
    """Plot every scalar of a ``log.csv`` against its unit, one panel each, into ``out`` (PNG).

    Returns ``out``, or None when the log has no rows (nothing to plot).
    """
    unit, rows = read_log(log)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(k for r in rows for k in r if k != unit))
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 2.6), squeeze=False)
    xs = [r[unit] for r in rows]
    for ax, name in zip(axes[0], names, strict=True):
        ax.plot(xs, [r.get(name, math.nan) for r in rows], lw=1.2)
        ax.set_xlabel(unit)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out
