"""The one training loop: any :class:`~dimgen.training.trainer.Trainer` runs through :func:`fit`.

The loop alone owns: the run folder (refuse a used one, ``config.yaml`` first, ``run.json``
last), checkpoints every ``checkpoint_every`` units with bit-exact resume, the non-finite guard
(a diverged loss or non-finite weights stop the run with a :class:`TrainingError` and leave the
last good checkpoint untouched), the progress bar (tqdm), periodic scalars (window means every
``log_every`` units, passed to ``on_scalars(done, scalars)`` so a log writer can be plugged in),
threads, and agreement between data-parallel processes on every error before work starts.
The same windows go to the run folder's ``log.csv`` (and TensorBoard when the config asks for
it), and ``curves.png`` plots them before :meth:`Trainer.finish` writes the report
(:mod:`dimgen.training.logs`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import to_dict
from ..errors import DataError, DimgenError, RunFolderError, TrainingError
from ..io import write_json, write_text
from ..parsing import read_json
from . import distributed as ddp
from .checkpoint import CheckpointState, load_checkpoint, save_checkpoint
from .devices import configure_threads, gather_rng_states
from .logs import CURVES, LOG, ScalarLog, plot_curves
from .phases import status
from .run_folder import RunFolder
from .smoke import active as smoke_active
from .smoke import cap_units, marker
from .trainer import Context, Fitted, Trainer

__all__ = ["ScalarCallback", "fit"]

ScalarCallback = Callable[[int, dict[str, float]], None]
"""``on_scalars(done, scalars)``: units done and the window means of the trainer's scalars."""


def fit(
    trainer: Trainer,
    device: torch.device,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool = False,
    on_scalars: ScalarCallback | None = None,
) -> Any:
    """Train ``trainer`` on ``device``; with ``out``, in a run folder; returns its result.

    In a process group every process calls this; rank 0 checks and writes the folder.
    Rank 0 holds the folder's exclusive lock from the first check to ``run.json``. Raises
    :class:`~dimgen.errors.RunFolderError` (used or locked folder, nothing to resume, foreign
    checkpoint), :class:`TrainingError` (non-finite loss or weights) and the trainer's own
    ``DimgenError`` s, the same on every process.

    With ``DIMGEN_SMOKE`` set (:mod:`~dimgen.training.smoke`), ``trainer.total`` is capped after
    :meth:`~Trainer.setup` and the run is marked as a smoke run in ``run.json``,
    ``metrics.json`` and ``report.md``.
    """
    rank, world = ddp.rank(), ddp.world_size()
    if resume and out is None:
        raise RunFolderError("nothing to resume: no run folder given")
    folder = RunFolder(out, trainer.kind) if out is not None else None
    ctx = Context(device, rank, world, resume, progress and rank == 0)
    with configure_threads(trainer.threads, device, world), contextlib.ExitStack() as stack:
        # Every check that can fail on one process is agreed on by all, so none is left waiting.
        error: DimgenError | None = None
        state = CheckpointState({})
        configured = trainer.total if hasattr(trainer, "total") else 0
        try:
            if folder is not None and rank == 0:
                stack.enter_context(folder.lock())  # held until run.json is written
                folder.check(resume)
            # data, models, optimisers: seconds of silence before the bar (5 s under load)
            with status(trainer.label, "setting up: data, models, optimisers", ctx.progress):
                state = trainer.setup(ctx)
            configured = trainer.total
            trainer.total = cap_units(configured, trainer.unit)
        except DimgenError as exc:
            error = exc
        ddp.agree(error)

        start, history, extra = 0, [], {}
        log: ScalarLog | None = None
        error = None
        # A folder stopped before its first checkpoint resumes from the start with its config.
        from_checkpoint = resume and folder is not None and folder.checkpoint.is_file()
        try:
            if from_checkpoint:
                assert folder is not None
                start, history, extra = load_checkpoint(
                    folder.checkpoint, state, kind=trainer.kind, rank=rank, world=world,
                    device=device,
                )  # fmt: skip
                _check_resumed_source(trainer, extra, folder)
            elif folder is not None and rank == 0:
                folder.start(trainer.config, trainer.subfolders)
            if folder is not None and rank == 0:  # rank 0 only; a resume drops rows after start
                tensorboard = bool(getattr(trainer.config, "tensorboard", False))
                log = ScalarLog(folder.path, trainer.unit, history, tensorboard=tensorboard)
        except DimgenError as exc:
            error = exc
        ddp.agree(error)

        window = {k[7:]: v.to(device) for k, v in extra.items() if k.startswith("window.")}
        try:
            fitted = _run(trainer, ctx, state, folder, start, history, window, progress,
                          on_scalars, log)  # fmt: skip
        finally:
            if log is not None:
                log.close()
        if log is not None and folder is not None:
            plot_curves(folder.path / LOG, folder.path / CURVES)
        if folder is not None and trainer.keep_checkpoint and rank == 0:
            _checkpoint(trainer, state, folder, trainer.total, fitted.history, {}, None)
        result = trainer.finish(fitted, folder.path if folder is not None and rank == 0 else None)
        if folder is not None and rank == 0:
            info = trainer.run_info()
            if smoke_active():
                info["smoke"] = marker(trainer.unit, configured, trainer.total)
                _mark_smoke(folder.path, info["smoke"])
            folder.complete(trainer.kind, keep_checkpoint=trainer.keep_checkpoint, **info)
        return result


