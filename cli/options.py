"""Options shared by the ``dimgen`` commands, defined once so every command speaks alike.

Each factory returns a click decorator with one help text. Defaults are ``None`` so a command only
overrides the config fields the user gave (a preset's values survive); the default shown in the help
is read from :class:`dimgen.config.EncoderConfig`, the one place it is defined.

This module imports click and :mod:`dimgen.config` only (no torch): argument errors that dimgen can
detect are reported before any heavy import.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from dimgen.config import EncoderConfig

__all__ = [
    "DEFAULT_DEVICE",
    "DEFAULT_SEED",
    "SHARED_OPTIONS",
    "check_out",
    "check_run",
    "config_option",
    "data_option",
    "data_root_option",
    "device_option",
    "given",
    "out_option",
    "parse_sets",
    "protocol_option",
    "quiet_option",
    "refuse_non_run",
    "seed_option",
    "set_option",
    "show_config_defaults",
    "smoke_note",
    "tensorboard_option",
    "with_sets",
    "writing",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Defaults of the shared options, from the config dataclass (one set of defaults for API and CLI).
DEFAULT_SEED: int = EncoderConfig.seed
DEFAULT_DEVICE: str = EncoderConfig.device

#: The options defined here, by their flag (what tests/cli/test_cli_options.py checks).
SHARED_OPTIONS = (
    "--config",
    "--set",
    "--seed",
    "--device",
    "--out",
    "--quiet",
    "--data",
    "--data-root",
    "--tensorboard",
)

_MAX_SEED = 2**64 - 1  # the widest seed torch and numpy both accept


def config_option() -> Callable[[F], F]:
    """``--config PATH`` (parameter ``config_path``): a YAML preset."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        help="YAML preset (see configs/); unknown keys are errors.",
    )


def set_option() -> Callable[[F], F]:
    """``--set KEY=VALUE`` (parameter ``sets``, repeatable): any other config field."""
    return click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="KEY=VALUE",
        help="Any other config field, VALUE read as YAML (repeatable; null clears an optional field); unknown keys are errors.",
    )


def seed_option() -> Callable[[F], F]:
    """``--seed N``: an integer in [0, 2^64 - 1]."""
    return click.option(
        "--seed",
        type=int,
        metavar="N",
        callback=_check_seed,
        help=f"Random seed: the same seed gives the same result.  [default: {DEFAULT_SEED}]",
    )


def protocol_option() -> Callable[[F], F]:
    """``--protocol calibrated|paper``: which p-values lead the summary and the sweep figure."""
    return click.option(
        "--protocol",
        type=click.Choice(["calibrated", "paper"]),
        help="p-values to lead with: calibrated (Fisher/Simes tests, the verdict) or paper "
        "(Figure 1: mean p over small subsamples, descriptive). Both are always written.  "
        "[default: calibrated]",
    )


