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
import hashlib
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
    "FLOAT_DTYPES",
    "FORMAT_VERSION",
    "MAX_DEPTH",
    "MAX_TEXT_BYTES",
    "RUN_KINDS",
    "artefact_digest",
    "artefact_digests",
    "atomic_copy",
    "atomic_path",
    "check_state_shapes",
    "check_tensors",
    "clean_temps",
    "fill_folder",
    "folder_lock",
    "incomplete_message",
    "inside",
    "load_model_weights",
    "load_spec_module",
    "load_weights",
    "parse_json",
    "parse_yaml",
    "read_json",
    "read_run",
    "refresh_digests",
    "resolve_run_dir",
    "save_npz",
    "save_weights",
    "write_json",
    "write_run",
    "write_text",
]

FORMAT_VERSION = 1
RUN_KINDS = ("encoder", "gan", "flow", "pretrain", "sweep", "diffusion")


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


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
"""Floating dtypes a weights file may store where the model holds floats (cast on load)."""


def load_weights(
    path: str | Path, *, finite: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a safetensors file written by :func:`save_weights`; refuse anything else.

    With ``finite`` (the default) a floating tensor holding NaN or inf is refused, naming it
    (:func:`check_tensors`): such weights would silently turn every output into NaN. Model
    loaders go through :func:`load_model_weights`, which also checks names, shapes and dtypes.
    """
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
    if finite:
        check_tensors(tensors, path)
    return tensors, meta


def check_tensors(
    tensors: dict[str, torch.Tensor],
    path: str | Path,
    want: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The one check of loaded weights: finite values and, given ``want``, matching dtypes.

    Every floating tensor must be finite. With ``want`` (a model's state dict, e.g. built on the
    meta device), a tensor the model holds as floating point must be stored as one of
    :data:`FLOAT_DTYPES` and is cast to the model's dtype; an integer or bool tensor there (int8
    codes of the right shape would otherwise be cast to floats around 1e2..1e4) is refused, as
    is a float or bool where the model keeps integers (e.g. batch-norm counters). Returns the
    tensors, cast. Names and shapes are checked by :func:`check_state_shapes`.

    Raises:
        RunFolderError: naming the file, the tensor and (for dtypes) the dtype found.
    """
    out = dict(tensors)
    for k, v in tensors.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).sum())
            raise RunFolderError(
                f"{path}: tensor {k} holds {bad} NaN or inf value(s); the weights are corrupt "
                "(retrain, or export again from a good run)"
            )
        if want is None or k not in want:
            continue
        target = want[k].dtype
        if target.is_floating_point:
            ok = v.dtype in FLOAT_DTYPES
            need = "floating point (float16, bfloat16, float32 or float64)"
        elif target == torch.bool:
            ok, need = v.dtype == torch.bool, "bool"
        else:
            ok = not v.is_floating_point() and not v.is_complex() and v.dtype != torch.bool
            need = "an integer dtype"
        if not ok:
            raise RunFolderError(
                f"{path}: tensor {k} has dtype {str(v.dtype).replace('torch.', '')}; "
                f"the model needs {need}"
            )
        if v.dtype != target:
            out[k] = v.to(target)
    return out


