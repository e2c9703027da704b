"""Typed configuration dataclasses, loaded from and saved to YAML; unknown keys are errors.

One set of defaults serves the Python API and the CLI: the CLI only overrides fields that the
user gave explicitly.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

__all__ = [
    "EncoderConfig",
    "RunConfig",
    "check_run_config",
    "from_dict",
    "load_config",
    "save_config",
    "to_dict",
]

T = TypeVar("T")


@dataclass
class RunConfig:
    """Fields shared by the configs of everything trained on a device (encoder, GAN, ...).

    Validated once, for every subclass, by :func:`check_run_config`. A subclass may redeclare a
    field to change its default or its description (``EncoderConfig.threads`` is 1).
    """

    seed: int = 0
    """Seed of every random stream of the run."""
    device: str = "auto"
    """``auto`` (cuda if available), ``cpu``, ``cuda`` or ``cuda:N``."""
    threads: int = 0
    """CPU threads for torch (0: torch's default)."""
    data_root: str | None = None
    """Folder for torchvision data sets (``DIMGEN_DATA`` if unset)."""
    tensorboard: bool = False
    """Also write TensorBoard events (scalars, sample grids) beside ``log.csv`` in the run folder."""


def check_run_config(cfg: RunConfig) -> None:
    """Check the shared fields; raises :class:`ConfigError` naming the field."""
    dev = cfg.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {dev!r}")
    if cfg.threads < 0:
        raise ConfigError(f"threads must be >= 0, got {cfg.threads}")


@dataclass
class EncoderConfig(RunConfig):
    """Everything needed to train a noise-injected Deep InfoMax encoder.

    The defaults are the quick digits run (CPU, well under a minute); `configs/` holds presets.
    """

    data: str = "digits"
    """Data source: ``digits``, ``mnist``, ``fashion-mnist``, ``cifar10``, or ``npz:PATH``."""
    prior: str = "gaussian"
    """``gaussian`` (batch-norm + N(0, sigma^2)) or ``uniform`` (codes in [0,1], + U[-eps, eps])."""
    sigma: float = 0.2
    """Gaussian channel noise standard deviation (> 0)."""
    eps: float = 0.1
    """Uniform channel noise half-width, in (0, 0.5]."""
    dim: int = 2
    """Code dimension d."""
    encoder: str = "auto"
    """``auto`` (conv for images of side >= 16, else MLP), ``conv`` or ``mlp``."""
    encoder_hidden: int = 256
    """Width of the encoder's hidden fully connected layers."""
    critic: str = "mlp"
    """``mlp`` (the paper's 3-layer MLP on concatenated pairs) or ``separable`` (dot product)."""
    critic_hidden: int = 64
    """Critic hidden width."""
    bound: str = "infonce"
    """MI lower bound maximised: ``infonce``, ``dv`` or ``nwj``."""
    aug_noise: float = 0.3
    """Std of the additive Gaussian pixel noise that makes the second view X' (data in [0, 1])."""
    epochs: int = 100
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    test_fraction: float = 0.2
    """Held-out fraction for sources without an official test split (digits, npz)."""
    max_train: int = 0
    """Use only the first N training samples (0: all); for quick experiments."""
    eval_batches: int = 20
    """Batches (each of ``batch_size``) of held-out data used to estimate the MI lower bound."""
    amp: bool = False
    """bf16 autocast on CUDA."""
    compile: bool = False
    """``torch.compile`` the training step (falls back to eager if compilation fails)."""
    critic_chunk: int = 0
    """Rows of the B x B critic evaluated at a time (0: all at once); bounds peak memory."""
    checkpoint_every: int = 10
    """Save a resumable checkpoint every N epochs (0: never); removed once the run completes."""
    deterministic: bool = False
    """Use deterministic algorithms (bit-exact resume on CPU)."""
    threads: int = 1
    """CPU threads for torch during training (0: torch's default, all cores; with several CPU
    processes, cores / processes). 1 by default: on a shared 2-core machine a second thread made
    the digits step 7-10x slower whenever another process was busy (benchmarks/README.md)."""
    devices: int = 1
    """Data-parallel processes (DDP) to spawn: one per GPU, or gloo processes on the CPU. The
    global batch stays ``batch_size``. Under ``torchrun`` the launcher decides: leave it at 1."""


def _check_encoder(cfg: EncoderConfig) -> None:
    if cfg.prior not in ("gaussian", "uniform"):
        raise ConfigError(f"prior must be 'gaussian' or 'uniform', got {cfg.prior!r}")
    if not (math.isfinite(cfg.sigma) and cfg.sigma > 0):
        raise ConfigError(f"sigma must be a finite number > 0, got {cfg.sigma}")
    if not (math.isfinite(cfg.eps) and 0 < cfg.eps <= 0.5):
        raise ConfigError(f"eps must lie in (0, 0.5], got {cfg.eps}")
    if cfg.dim < 1:
        raise ConfigError(f"dim must be >= 1, got {cfg.dim}")
    if cfg.encoder not in ("auto", "conv", "mlp"):
        raise ConfigError(f"encoder must be auto, conv or mlp, got {cfg.encoder!r}")
    if cfg.critic not in ("mlp", "separable"):
        raise ConfigError(f"critic must be 'mlp' or 'separable', got {cfg.critic!r}")
    if cfg.bound not in ("infonce", "dv", "nwj"):
        raise ConfigError(f"bound must be infonce, dv or nwj, got {cfg.bound!r}")
    for name in (
        "epochs",
        "batch_size",
        "encoder_hidden",
        "critic_hidden",
        "eval_batches",
        "devices",
    ):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.batch_size < 2:
        raise ConfigError("batch_size must be >= 2 (in-batch negatives)")
    if cfg.batch_size % cfg.devices:
        raise ConfigError(
            f"batch_size {cfg.batch_size} must be divisible by devices {cfg.devices} "
            "(each process takes an equal shard of every batch)"
        )
    for name in ("critic_chunk", "checkpoint_every", "max_train"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ConfigError(f"lr must be > 0, got {cfg.lr}")
    if not (math.isfinite(cfg.aug_noise) and cfg.aug_noise >= 0):
        raise ConfigError(f"aug_noise must be >= 0, got {cfg.aug_noise}")
    if not (0 < cfg.test_fraction < 1):
        raise ConfigError(f"test_fraction must lie in (0, 1), got {cfg.test_fraction}")
    if cfg.weight_decay < 0:
        raise ConfigError(f"weight_decay must be >= 0, got {cfg.weight_decay}")


_VALIDATORS: dict[type, Any] = {EncoderConfig: _check_encoder}


def validate(cfg: Any) -> Any:
    """Check value ranges; raises :class:`ConfigError` naming the field."""
    if isinstance(cfg, RunConfig):
        check_run_config(cfg)
    check = _VALIDATORS.get(type(cfg))
    if check is not None:
        check(cfg)
    return cfg


def register_validator(cls: type, check: Any) -> None:
    """Let other modules (GAN, flows) validate their own config dataclasses."""
    _VALIDATORS[cls] = check


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, value, arg)
            except ConfigError:
                pass
        raise ConfigError(f"{name}: expected {tp}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return [_coerce(name, v, item) if item is not Any else v for v in value]
    return value


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build a config dataclass from a mapping; unknown keys and wrong types are errors."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of keys to values, got {type(data).__name__}"
        )
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(repr(k) for k in data if k not in names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})"
        )
    values = {k: _coerce(f"{source}: {k}", v, hints[k]) for k, v in data.items()}
    return validate(cls(**values))


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of a config dataclass."""
    return dataclasses.asdict(cfg)


def load_config(path: str | Path, cls: type[T] = EncoderConfig) -> T:  # type: ignore[assignment]
    """Load a YAML config file into ``cls``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    from .parsing import parse_yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as UTF-8 text ({type(exc).__name__})") from None
    data = parse_yaml(text, str(path))
    if data is None:
        data = {}
    return from_dict(cls, data, source=str(path))


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from .io import write_text

    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def replace(cfg: T, **changes: Any) -> T:
    """Return a validated copy with ``changes`` applied (None values are ignored)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return cfg
    data = {**to_dict(cfg), **changes}
    return from_dict(type(cfg), data, source="options")


# Keep `field` importable for other config modules that build on this one.
_ = field
