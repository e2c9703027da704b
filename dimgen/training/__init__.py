"""One training harness for every trained thing in dimgen (encoder, GAN, and those to come).

- :mod:`~dimgen.training.trainer`: the small interface a trainer implements;
- :mod:`~dimgen.training.loop`: :func:`fit`, the one loop (progress, scalars, non-finite guard);
- :mod:`~dimgen.training.checkpoint`: safetensors checkpoints and bit-exact resume;
- :mod:`~dimgen.training.run_folder`: the run folder's life cycle (config first, run.json last);
- :mod:`~dimgen.training.devices`: devices, threads and data-parallel processes.
"""

from __future__ import annotations

from .checkpoint import CHECKPOINT, CheckpointState, load_checkpoint, save_checkpoint
from .devices import data_parallel, launch, resolve_device
from .loop import ScalarCallback, fit
from .run_folder import RunFolder, check_new_folder
from .trainer import Context, Fitted, Trainer

__all__ = [
    "CHECKPOINT",
    "CheckpointState",
    "Context",
    "Fitted",
    "RunFolder",
    "ScalarCallback",
    "Trainer",
    "check_new_folder",
    "data_parallel",
    "fit",
    "launch",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
]