def load_model_weights(
    path: str | Path, kind: str, build: Any, what: str, prefix: str = ""
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The one loader of model weights: ``(tensors, metadata)`` ready for ``load_state_dict``.

    Every weights file a run kind loads (encoder, GAN, diffusion, flow, classifier, pretrain,
    export) comes through here: :func:`load_weights` (valid safetensors with dimgen metadata,
    finite floats), the metadata's ``kind``, then ``build(metadata)`` on the meta device
    (nothing allocated) for names, shapes and dtypes (:func:`check_state_shapes`); floating
    tensors are cast to the model's dtypes. With ``prefix``, only the tensors named
    ``prefix...`` make the model (returned without the prefix); the others are only checked
    for finite values.

    Raises:
        RunFolderError: naming the file and ``what`` it should be, the tensor and its dtype.
    """
    tensors, meta = load_weights(path)
    if meta.get("kind") != kind:
        raise RunFolderError(f"{path} is not {what}")
    if prefix:
        tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    return check_state_shapes(lambda: build(meta), tensors, path), meta


def write_run(
    run_dir: str | Path, kind: str, *, exclude: tuple[str, ...] = (), **info: Any
) -> None:
    """Mark ``run_dir`` complete: written last, after every other artefact.

    Records ``artefacts``: the sha256 of every file in the folder (:func:`artefact_digests`)
    except ``exclude`` (files about to be removed), so :func:`read_run` detects a folder mixed
    from two runs or changed afterwards.
    """
    from . import __version__

    record = {
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "dimgen_version": __version__,
        "complete": True,
        **info,
        "artefacts": {k: v for k, v in artefact_digests(run_dir).items() if k not in exclude},
    }
    write_json(Path(run_dir) / "run.json", record)


def refresh_digests(run_dir: str | Path) -> None:
    """Re-record the digests of a complete folder after a command added or rewrote artefacts
    (e.g. ``dimgen evaluate``); call it holding :func:`folder_lock`."""
    run_dir = Path(run_dir)
    rec = read_json(run_dir / "run.json")
    if isinstance(rec, dict):
        rec["artefacts"] = artefact_digests(run_dir)
        write_json(run_dir / "run.json", rec)


def _files(run_dir: Path) -> Iterator[Path]:
    """Regular files of a run folder and its subfolders, except ``run.json``, hidden files and
    nested run folders (a sweep's runs have their own ``run.json``)."""
    for entry in sorted(run_dir.iterdir()):
        if entry.name.startswith(".") or entry.is_symlink():
            continue
        if entry.is_dir():
            if not (entry / "run.json").exists():
                yield from _files(entry)
        elif entry.is_file() and entry.name != "run.json":
            yield entry


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def artefact_digest(run_dir: str | Path, name: str, record: dict[str, Any] | None) -> str | None:
    """The sha256 hex of artefact ``name`` of ``run_dir``: as recorded in ``record`` (its
    ``run.json``), else computed from the file (folders written before digests were recorded);
    None if there is no such file."""
    recorded = ((record or {}).get("artefacts") or {}).get(name)
    if isinstance(recorded, str):
        return recorded
    path = Path(run_dir) / name
    return _sha256(path) if path.is_file() and not path.is_symlink() else None


def artefact_digests(run_dir: str | Path) -> dict[str, str]:
    """``{relative path: sha256 hex}`` of every artefact of ``run_dir`` (see :func:`write_run`)."""
    run_dir = Path(run_dir)
    return {f.relative_to(run_dir).as_posix(): _sha256(f) for f in _files(run_dir)}


def clean_temps(run_dir: str | Path) -> list[Path]:
    """Remove temporary files (``.NAME.*.tmp``) left by writes cut short; returns them.

    Only call it holding :func:`folder_lock` (another writer's temporary file is never touched).
    """
    from .folders import is_dimgen_temp

    run_dir = Path(run_dir)
    if not run_dir.is_dir() or run_dir.is_symlink():
        return []
    removed = []
    for tmp in run_dir.rglob(".*.tmp"):
        if tmp.is_file() and is_dimgen_temp(tmp):  # one rule with the --out checks
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def folder_lock(path: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on the folder ``path`` for the life of a writing command.

    Creates the folder if needed (and removes it again on exit if it is still empty), then
    takes a non-blocking ``fcntl.flock`` on the folder itself (no lock file is left behind).
    The lock ends with the process, so a killed writer never leaves a stale lock.

    Raises:
        RunFolderError: ``path`` is a symbolic link (dangling or not) or a file, or another
            process holds the lock (a second writer is refused, not queued).
        WriteError: the folder cannot be created or opened (read-only parent, ...).
    """
    import fcntl

    path = Path(path)
    if path.is_symlink():
        raise RunFolderError(
            f"{path} is a symbolic link; give a real folder (run folders never follow links)"
        )
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{path} exists and is not a folder")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        reason = exc.strerror or _short(exc)
        raise WriteError(f"could not create or open the folder {path} ({reason})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RunFolderError(
                f"{path} is in use: another dimgen process is writing to it; wait for it to "
                "finish or choose another --out"
            ) from None
        try:
            yield path
        finally:
            if created:
                with contextlib.suppress(OSError):
                    path.rmdir()  # only succeeds while the folder is still empty
    finally:
        os.close(fd)


def fill_folder(out: str | Path, fill: Any, what: str = "the run folder") -> Path:
    """Write the folder ``out`` whole: ``fill(tmp)`` writes every file into a hidden folder
    inside it (``OUT/.partial-*.tmp``), whose files are then renamed into ``out``, ``run.json``
    last; so a failure or an interruption leaves ``out`` with no file of this run (a reader
    refuses a folder without ``run.json`` in any case). Working inside ``out`` keeps its mode,
    group and mount, needs no write access to its parent, and adds nothing to its name's length.

    Call it holding :func:`folder_lock` on ``out``, after the checks that ``out`` may take a new
    run. It removes only what dimgen wrote: hidden ``.partial-*.tmp`` folders of a writer killed
    outright, and the ``config.yaml`` of a trainer stopped before its first checkpoint; nothing
    else in ``out`` is touched.

    Raises:
        WriteError: ``fill`` or a rename failed on the file system (full disk, permissions),
            naming ``what`` and the reason; this run's files are removed again.
    """
    import shutil

    from .folders import _stuck, is_dimgen_temp

    out = Path(out)
    tmp: Path | None = None
    moved: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for old in out.iterdir():  # of a writer of ``out`` killed outright (SIGKILL)
            if old.is_dir() and is_dimgen_temp(old):
                shutil.rmtree(old, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=".partial-", suffix=".tmp", dir=out))
        fill(tmp)
        stuck = _stuck(out)  # a trainer's run stopped before its first checkpoint: replaced
        names = sorted(p.name for p in tmp.iterdir() if p.name != "run.json")
        names += ["run.json"] if (tmp / "run.json").exists() else []
        taken = [n for n in names if ((out / n).exists() or (out / n).is_symlink())
                 and not (stuck and n == "config.yaml")]  # fmt: skip
        if taken:  # never overwrite (or, on a failure, remove) a file that is not this run's
            raise RunFolderError(
                f"{out} already holds {', '.join(taken[:3])}, not written by this command; "
                f"nothing was written: choose another --out"
            )
        if stuck:
            (out / "config.yaml").unlink()
        for name in names:
            os.replace(tmp / name, out / name)  # the same file system: a rename each
            moved.append(out / name)
        tmp.rmdir()
        tmp = None
    except (OSError, WriteError) as exc:
        for path in reversed(moved):
            with contextlib.suppress(OSError):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        reason = getattr(exc, "strerror", None) or str(exc).split(" (", 1)[-1].rstrip(")")
        raise WriteError(
            f"could not write {what} {out} ({reason.split(');', 1)[0][:120]}); nothing was left "
            "behind: free space or fix the folder's permissions, then rerun the same command"
        ) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def inside(run_dir: str | Path, name: Any, what: str = "path") -> Path:
    """``run_dir / name`` after checking that a path recorded in a run folder stays inside it.

    Raises :class:`RunFolderError` for a non-string, absolute or escaping (``..``) path, or one
    that passes through a symbolic link.
    """
    run_dir = Path(run_dir)
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        raise RunFolderError(f"{run_dir}: recorded {what} {name!r} is not a relative file name")
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise RunFolderError(
            f"{run_dir}: recorded {what} {name!r} points outside the run folder; refused"
        )
    target = run_dir / rel
    probe = run_dir
    for part in rel.parts:
        probe = probe / part
        if probe.is_symlink():
            raise RunFolderError(f"{probe} is a symbolic link; run folders never follow links")
    return target


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    """Copy ``src`` to ``dst`` atomically (a temporary file renamed onto ``dst``)."""
    import shutil

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def load_spec_module(path: str | Path, kind: str, build: Any, what: str) -> tuple[Any, dict]:
    """Load a weights file whose metadata declares ``kind`` and a ``spec``: ``(module, spec)``.

    The shapes are checked against ``build(spec)`` on the meta device first
    (:func:`check_state_shapes`), so a crafted file allocates nothing. Raises
    :class:`RunFolderError` (naming the file and ``what`` it should be) on any mismatch.
    """

    def build_meta(meta: dict[str, Any]) -> Any:
        if not isinstance(meta.get("spec"), dict):
            raise RunFolderError(f"{path} is not {what}")
        return build(meta["spec"])

    tensors, meta = load_model_weights(path, kind, build_meta, what)
    spec = meta["spec"]
    try:
        module = build(spec)
        module.load_state_dict(tensors)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise RunFolderError(
            f"{path}: weights do not match their spec ({str(exc)[:120]})"
        ) from None
    return module, spec


def check_state_shapes(
    build: Any, tensors: dict[str, torch.Tensor], path: str | Path
) -> dict[str, torch.Tensor]:
    """Check a file's tensors against the model its metadata declares, without allocating it.

    ``build()`` constructs the model; it runs on PyTorch's ``meta`` device (shapes only, no
    memory, no compute), so a 220-byte file declaring a 1x2048x2048 input costs nothing. Raises
    :class:`RunFolderError` if the declared architecture cannot be built or its parameter names,
    shapes or dtypes differ from the tensors in the file (:func:`check_tensors`). Returns the
    tensors, floating ones cast to the model's dtypes.
    """
    errors = (KeyError, RuntimeError, TypeError, ValueError, OverflowError, MemoryError)
    try:
        try:
            with torch.device("meta"):
                model = build()
        except (RuntimeError, NotImplementedError) as exc:
            if "meta" not in str(exc):
                raise
            model = build()  # a constructor that reads values (e.g. .item()) needs real tensors
        state = model.state_dict()
        want = {k: tuple(v.shape) for k, v in state.items()}
    except errors as exc:
        raise RunFolderError(f"{path}: invalid declared architecture ({_short(exc)})") from None
    have = {k: tuple(v.shape) for k, v in tensors.items()}
    if want.keys() != have.keys():
        odd = sorted(want.keys() ^ have.keys())[:3]
        raise RunFolderError(
            f"{path}: tensors do not match the declared architecture (e.g. {', '.join(odd)})"
        )
    for k, shape in want.items():
        if have[k] != shape:
            raise RunFolderError(
                f"{path}: tensor {k} has shape {have[k]}, the declared architecture needs {shape}"
            )
    return check_tensors(tensors, path, state)


def resolve_run_dir(path: str | Path) -> Path:
    """Accept a run folder or a path to one of its files."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    return path


def read_run(path: str | Path, kind: str | tuple[str, ...]) -> tuple[Path, dict[str, Any]]:
    """Return ``(run_dir, run.json)`` after checking the folder exists, is complete and of ``kind``.

    ``run.json`` is looked for first, so a path that is not a run folder (``/usr``) fails at
    once; then only the artefacts recorded in it are visited: a recorded file that is a symbolic
    link (readers and rewriters never follow one) or no longer matches its digest (a folder
    mixed from two runs, or changed since) is refused. Folders written before digests were
    recorded are walked whole for links.
    """
    run_dir = resolve_run_dir(path)
    kinds = (kind,) if isinstance(kind, str) else kind
    want = " or ".join(kinds)
    if not run_dir.exists():
        from .folders import missing_run_message

        raise RunFolderError(missing_run_message(str(path)))
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir} is not a folder")
    rec_path = run_dir / "run.json"  # first: a path that is no run folder fails fast, unwalked
    if rec_path.is_symlink():
        raise RunFolderError(
            f"{rec_path} is a symbolic link; dimgen never follows links inside a run folder"
        )
    if not rec_path.is_file():
        raise RunFolderError(incomplete_message(run_dir, want))
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
        raise RunFolderError(incomplete_message(run_dir, want))
    if rec.get("artefacts") is None:  # folders written before digests: walk them for links
        _refuse_links(run_dir)
    _check_digests(run_dir, rec.get("artefacts"))  # only the recorded files (links refused)
    return run_dir, rec


def incomplete_message(run_dir: Path, want: str = "a run") -> str:
    """What to do with a folder without a (complete) ``run.json``: resume, or rerun to replace.

    The run's kind (for its ``--resume`` command) is ``want`` when that is one kind, else read
    from its ``config.yaml`` (``dimgen evaluate`` takes an encoder or a pretrain run)."""
    from .folders import RESUME_COMMANDS, kind_from_config, resume_command

    kind = want if want in RESUME_COMMANDS else kind_from_config(run_dir)
    what = f"an incomplete {kind} run" if kind else "an incomplete run"
    if (run_dir / "checkpoint.safetensors").exists():  # training.checkpoint.CHECKPOINT
        return (
            f"{run_dir} is {what} with a checkpoint: continue it with "
            f"`{resume_command(run_dir, kind)}`"
        )
    if (run_dir / "config.yaml").exists():
        return (
            f"{run_dir} is {what} stopped before its first checkpoint: rerun the command that "
            f"wrote it (it replaces the folder), or `{resume_command(run_dir, kind)}` to start "
            "it again from its config"
        )
    if (run_dir / "run.json").exists():
        return f"{run_dir} is an incomplete run (run.json does not mark it complete): rerun it"
    if (run_dir / "config.json").is_file() and (run_dir / "model.safetensors").is_file():
        return (
            f"{run_dir} is a dimgen export (config.json, model.safetensors), not a run folder: "
            "load it with Tokenizer.from_pretrained, or give the run it was exported from"
        )
    return f"{run_dir} is not a dimgen run folder (no run.json); expected {want}"


def _refuse_links(run_dir: Path) -> None:
    for entry in run_dir.rglob("*"):
        if entry.is_symlink():
            raise RunFolderError(
                f"{entry} is a symbolic link; dimgen never follows links inside a run folder"
            )


def _check_digests(run_dir: Path, recorded: Any) -> None:
    if recorded is None:  # folders written before digests were recorded
        return
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        raise RunFolderError(f"{run_dir}/run.json: 'artefacts' must map file names to sha256")
    for name, digest in recorded.items():
        file = inside(run_dir, name, "artefact")
        if not file.is_file():
            raise RunFolderError(
                f"{file} is recorded in run.json but missing: the folder is damaged"
            )
        if _sha256(file) != digest:
            raise RunFolderError(
                f"{file} does not match the digest in run.json: the folder was mixed from two "
                "runs or changed since; rerun it"
            )


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
