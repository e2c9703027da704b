"""Resumable checkpoints: one safetensors file with everything a bit-exact resume needs.

A checkpoint holds the weights of every module, every optimiser's state (tensors in the file,
scalars and parameter groups in the JSON metadata), every scheduler's state, the RNG states of
the CPU, of every CUDA device, of named ``torch.Generator`` s and, in data-parallel training, of
every process; the step (or epoch) reached, the loss history, the config that made the run and
any extra tensors the loop or the trainer keep. No pickle: the file is safetensors with a JSON
``dimgen`` metadata entry (:func:`dimgen.io.save_weights`), as nanoGPT's checkpoint dict but
with RNG states added for bit-exact resume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import RunFolderError
from ..io import check_tensors, load_weights, save_weights

__all__ = ["CHECKPOINT", "CheckpointState", "load_checkpoint", "rng_state", "save_checkpoint"]

CHECKPOINT = "checkpoint.safetensors"
"""File name of the checkpoint inside a run folder."""

_RESERVED = ("rng", "extra")


@dataclass
class CheckpointState:
    """What a training run consists of, by name: the objects a checkpoint saves and restores.

    ``modules``, ``optimizers``, ``schedulers`` and ``generators`` are restored in place. Names
    of modules and optimisers prefix their tensors in the file (``generator.fc.weight``,
    ``opt_g.0.exp_avg``): they must be distinct and neither ``rng`` nor ``extra``.
    """

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    schedulers: dict[str, Any] = field(default_factory=dict)
    generators: dict[str, torch.Generator] = field(default_factory=dict)


def rng_state(device: torch.device) -> dict[str, Tensor]:
    """This process's global RNG states: ``torch`` (CPU) and, on CUDA, ``cuda`` for ``device``."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _opt_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _opt_load(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _sub(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def save_checkpoint(
    path: str | Path,
    state: CheckpointState,
    *,
    kind: str,
    unit: str,
    done: int,
    history: list[Any],
    config: dict[str, Any],
    extra: dict[str, Tensor] | None = None,
    rank_states: list[dict[str, Tensor]] | None = None,
) -> None:
    """Write a checkpoint of ``state`` after ``done`` units (epochs or steps), atomically.

    Args:
        kind: the trainer's kind; the file's metadata says ``{kind}-checkpoint``.
        unit: ``epoch`` or ``step``; the metadata records ``{unit: done}``.
        history: JSON-able records of the scalars logged so far.
        config: the run's config as a dict (the file rebuilds nothing by itself, but says what
            made it).
        extra: further tensors to restore (the loop's partial scalar window, a trainer's state).
        rank_states: every process's :func:`rng_state` in data-parallel training, rank order.
    """
    names = [*state.modules, *state.optimizers]
    if len(set(names)) != len(names) or set(names) & set(_RESERVED):
        raise ValueError(f"module and optimiser names must be distinct and not rng/extra: {names}")
    tensors: dict[str, Tensor] = {}
    for name, module in state.modules.items():
        tensors.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    optim_meta = {}
    for name, opt in state.optimizers.items():
        t, m = _opt_tensors(opt)
        tensors.update({f"{name}.{k}": v for k, v in t.items()})
        optim_meta[name] = m
    tensors["rng.torch"] = torch.get_rng_state()
    for name, gen in state.generators.items():
        tensors[f"rng.gen.{name}"] = gen.get_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    for r, states in enumerate(rank_states or []):
        for k, v in states.items():
            tensors[f"rng.rank{r}.{k}"] = v
    tensors.update({f"extra.{k}": v for k, v in (extra or {}).items()})
    meta = {
        "kind": f"{kind}-checkpoint",
        "unit": unit,
        unit: done,
        "history": history,
        "optimizers": optim_meta,
        "schedulers": {n: s.state_dict() for n, s in state.schedulers.items()},
        "config": config,
        "world_size": len(rank_states) if rank_states else 1,
    }
    save_weights(path, tensors, meta)


def load_checkpoint(
    path: str | Path,
    state: CheckpointState,
    *,
    kind: str,
    rank: int = 0,
    world: int = 1,
    device: torch.device | None = None,
) -> tuple[int, list[Any], dict[str, Tensor]]:
    """Restore a :func:`save_checkpoint` file into ``state`` and the global RNGs.

    Returns ``(done, history, extra)``. Raises :class:`RunFolderError` for a file that is not a
    ``kind`` checkpoint, was written by a different number of processes, or does not match the
    modules and optimisers of ``state``.
    """
    path = Path(path)
    tensors, meta = load_weights(path, finite=False)  # RNG states and loop extras are raw
    if meta.get("kind") != f"{kind}-checkpoint":
        raise RunFolderError(
            f"{path} is not a{'n' if kind[0] in 'aeiou' else ''} {kind} checkpoint"
        )
    written = meta.get("world_size", 1)
    if written != world:
        raise RunFolderError(
            f"{path} was written by {written} process(es); resume it with the same number "
            f"(now {world})"
        )
    try:
        for name, module in state.modules.items():  # finite, dtypes as every weights file
            module.load_state_dict(check_tensors(_sub(tensors, f"{name}."), path,
                                                 module.state_dict()))  # fmt: skip
        check_tensors(
            {k: v for k, v in tensors.items() if not k.startswith(("rng.", "extra."))}, path
        )
        for name, opt in state.optimizers.items():
            _opt_load(opt, _sub(tensors, f"{name}."), meta["optimizers"][name])
        for name, sched in state.schedulers.items():
            sched.load_state_dict(meta["schedulers"][name])
        for name, gen in state.generators.items():
            gen.set_state(tensors[f"rng.gen.{name}"])
        if world > 1:
            torch.set_rng_state(tensors[f"rng.rank{rank}.torch"])
            key = f"rng.rank{rank}.cuda"
            if key in tensors and device is not None and device.type == "cuda":
                torch.cuda.set_rng_state(tensors[key], device)
        else:
            torch.set_rng_state(tensors["rng.torch"])
            keys = [k for k in tensors if k.startswith("rng.cuda.")]
            cuda = [tensors[k] for k in sorted(keys, key=lambda k: int(k.rsplit(".", 1)[1]))]
            if cuda and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
        done = int(meta[meta["unit"]])
        return done, list(meta["history"]), _sub(tensors, "extra.")
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise RunFolderError(
            f"{path} does not match this configuration ({str(exc)[:120]})"
        ) from None
