"""What a folder on disk is, told without torch: the checks a command makes on ``--out`` and on a
run argument before any heavy import, so a refusal comes back in well under two seconds.

Shared by the library (:func:`dimgen.training.check_new_folder`, :func:`dimgen.io.read_run`,
:func:`dimgen.infomax.hub.resolve_pretrained`) and the CLI, so both say the same thing: whether a used
``--out`` holds a complete run, an interrupted one (and the full command that continues it) or
someone else's files, with a free name to use instead; and whether a missing run argument is
a mistyped local folder or a Hugging Face Hub id.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .errors import RunFolderError

__all__ = [
    "CHECKPOINT",
    "CONFIG_HEADER",
    "CONFIG_MARKS",
    "PARTIAL",
    "RESUME_COMMANDS",
    "check_new_out",
    "free_name",
    "interrupted_message",
    "is_dimgen_temp",
    "kind_from_config",
    "looks_like_hub_id",
    "missing_run_message",
    "out_problem",
    "resume_command",
]

CHECKPOINT = "checkpoint.safetensors"  # dimgen.training.checkpoint.CHECKPOINT (torch-free copy)

#: The command that trains (and continues) each resumable run kind.
RESUME_COMMANDS: dict[str, str] = {
    "encoder": "dimgen encode",
    "gan": "dimgen train-gan",
    "diffusion": "dimgen train-diffusion",
    "pretrain": "dimgen pretrain",
}

#: A ``config.yaml`` key only each resumable kind's config has (tests/test_newcomer.py checks
#: them against the config classes): how an incomplete folder, without run.json, tells its kind.
CONFIG_MARKS: dict[str, str] = {
    "encoder": "aug_noise",
    "gan": "d_width",
    "diffusion": "num_train_timesteps",
    "pretrain": "proj_dim",
}


def kind_from_config(path: str | Path) -> str | None:
    """The kind of an incomplete run folder, read from its ``config.yaml`` keys (None if none
    or several match, or the file cannot be read); no YAML parser: a top-level ``key:`` line."""
    try:
        keys = {
            line.split(":", 1)[0]
            for line in (Path(path) / "config.yaml").read_text().splitlines()
            if line[:1].isalpha() and ":" in line
        }
    except (OSError, UnicodeDecodeError):
        return None
    found = [kind for kind, key in CONFIG_MARKS.items() if key in keys]
    return found[0] if len(found) == 1 else None


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def resume_command(path: str | Path, kind: str | None = None) -> str:
    """``dimgen encode --resume PATH`` (the command of run ``kind``; read from ``config.yaml``'s
    folder when ``kind`` is None and cannot be told: ``dimgen <command> --resume PATH``)."""
    cmd = RESUME_COMMANDS.get(kind or "", "dimgen <command>")
    return f"{cmd} --resume {path}"


def free_name(path: str | Path) -> Path:
    """The first of ``PATH-2``, ``PATH-3``, ... that does not exist: a name to suggest."""
    path = Path(path)
    if path.name in ("", ".", ".."):  # `--out .` or `--out runs/..`: name the folder itself
        path = path.resolve()
    for i in range(2, 10_000):
        candidate = path.with_name(f"{path.name}-{i}")
        if not candidate.exists():
            return candidate
    return path.with_name(f"{path.name}-new")


def _kind(path: Path) -> str | None:
    """The ``kind`` of ``path/run.json`` (None when missing or unreadable)."""
    try:
        rec = json.loads((path / "run.json").read_text())
    except (OSError, ValueError):
        return None
    kind = rec.get("kind") if isinstance(rec, dict) else None
    return kind if isinstance(kind, str) else None


#: The first line of every ``config.yaml`` dimgen writes (:func:`dimgen.config.save_config`):
#: how a run folder stopped before its first checkpoint is told from a user's own folder.
CONFIG_HEADER = "# dimgen run config"


def _dimgen_config(path: Path) -> bool:
    """Whether ``path/config.yaml`` was written by dimgen: its header, or (folders written
    before the header) the keys of a dimgen trainer's config."""
    try:
        with open(path / "config.yaml", encoding="utf-8", errors="replace") as fh:
            first = fh.readline(200)
    except OSError:
        return False
    return first.startswith(CONFIG_HEADER) or kind_from_config(path) is not None


def _stuck(path: Path) -> bool:
    """A run stopped after ``config.yaml`` and before its first checkpoint (and not complete):
    the ``config.yaml`` must be dimgen's, not a user's own file of that name."""
    return (
        (path / "config.yaml").is_file()
        and not (path / CHECKPOINT).exists()
        and not (path / "run.json").exists()
        and _dimgen_config(path)
    )


#: The temporary entries dimgen leaves inside a folder when a write is cut short: files of
#: :func:`dimgen.io.atomic_path` (``.NAME.*.tmp``) and folders of :func:`dimgen.io.fill_folder`.
_TEMP = re.compile(r"\..+\.tmp")
PARTIAL = re.compile(r"\.partial-[a-z0-9_]+\.tmp")


