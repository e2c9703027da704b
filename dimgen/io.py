"""Run folders: atomic writes, safetensors weights with JSON metadata, kind and format checks.

A run folder is complete once ``run.json`` exists with ``"complete": true``; it is written last,
so a crash leaves a folder that every command refuses with a clear message.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import RunFolderError

__all__ = [
    "FORMAT_VERSION",
    "RUN_KINDS",
    "atomic_path",
    "load_weights",
    "read_run",
    "resolve_run_dir",
    "save_npz",
    "save_weights",
    "write_json",
    "write_run",
    "write_text",
]

FORMAT_VERSION = 1
RUN_KINDS = ("encoder", "gan", "flow", "pretrain", "sweep")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    """Write a JSON file atomically (sorted keys, indented, NaN written as null)."""
    write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Write an ``.npz`` atomically (numpy appends ``.npz`` to names without it, so we use a handle)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def save_weights(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Save tensors as safetensors with a JSON ``dimgen`` metadata entry (never pickle)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"dimgen": json.dumps(_jsonable(meta))})


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a safetensors file written by :func:`save_weights`; refuse anything else."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise RunFolderError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("dimgen")
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise RunFolderError(f"{path} is not a valid safetensors file ({_short(exc)})") from None
    if raw is None:
        raise RunFolderError(f"{path} has no dimgen metadata: not a dimgen checkpoint")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise RunFolderError(f"{path} has corrupt dimgen metadata") from None
    if not isinstance(meta, dict):
        raise RunFolderError(f"{path} has corrupt dimgen metadata")
    return tensors, meta


def write_run(run_dir: str | Path, kind: str, **info: Any) -> None:
    """Mark ``run_dir`` complete: written last, after every other artefact."""
    from . import __version__

    record = {
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "dimgen_version": __version__,
        "complete": True,
        **info,
    }
    write_json(Path(run_dir) / "run.json", record)


def resolve_run_dir(path: str | Path) -> Path:
    """Accept a run folder or a path to one of its files."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    return path


def read_run(path: str | Path, kind: str | tuple[str, ...]) -> tuple[Path, dict[str, Any]]:
    """Return ``(run_dir, run.json)`` after checking the folder exists, is complete and of ``kind``."""
    run_dir = resolve_run_dir(path)
    kinds = (kind,) if isinstance(kind, str) else kind
    want = " or ".join(kinds)
    if not run_dir.exists():
        raise RunFolderError(f"run folder not found: {run_dir}")
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is not a folder")
    rec_path = run_dir / "run.json"
    if not rec_path.is_file():
        if (run_dir / "checkpoint.safetensors").exists() or (run_dir / "config.yaml").exists():
            raise RunFolderError(
                f"{run_dir} is an incomplete run (no run.json): resume it with --resume or rerun"
            )
        raise RunFolderError(f"{run_dir} is not a dimgen run folder (no run.json); expected {want}")
    try:
        rec = json.loads(rec_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunFolderError(f"{rec_path} is corrupt (not JSON)") from None
    if not isinstance(rec, dict):
        raise RunFolderError(f"{rec_path} is corrupt (not a JSON object)")
    if rec.get("format_version") != FORMAT_VERSION:
        raise RunFolderError(
            f"{run_dir} has format version {rec.get('format_version')!r}; "
            f"this dimgen reads version {FORMAT_VERSION}"
        )
    if rec.get("kind") not in kinds:
        raise RunFolderError(f"{run_dir} is a {rec.get('kind')!r} run folder; expected {want}")
    if rec.get("complete") is not True:
        raise RunFolderError(f"{run_dir} is an incomplete run: resume it with --resume or rerun")
    return run_dir, rec


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if np.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().numpy())
    if isinstance(obj, Path):
        return str(obj)
    return obj