def _run(
    trainer: Trainer,
    ctx: Context,
    state: CheckpointState,
    folder: RunFolder | None,
    start: int,
    history: list[Any],
    window: dict[str, Tensor],
    progress: bool,
    on_scalars: ScalarCallback | None,
    log: ScalarLog | None = None,
) -> Fitted:
    unit, total = trainer.unit, trainer.total
    trainer.begin(ctx)
    # A unit of several optimiser steps (an epoch) moves the bar per step (Trainer.tick), so a
    # long epoch is not a silent one; the postfix says which unit it is in.
    sub = max(1, trainer.substeps)
    bar: Any = None
    if progress and ctx.rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=total * sub, initial=start * sub, desc=trainer.label,
                   unit=unit if sub == 1 else "step", leave=False)  # fmt: skip
        if sub > 1:
            trainer._bar = bar
    t0 = time.perf_counter()
    try:
        _units(trainer, ctx, state, folder, start, history, window, on_scalars, log, bar, sub)
    finally:
        trainer._bar = None
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    trainer.end()
    return Fitted(history, seconds, ctx)


def _units(
    trainer: Trainer,
    ctx: Context,
    state: CheckpointState,
    folder: RunFolder | None,
    start: int,
    history: list[Any],
    window: dict[str, Tensor],
    on_scalars: ScalarCallback | None,
    log: ScalarLog | None,
    bar: Any,
    sub: int,
) -> None:
    unit, total, every = trainer.unit, trainer.total, trainer.log_every
    for index in range(start, total):
        for name, value in trainer.step(index).items():
            value = value.detach()
            window[name] = window[name] + value if name in window else value
        done = index + 1
        if bar is not None:
            bar.update(done * sub - bar.n)  # the rest of the unit (all of it when sub == 1)
        if done % every == 0 or done == total:
            names = list(window)
            count = (done - 1) % every + 1
            means = torch.stack([(window[n] / count).double() for n in names]).tolist()  # 1 sync
            window = {}
            scalars = dict(zip(names, means, strict=True))
            bad = [n for n, v in scalars.items() if not math.isfinite(v)]
            if bad:
                raise ddp.everywhere(TrainingError(
                    f"{trainer.label}: loss diverged (non-finite {', '.join(bad)}) at {unit} "
                    f"{done}{_kept(folder)}"
                ))  # fmt: skip
            history.append({unit: done, **scalars})
            if bar is not None:
                where = {unit: f"{done}/{total}"} if sub > 1 else {}
                bar.set_postfix({**where, **trainer.postfix(scalars)}, refresh=False)
            if log is not None:
                log.write(done, scalars)
            if on_scalars is not None:
                on_scalars(done, scalars)
        trainer.after_step(done, folder.path if folder is not None and ctx.rank == 0 else None)
        if log is not None and log.writer is not None:
            log.images(done, trainer.images(done))
        every_ckpt = trainer.checkpoint_every
        if folder is not None and every_ckpt and done % every_ckpt == 0 and done < total:
            _checkpoint(trainer, state, folder, done, history, window, ctx)


