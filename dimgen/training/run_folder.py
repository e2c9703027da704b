"""The life cycle of a run folder: lock it, refuse a used one, config first, artefacts, ``run.json`` last.

Every artefact is written atomically (a temporary file renamed onto its name,
:func:`dimgen.io.atomic_path`); ``run.json`` with ``"complete": true`` and the sha256 of every
artefact is written last, so a crash at any point leaves a folder that readers refuse
(:func:`dimgen.io.read_run`). A writer holds an exclusive lock on the folder from the first
check to ``run.json`` (:func:`dimgen.io.folder_lock`); a second writer is refused.

States of a folder and what a writing command does with it:

========================================  ===============================  =====================
folder                                    new run (same ``--out``)         ``--resume``
========================================  ===============================  =====================
absent or empty                           starts                           refused
dimgen's ``config.yaml``, no checkpoint   replaces it (stopped too early)  starts from unit 0
checkpoint, no complete ``run.json``      refused: "use --resume"          continues bit-exactly
complete (``run.json``) or foreign files  refused                          refused
========================================  ===============================  =====================

dimgen's ``config.yaml`` starts with :data:`dimgen.folders.CONFIG_HEADER` (or, written before
the header, has a dimgen trainer's keys); a user's own ``config.yaml`` is a foreign file.

Temporary files of writes cut short (``.NAME.*.tmp``) are removed when a run starts, resumes
or completes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import save_config
from ..errors import RunFolderError, WriteError
from ..folders import _stuck, check_new_out
from ..io import clean_temps, folder_lock, write_run
from .checkpoint import CHECKPOINT

__all__ = ["RunFolder", "check_new_folder"]


def check_new_folder(path: Path, kind: str | None = None) -> None:
    """Raise :class:`RunFolderError` unless ``path`` can take a new run (of ``kind``).

    Accepted: an absent or empty folder, or one stopped before its first checkpoint (replaced).
    Refused: a symbolic link (dangling or not), a file, an interrupted run with a checkpoint
    (the message gives the full ``--resume`` command), a complete run or any other non-empty
    folder; every refusal suggests a free name (:func:`dimgen.folders.out_problem`, torch-free,
    which the CLI calls before importing torch).
    """
    check_new_out(path, kind)


class RunFolder:
    """One run's output folder (``path``) and its checkpoint file.

    Example:
        >>> folder = RunFolder("runs/r")       # doctest: +SKIP
        >>> with folder.lock():                # doctest: +SKIP
        ...     folder.check(resume=False)
        ...     folder.start(config)
        ...     folder.complete("encoder", spec=spec)
    """

    def __init__(self, path: str | Path, kind: str | None = None) -> None:
        self.path = Path(path)
        self.kind = kind  # the run kind: names the command in a "--resume" hint

    @property
    def checkpoint(self) -> Path:
        """Path of the resumable checkpoint (:data:`~dimgen.training.checkpoint.CHECKPOINT`)."""
        return self.path / CHECKPOINT

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunFolder]:
        """Hold the folder's exclusive lock (:func:`dimgen.io.folder_lock`) for a writing command.

        Raises :class:`RunFolderError` if another process writes to it.
        """
        with folder_lock(self.path):
            yield self

    def check(self, resume: bool) -> bool:
        """Before any work: returns whether there is a checkpoint to continue from.

        A new run needs a folder :func:`check_new_folder` accepts; a resume needs a checkpoint or
        a folder stopped before its first checkpoint (then it starts from unit 0 with the
        folder's config). Removes leftover temporary files. Raises :class:`RunFolderError`
        naming the folder.
        """
        if resume:
            if self.path.is_symlink() or not self.path.is_dir():
                raise RunFolderError(f"nothing to resume: {self.path} is not a run folder")
            if (self.path / "run.json").exists():
                raise RunFolderError(f"{self.path} is already complete; nothing to resume")
            if not self.checkpoint.is_file() and not _stuck(self.path):
                raise RunFolderError(
                    f"nothing to resume: no {CHECKPOINT} and no config.yaml in {self.path}"
                )
        else:
            check_new_folder(self.path, self.kind)
        clean_temps(self.path)
        return resume and self.checkpoint.is_file()

    def start(self, config: Any, subfolders: tuple[str, ...] = ()) -> None:
        """Create the folder (and ``subfolders``) and write ``config.yaml`` first.

        Raises :class:`WriteError` naming the folder if it cannot be created.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for name in subfolders:
                (self.path / name).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteError(f"could not create {self.path} ({exc.strerror or exc})") from None
        save_config(config, self.path / "config.yaml")

    def complete(self, kind: str, *, keep_checkpoint: bool = False, **info: Any) -> None:
        """Drop leftover temporary files, write ``run.json`` (last: the folder is complete, with
        every artefact's digest), then drop the checkpoint.

        ``keep_checkpoint`` keeps the final checkpoint (a GAN run keeps its full state).
        """
        clean_temps(self.path)
        write_run(self.path, kind, exclude=() if keep_checkpoint else (CHECKPOINT,), **info)
        if not keep_checkpoint and self.checkpoint.exists():
            self.checkpoint.unlink()
