"""The dimgen error family: every user-facing failure is one of these, shown as one line."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "DimgenError",
    "RunFolderError",
    "TrainingError",
    "WorkerKilledError",
    "WriteError",
]


class DimgenError(Exception):
    """Base class: a problem with the user's input or environment, reported without a traceback.

    Messages are folded onto one line, so a nested library message cannot break the CLI's output.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(" ".join(str(message).split()))


class ConfigError(DimgenError, ValueError):
    """An invalid configuration value, unknown key or impossible setting."""


class DataError(DimgenError, ValueError):
    """Data that cannot be loaded or used: missing file, wrong shape, non-finite values."""


class RunFolderError(DimgenError):
    """A run folder (or checkpoint) that is missing, incomplete, corrupt or of the wrong kind."""


class TrainingError(DimgenError):
    """Training failed in a way the user can act on (e.g. the loss diverged)."""


class WorkerKilledError(TrainingError):
    """A data-parallel worker process was killed by a signal (the OOM killer's SIGKILL, ...);
    the run stopped and continues from its last checkpoint with ``--resume``."""


class WriteError(DimgenError):
    """A file could not be written (full disk, read-only folder); names the file."""
