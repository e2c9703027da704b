"""The life cycle of a run folder: refuse a used folder, config first, artefacts, ``run.json`` last.

Every artefact is written atomically (a temporary file renamed onto its name,
:func:`dimgen.io.atomic_path`); ``run.json`` with ``"complete": true`` is written last, so a
crash at any point leaves a folder that readers refuse (:func:`dimgen.io.read_run`) and that
``--resume`` continues from its checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import save_config
from ..errors import RunFolderError
from ..io import write_run
from .checkpoint import CHECKPOINT

__all__ = ["RunFolder", "check_new_folder"]


def check_new_folder(path: Path) -> None:
    """Raise :class:`RunFolderError` if ``path`` exists and is a file or a non-empty folder; for
    an interrupted run (a checkpoint, no ``run.json``) the message suggests ``--resume``."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        if (path / CHECKPOINT).is_file() and not (path / "run.json").exists():
            raise RunFolderError(
                f"output folder {path} holds an interrupted run: continue it with "
                f"--resume {path} (resume=True in Python), or choose another --out"
            )
        raise RunFolderError(f"output folder {path} exists and is not empty")


class RunFolder:
    """One run's output folder (``path``) and its checkpoint file.

    Example:
        >>> folder = RunFolder("runs/r")       # doctest: +SKIP
        >>> folder.check(resume=False)         # doctest: +SKIP
        >>> folder.start(config)               # doctest: +SKIP
        >>> folder.complete("encoder", spec=spec)  # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def checkpoint(self) -> Path:
        """Path of the resumable checkpoint (:data:`~dimgen.training.checkpoint.CHECKPOINT`)."""
        return self.path / CHECKPOINT

    def check(self, resume: bool) -> None:
        """Before any work: a new run needs an empty or absent folder, a resume a checkpoint.

        Raises :class:`RunFolderError` naming the folder.
        """
        if resume:
            if not self.checkpoint.is_file():
                raise RunFolderError(f"nothing to resume: no {CHECKPOINT} in {self.path}")
        else:
            check_new_folder(self.path)

    def start(self, config: Any, subfolders: tuple[str, ...] = ()) -> None:
        """Create the folder (and ``subfolders``) and write ``config.yaml`` first."""
        self.path.mkdir(parents=True, exist_ok=True)
        for name in subfolders:
            (self.path / name).mkdir(parents=True, exist_ok=True)
        save_config(config, self.path / "config.yaml")

    def complete(self, kind: str, *, keep_checkpoint: bool = False, **info: Any) -> None:
        """Write ``run.json`` (last: the folder is complete), then drop the checkpoint.

        ``keep_checkpoint`` keeps the final checkpoint (a GAN run keeps its full state).
        """
        write_run(self.path, kind, **info)
        if not keep_checkpoint and self.checkpoint.exists():
            self.checkpoint.unlink()