def _mark_smoke(path: Path, mark: dict[str, Any]) -> None:
    """Record a smoke run in the trainer's ``metrics.json`` and at the top of ``report.md``."""
    metrics, report = path / "metrics.json", path / "report.md"
    if metrics.is_file():
        data = read_json(metrics)
        if isinstance(data, dict):
            write_json(metrics, {"smoke": mark, **data})
    if report.is_file():
        line = (f"> **Smoke run** ({mark['env']}): {mark['trained']} of {mark['configured']} "
                f"{mark['unit']}{'' if mark['configured'] == 1 else 's'} (at most "
                f"{mark['max_steps']} optimiser steps), at most {mark['max_train']:,} training and "
                f"{mark['max_test']:,} held-out samples, reduced evaluations; these numbers "
                "are not results.\n\n")  # fmt: skip
        write_text(report, line + report.read_text())


def _kept(folder: RunFolder | None) -> str:
    if folder is not None and folder.checkpoint.exists():
        return f"; last good checkpoint kept in {folder.checkpoint}"
    return ""


def _checkpoint(
    trainer: Trainer,
    state: CheckpointState,
    folder: RunFolder,
    done: int,
    history: list[Any],
    window: dict[str, Tensor],
    ctx: Context | None,
) -> None:
    """Save a checkpoint after ``done`` units, unless a weight or a scalar of the partial
    window has become non-finite (a checkpoint that would diverge again is no good one)."""
    bad = [n for n, v in window.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise ddp.everywhere(TrainingError(
            f"{trainer.label}: loss diverged (non-finite {', '.join(bad)}) by {trainer.unit} "
            f"{done}{_kept(folder)}"
        ))  # fmt: skip
    for module in state.modules.values():
        if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
            raise ddp.everywhere(TrainingError(
                f"{trainer.label}: weights became non-finite by {trainer.unit} {done}"
                f"{_kept(folder)}"
            ))  # fmt: skip
    states = gather_rng_states(ctx.device) if ctx is not None else None  # collective
    if ctx is None or ctx.rank == 0:
        save_checkpoint(
            folder.checkpoint, state, kind=trainer.kind, unit=trainer.unit, done=done,
            history=history, config=to_dict(trainer.config),
            extra={**{f"window.{k}": v for k, v in window.items()}, **_digest_extra(trainer)},
            rank_states=states,
        )  # fmt: skip


def _digest_extra(trainer: Trainer) -> dict[str, Tensor]:
    """The trainer's data-source digest (:func:`dimgen.data.source_digest`) as a checkpoint
    tensor, so a resume on changed files is refused; empty for sources without one."""
    digest = getattr(trainer, "data_digest", None)
    if not isinstance(digest, dict) or not isinstance(digest.get("sha256"), str):
        return {}
    return {"data_digest": torch.tensor(list(bytes.fromhex(digest["sha256"])), dtype=torch.uint8)}


def _check_resumed_source(trainer: Trainer, extra: dict[str, Tensor], folder: Any) -> None:
    """Refuse to resume on a file source that changed since the checkpoint: the data would be
    re-split (held-out samples in training). Checkpoints without a digest are not checked."""
    saved, now = extra.get("data_digest"), _digest_extra(trainer).get("data_digest")
    if saved is None or now is None or torch.equal(saved.to(torch.uint8), now):
        return
    source = getattr(trainer.config, "data", "the data source")
    raise DataError(
        f"{source} changed since the checkpoint of {folder.path} was written (files added, "
        "removed or modified): resuming would re-split the data; restore the files or start a "
        "new run"
    )