def is_dimgen_temp(entry: Path) -> bool:
    """Whether ``entry`` is a temporary file or folder dimgen wrote (and may remove)."""
    if entry.is_symlink():
        return False
    if entry.is_dir():
        return PARTIAL.fullmatch(entry.name) is not None
    return _TEMP.fullmatch(entry.name) is not None


def _used(path: Path) -> bool:
    return any(not is_dimgen_temp(p) for p in path.iterdir())


def out_problem(path: str | Path, kind: str | None = None) -> str | None:
    """Why ``path`` cannot take a new run of ``kind`` (None: it can).

    Accepted: an absent or empty folder, or one stopped before its first checkpoint (replaced).
    Refused, each with what it is and a free name to use instead: a symbolic link, a file, an
    interrupted run with a checkpoint (with the full ``--resume`` command), a complete run (of
    which kind), any other non-empty folder (not a dimgen run).
    """
    path = Path(path)
    other = f"choose another --out, e.g. {free_name(path)}"
    if path.is_symlink():
        return f"output {path} is a symbolic link; {other}"
    if path.exists() and not path.is_dir():
        return f"output {path} exists and is a file, not a folder; {other}"
    if not path.exists() or not _used(path) or _stuck(path):
        return None
    found = _kind(path)
    if (path / CHECKPOINT).exists() and not (path / "run.json").exists():
        return (
            f"output folder {path} holds an interrupted run: continue it with "
            f"`{resume_command(path, kind)}` (resume=True in Python), or {other}"
        )
    if found is not None:
        return f"output folder {path} exists and is not empty: a complete {found} run; {other}"
    return (f"output folder {path} exists and is not empty: not a dimgen run (someone else's "
            f"files); {other}")  # fmt: skip


def check_new_out(path: str | Path, kind: str | None = None) -> None:
    """Raise :class:`~dimgen.errors.RunFolderError` with :func:`out_problem`'s line if ``path``
    cannot take a new run of ``kind``."""
    problem = out_problem(path, kind)
    if problem is not None:
        raise RunFolderError(problem)


def looks_like_hub_id(text: str) -> bool:
    """Whether ``text`` can only be a Hub repository id ``user/repo``: one slash, no path syntax
    (``./``, ``../``, ``/``, ``~``, backslashes), and its first part is not a local folder
    (``runs/digitz`` with a ``runs/`` folder here is a mistyped path, not a user ``runs``)."""
    if not _HUB_ID.match(text) or text.startswith((".", "~")):
        return False
    return not Path(text.split("/")[0]).is_dir()


def missing_run_message(text: str) -> str:
    """The line for a run argument that is not a local folder and not a Hub id: "no such run
    folder", with the nearest existing names beside it (difflib), if any."""
    import difflib

    path = Path(text).expanduser()
    parent = path.parent if str(path.parent) else Path(".")
    hint = ""
    if parent.is_dir():
        names = sorted(p.name for p in parent.iterdir() if p.is_dir())
        close = difflib.get_close_matches(path.name, names, n=3, cutoff=0.6)
        if close:
            hint = "; did you mean " + " or ".join(f"`{parent / c}`" for c in close) + "?"
    elif str(parent) not in ("", "."):
        hint = f" ({parent} does not exist either)"
    return f"no such run folder: {text}{hint}"


def interrupted_message(
    path: str | Path | None, kind: str | None = None, command: str | None = None
) -> str:
    """What Ctrl-C leaves behind in ``path`` (a run of ``kind`` being written) and the command
    that continues it; with no folder being written, that ``dimgen COMMAND`` stopped and that
    its files are written whole or not at all."""
    if path is None:
        if command is None:
            return "interrupted"
        return (
            f"interrupted: dimgen {command} stopped; files are written whole or not at all, so "
            "none is half-written: rerun the same command"
        )
    path = Path(path)
    if kind == "sweep":
        return (
            f"interrupted: {path} keeps its finished runs; rerun the same `dimgen sweep` "
            "command to continue it (interrupted runs resume from their last checkpoint)"
        )
    if (path / "run.json").is_file():
        return f"interrupted after {path} was complete"
    if kind not in RESUME_COMMANDS:  # e.g. a flow: written whole, so nothing or all of it
        if not path.is_dir() or not _used(path):
            return f"interrupted before anything was written to {path}: rerun the same command"
        return f"interrupted: {path} is incomplete; rerun the same command to write it again"
    if (path / CHECKPOINT).is_file():
        return f"interrupted: {path} is incomplete; continue it with `{resume_command(path, kind)}`"
    if (path / "config.yaml").is_file():
        return (
            f"interrupted before the first checkpoint of {path}: rerun the same command (it "
            f"replaces the folder), or `{resume_command(path, kind)}` to start it again"
        )
    return f"interrupted before anything was written to {path}"
