"""Run folders: atomic writes, safetensors weights with JSON metadata, kind and format checks.

A run folder is complete once ``run.json`` exists with ``"complete": true``; it is written last,
so a crash leaves a folder that every command refuses with a clear message.

Every file dimgen writes goes through :func:`atomic_path`: written beside its target, renamed
into place, given the mode the user's umask allows (like ``open``), and a failed write (full
disk, read-only folder) raises :class:`WriteError` naming the file, leaving any older version
intact. Every JSON / YAML text dimgen reads goes through :func:`parse_json` / :func:`parse_yaml`,
which bound size, nesting depth and (YAML) refuse anchors and aliases before parsing.
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

from .errors import RunFolderError, WriteError
from .parsing import MAX_DEPTH, MAX_TEXT_BYTES, parse_json, parse_yaml, read_json
from .parsing import short_error as _short

__all__ = [
    "FORMAT_VERSION",
    "MAX_DEPTH",
    "MAX_TEXT_BYTES",
    "RUN_KINDS",
    "atomic_path",
    "load_weights",
    "parse_json",
    "parse_yaml",
    "read_json",
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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The file gets mode ``0o666 & ~umask`` (``mkstemp``'s 0600 would otherwise survive the rename).

    Raises:
        WriteError: the folder cannot be created or written (read-only, full disk, ...); the
            message names ``path``. An older ``path`` is left as it was.
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as exc:
        raise WriteError(_write_failure(path, exc)) from None
    finally:
        if tmp_path is not None and tmp_path.exists():
            with contextlib.suppress(OSError):
                tmp_path.unlink()


def _write_failure(path: Path, exc: BaseException) -> str:
    reason = getattr(exc, "strerror", None) or _short(exc)
    return (
        f"could not write {path} ({reason}); nothing was half-written: free space or fix the "
        f"folder's permissions, then rerun (an interrupted run resumes with --resume)"
    )


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
        try:
            save_file(tensors, str(tmp), metadata={"dimgen": json.dumps(_jsonable(meta))})
        except OSError:
            raise
        except Exception as exc:  # SafetensorError wraps I/O errors (e.g. no space left)
            raise WriteError(_write_failure(Path(path), exc)) from None


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
    meta = parse_json(raw, f"{path}'s dimgen metadata")
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
    rec = read_json(rec_path)
    if not isinstance(rec, dict):
        raise RunFolderError(f"{rec_path} is corrupt (not a JSON object)")
    if rec.get("format_version") != FORMAT_VERSION:
        raise RunFolderError(
            f"{run_dir} has format version {rec.get('format_version')!r}; "
            f"this dimgen reads version {FORMAT_VERSION}"
        )
    if rec.get("kind") not in kinds:
        kind = str(rec.get("kind"))
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        raise RunFolderError(f"{run_dir} is {article} {kind!r} run folder; expected {want}")
    if rec.get("complete") is not True:
        raise RunFolderError(f"{run_dir} is an incomplete run: resume it with --resume or rerun")
    return run_dir, rec


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
