"""Devices and processes for training: which device, how many processes, how they are joined.

Three ways a training function can run (:func:`launch`): in this process alone; as one of the
processes a launcher such as ``torchrun`` started (``WORLD_SIZE`` set: this process joins their
group); or as the parent of ``devices`` processes it spawns itself (one per GPU, or gloo
processes on the CPU), each of which calls the same function inside the group.
The process-group primitives live in :mod:`dimgen.training.distributed`.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from ..errors import ConfigError, WorkerKilledError
from . import distributed as ddp
from .checkpoint import rng_state

__all__ = [
    "configure_threads",
    "data_parallel",
    "gather_rng_states",
    "global_batch_statistics",
    "launch",
    "needs_spawn",
    "rank_device",
    "resolve_device",
]

R = TypeVar("R")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; a :class:`ConfigError` if cuda is absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
    return torch.device(name)


def rank_device(name: str) -> torch.device:
    """This process's device in a process group: ``cuda:LOCAL_RANK`` or the CPU."""
    device = resolve_device(name)
    if device.type != "cuda":
        return device
    if name.startswith("cuda:"):
        raise ConfigError(
            "with several processes each uses cuda:LOCAL_RANK: set device to auto or cuda"
        )
    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    return torch.device(f"cuda:{local}")


def _check_spawn(name: str, devices: int) -> str:
    device = resolve_device(name)
    if device.type == "cuda":
        if name.startswith("cuda:"):
            raise ConfigError("devices > 1 uses cuda:0 .. cuda:N-1: set device to auto or cuda")
        if devices > torch.cuda.device_count():
            raise ConfigError(
                f"devices {devices} but only {torch.cuda.device_count()} CUDA device(s)"
            )
    elif devices > max(2, os.cpu_count() or 1):
        raise ConfigError(
            f"devices {devices} exceeds the {os.cpu_count()} CPU cores of this machine"
        )
    return "nccl" if device.type == "cuda" else "gloo"


def needs_spawn(devices: int) -> bool:
    """True when ``devices > 1`` processes must be spawned (no launcher, no process group)."""
    return devices > 1 and not ddp.launched_externally() and not ddp.is_active()


def launch(
    fn: Callable[[torch.device], R],
    device: str,
    devices: int,
    spawn_fn: Callable[..., R | None] | None = None,
    spawn_args: tuple[Any, ...] = (),
    out: str | Path | None = None,
) -> R:
    """Run ``fn(this process's device)`` alone, under a launcher, or in ``devices`` processes.

    With ``devices > 1`` outside any process group, ``spawn_fn(*spawn_args)`` runs in each of
    ``devices`` spawned processes (it must be picklable, and call back into the same entry
    point, which then takes the in-group path) and rank 0's result is returned. Under
    ``torchrun`` the group is joined here and left when ``fn`` returns.
    Raises :class:`ConfigError` for impossible device / process combinations, and
    :class:`WorkerKilledError` (naming the rank, the signal and ``--resume out``) when a spawned
    worker is killed.
    """
    external = ddp.launched_externally()
    if needs_spawn(devices):
        if spawn_fn is None:
            raise ConfigError("this trainer cannot spawn processes (devices must be 1)")
        backend = _check_spawn(device, devices)
        try:
            return ddp.spawn(spawn_fn, devices, spawn_args, backend=backend)[0]
        except WorkerKilledError as exc:
            if out is None:
                raise
            raise WorkerKilledError(f"{exc} {out}") from None
    owner = False
    if ddp.is_active():  # a spawned worker, or a caller that set up its own process group
        world = ddp.world_size()
        if devices > 1 and devices != world:
            raise ConfigError(f"devices is {devices} but the process group has {world}")
        dev = rank_device(device)
    elif external:  # torchrun
        if devices > 1 and devices != external:
            raise ConfigError(f"devices is {devices} but the launcher started {external}")
        if device.startswith("cuda:"):
            raise ConfigError(
                "with several processes each uses cuda:LOCAL_RANK: set device to auto or cuda"
            )
        dev = ddp.init_from_env(resolve_device(device).type)
        owner = True
    else:
        dev = resolve_device(device)
    try:
        return fn(dev)
    finally:
        if owner:
            import torch.distributed as dist

            dist.destroy_process_group()


@contextlib.contextmanager
def configure_threads(threads: int, device: torch.device, world: int) -> Iterator[None]:
    """Torch's CPU threads for a run (``threads``, else cores / processes on the CPU), restored
    afterwards; on the CPU the allocator is tuned (:func:`dimgen.training.speed.tune_cpu_allocator`)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    elif world > 1 and device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if device.type == "cpu":
        from .speed import tune_cpu_allocator

        tune_cpu_allocator()
    try:
        yield
    finally:
        torch.set_num_threads(before)  # the caller's setting, not the run's


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel (``model`` itself outside a process group).

    No per-step buffer broadcasts: buffers such as a channel's running statistics are global
    and updated identically on every process.
    """
    if not ddp.is_active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
        return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def global_batch_statistics(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every batch-norm computing its statistics over the *global* batch.

    In a process group: ``SyncBatchNorm`` on CUDA, :class:`dimgen.training.distributed.GlobalBatchNorm`
    elsewhere (gloo on the CPU), so N processes of B/N rows normalise as one of B rows. Outside a
    group ``model`` is returned as it is. Call it before the model is moved or copied (EMA).
    """
    if not ddp.is_active():
        return model
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return ddp.convert_global_batch_norm(model)


def gather_rng_states(device: torch.device) -> list[dict[str, Tensor]] | None:
    """Every process's RNG states in rank order (collective); None outside a process group."""
    if not ddp.is_active():
        return None
    import torch.distributed as dist

    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, {k: v.cpu() for k, v in rng_state(device).items()})
    return states