def _check_seed(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and not 0 <= value <= _MAX_SEED:
        raise click.BadParameter(f"must lie in [0, 2^64 - 1], got {value}", ctx, param)
    return value


def device_option() -> Callable[[F], F]:
    """``--device``: where tensors live."""
    return click.option(
        "--device",
        metavar="DEVICE",
        help=f"auto | cpu | cuda | cuda:N (auto: cuda if available).  [default: {DEFAULT_DEVICE}]",
    )


def out_option(help: str, *, required: bool = False, file_okay: bool = True) -> Callable[[F], F]:
    """``--out PATH``: what the command writes, said by each command (``help``)."""
    return click.option("--out", type=click.Path(file_okay=file_okay), required=required, help=help)


def quiet_option() -> Callable[[F], F]:
    """``--quiet``: no progress display."""
    return click.option("--quiet", is_flag=True, help="No progress bars or phase lines on stderr.")


def writing(path: str | Path, kind: str) -> None:
    """Record that the command now writes run ``path`` of ``kind``, so Ctrl-C can name the folder
    and the command that continues it (:func:`dimgen.folders.interrupted_message`)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta["dimgen.writing"] = (str(path), kind)


def check_out(out: str | Path, kind: str) -> None:
    """Refuse, before torch is imported, an ``--out`` that cannot take a new run of ``kind``:
    a complete run, someone else's files, an interrupted run (with its ``--resume`` command);
    each with a free name to use instead (:func:`dimgen.folders.out_problem`)."""
    from dimgen.folders import check_new_out

    check_new_out(out, kind)


def check_run(run: str, *, hub: bool = False) -> None:
    """Refuse, before torch is imported, a RUN argument that is no local folder: "no such run
    folder" (with the nearest names); with ``hub``, a ``user/repo`` id is left to the Hub."""
    from dimgen.errors import RunFolderError
    from dimgen.folders import looks_like_hub_id, missing_run_message

    if Path(run).expanduser().exists() or (hub and looks_like_hub_id(run)):
        return
    raise RunFolderError(missing_run_message(run))


def smoke_note() -> str:
    """`` [smoke run: not results]`` after a command's summary line under ``DIMGEN_SMOKE``."""
    from dimgen.training import smoke

    return " [smoke run (DIMGEN_SMOKE): not results]" if smoke.active() else ""


def data_option(default: str = EncoderConfig.data) -> Callable[[F], F]:
    """``--data SOURCE``: which data set (``default``: what the help says is used without it)."""
    return click.option(
        "--data",
        metavar="SOURCE",
        help="digits | mnist | fashion-mnist | cifar10 | npz:PATH | "
        "folder:PATH[,side=N][,mode=grey|rgb][,stream=1,workers=N] (your images; stream=1: "
        "decoded on the fly, for folders that don't fit in memory).  "
        f"[default: {default}]",
    )


def data_root_option() -> Callable[[F], F]:
    """``--data-root DIR``: where torchvision data sets live."""
    return click.option(
        "--data-root",
        type=click.Path(file_okay=False),
        help="Folder with torchvision data sets.  [default: $DIMGEN_DATA]",
    )


def tensorboard_option() -> Callable[[F], F]:
    """``--tensorboard``: TensorBoard events beside ``log.csv`` (config field ``tensorboard``)."""
    return click.option(
        "--tensorboard",
        is_flag=True,
        default=None,
        help="Also write TensorBoard events (scalars, sample grids) into RUN/tensorboard/.",
    )


def show_config_defaults(command: click.Command, config_cls: type) -> None:
    """Show, in ``command --help``, the default of every option named like a field of the config
    dataclass ``config_cls`` (``--batch-size`` -> ``batch_size``): the library's defaults, read
    from the one place they are defined (the options themselves default to ``None``)."""
    import dataclasses

    defaults = {
        f.name: f.default
        for f in dataclasses.fields(config_cls)
        if f.default is not dataclasses.MISSING
    }
    for param in command.params:
        if not isinstance(param, click.Option) or param.is_flag or param.name not in defaults:
            continue
        if param.show_default is None and "[default:" not in (param.help or ""):
            param.help = f"{param.help or ''}  [default: {defaults[param.name]}]".strip()


def given(**values: Any) -> dict[str, Any]:
    """Only the options the user gave (not ``None``): the library supplies every default."""
    return {k: v for k, v in values.items() if v is not None}


def parse_sets(sets: tuple[str, ...]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as a dict; each VALUE is parsed as YAML (:func:`dimgen.parsing.parse_yaml`: bounded, no aliases).

    Raises:
        ConfigError: an item without ``=`` or a value that is not valid YAML.
    """
    from dimgen.errors import ConfigError
    from dimgen.parsing import parse_yaml

    out: dict[str, Any] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = parse_yaml(value, f"--set {key.strip()}")
    return out


def with_sets(cfg: Any, overrides: dict[str, Any]) -> Any:
    """``cfg`` with parsed ``--set`` items applied and validated. Unlike a flag's None (not
    given), ``--set KEY=null`` sets KEY to null: refused for a field that needs a value,
    instead of silently keeping the default.

    Raises:
        ConfigError: an unknown key, a wrong type or an out-of-range value, naming ``--set``.
    """
    from dimgen.config import from_dict, to_dict

    if not overrides:
        return cfg
    return from_dict(type(cfg), {**to_dict(cfg), **overrides}, source="--set")


def refuse_non_run(path: str, want: str) -> None:
    """Refuse at once, before the heavy imports, a path that is no run folder at all (``/usr``):
    no ``run.json``, ``config.yaml`` or checkpoint. Anything else is left to
    :func:`dimgen.io.read_run` (which also looks for ``run.json`` first)."""
    from pathlib import Path

    from dimgen.errors import RunFolderError

    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        return  # read_run names a missing path
    marks = ("run.json", "config.yaml", "checkpoint.safetensors", "config.json")
    if not any((folder / m).exists() for m in marks):
        raise RunFolderError(f"{folder} is not a dimgen run folder (no run.json); expected {want}")
