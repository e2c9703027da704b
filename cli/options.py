"""Options shared by the ``dimgen`` commands, defined once so every command speaks alike.

Each factory returns a click decorator with one help text. Defaults are ``None`` so a command only
overrides the config fields the user gave (a preset's values survive); the default shown in the help
is read from :class:`dimgen.config.EncoderConfig`, the one place it is defined.

This module imports click and :mod:`dimgen.config` only (no torch): argument errors that dimgen can
detect are reported before any heavy import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from dimgen.config import EncoderConfig

__all__ = [
    "DEFAULT_DEVICE",
    "DEFAULT_SEED",
    "SHARED_OPTIONS",
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
    "tensorboard_option",
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
        help="Any other config field, VALUE read as YAML (repeatable); unknown keys are errors.",
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


def out_option(*, required: bool = False, file_okay: bool = True) -> Callable[[F], F]:
    """``--out PATH``: what the command writes; each command's description says what that is."""
    return click.option(
        "--out",
        type=click.Path(file_okay=file_okay),
        required=required,
        help="Where to write the result (a run folder or a file: see the description above).",
    )


def quiet_option() -> Callable[[F], F]:
    """``--quiet``: no progress display."""
    return click.option("--quiet", is_flag=True, help="No progress bars or per-run lines.")


def data_option() -> Callable[[F], F]:
    """``--data SOURCE``: which data set."""
    return click.option(
        "--data",
        metavar="SOURCE",
        help="digits | mnist | fashion-mnist | cifar10 | npz:PATH | "
        "folder:PATH[,side=N][,mode=grey|rgb] (your images).  "
        f"[default: {EncoderConfig.data}; a derived run: its encoder run's data]",
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
