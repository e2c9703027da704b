"""Typed configuration dataclasses, loaded from and saved to YAML; unknown keys are errors.

One set of defaults serves the Python API and the CLI: the CLI only overrides fields that the
user gave explicitly.

Validation, in one place. Every config class (``EncoderConfig``, ``GANConfig``, ``FlowConfig``,
``EvalConfig`` and any later one) is checked by :func:`validate`, which runs

1. :func:`check_fields`, generic over every dataclass field: the value's type must match the
   annotation (``int`` refuses 2.5, 64.0 and ``True``; ``float`` takes ints; ``str`` takes only
   strings), every float must be finite, and a field declared with :func:`bounded` must lie in
   its range, a field declared with :func:`one_of` among its choices;
2. the cross-field checks registered with :func:`register_validator` for the class and each of
   its bases (``batch_size`` divisible by ``devices``, ...), base classes first.

A new config class gets all of this by declaring its fields, e.g.::

    @dataclass
    class MyConfig(RunConfig):
        steps: int = bounded(1000, 1, 10**8)
        lr: float = bounded(1e-3, 0, 10, low_open=True)  # (0, 10]
        kind: str = one_of("a", "a", "b")

Every ``int`` / ``float`` field must be declared with :func:`bounded` (``tests/test_validation.py``
finds every config class, sweeps nan, inf, -1, 0, out-of-range, huge and wrong-type values through
each numeric field, and fails on a field without a range). :func:`from_dict` (YAML files,
``--set``) additionally reads a string that parses as a finite number as that number for
``float`` fields, since PyYAML reads ``1e-3`` (no dot) as a string; integer fields take integers
only. A trainer's entry point calls ``validate(config, MyConfig)`` first (a dict or another
object is then a :class:`ConfigError` too), a CLI command builds its config with
:func:`load_config` / :func:`replace` before importing torch, and checks that need the data
(split sizes against the batch) go at the top of the trainer's ``setup``, before the run folder
is created. :func:`check_count` and :func:`check_seed` check API arguments (``n``, ``seed``).
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
    "MAX_DIM",
    "MAX_SEED",
    "EncoderConfig",
    "Range",
    "RunConfig",
    "bounded",
    "check_count",
    "check_fields",
    "check_run_config",
    "check_seed",
    "check_text",
    "from_dict",
    "load_config",
    "load_run_config",
    "one_of",
    "register_validator",
    "save_config",
    "to_dict",
    "validate",
]

T = TypeVar("T")

SQUASHES = ("phi", "sigmoid", "clamp", "steps")
"""Maps of the uniform channel onto [0, 1] (see :class:`dimgen.infomax.channel.UniformChannel`)."""
LEGACY_SQUASH = "phi"
"""The squash of runs written before the field existed."""
VIEW_NORMS = ("shared", "renorm", "per-view")
"""How training normalises the augmented view (``EncoderConfig.view_norm``, dimgen.channel)."""
#: The widest seed torch and numpy both accept.
MAX_SEED = 2**64 - 1


@dataclass(frozen=True)
class Range:
    """The closed (or half-open) interval a numeric config field must lie in."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    why: str = ""
    """Why the bound exists, appended to the error message."""

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        def fmt(v: float) -> str:
            if not isinstance(v, int):
                return f"{v:g}"
            if v == MAX_SEED:
                return "2^64 - 1"
            if v >= 2**16 and v & (v - 1) == 0:
                return f"2^{v.bit_length() - 1}"
            if v >= 10**5 and str(v).rstrip("0") == "1":
                return f"10^{len(str(v)) - 1}"
            return str(v)

        lo, hi = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{lo}{fmt(self.low)}, {fmt(self.high)}{hi}"


def bounded(
    default: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
    why: str = "",
) -> Any:
    """A dataclass field whose value must lie in ``[low, high]`` (``(`` / ``)`` when open).

    Checked, with the field's type and finiteness, by :func:`check_fields` for every config class.
    """
    rng = Range(low, high, low_open, high_open, why)
    if default not in rng:
        raise ValueError(f"default {default!r} outside {rng}")  # a programming error
    return field(default=default, metadata={"range": rng})


def one_of(default: str | None, *choices: str) -> Any:
    """A string field that must be one of ``choices`` (``None`` allowed if it is the default)."""
    return field(default=default, metadata={"choices": tuple(choices)})


@dataclass
class RunConfig:
    """Fields shared by the configs of everything trained on a device (encoder, GAN, ...).

    Validated once, for every subclass, by :func:`validate`. A subclass may redeclare a
    field to change its default or its description (``EncoderConfig.threads`` is 1).
    """

    seed: int = bounded(0, 0, MAX_SEED)
    """Seed of every random stream of the run."""
    device: str = "auto"
    """``auto`` (cuda if available), ``cpu``, ``cuda`` or ``cuda:N``."""
    threads: int = bounded(0, 0, 1024)
    """CPU threads for torch (0: torch's default)."""
    data_root: str | None = None
    """Folder for torchvision data sets (``DIMGEN_DATA`` if unset)."""
    tensorboard: bool = False
    """Also write TensorBoard events (scalars, sample grids) beside ``log.csv`` in the run folder."""


def check_run_config(cfg: RunConfig) -> None:
    """Check the shared fields beyond their declared ranges; raises :class:`ConfigError`."""
    dev = cfg.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {dev!r}")


#: Largest code dimension. The covariance test simulates its null in chunks of 500 d x d float64
#: matrices (1 GiB at d = 512, 4 GiB at 1024); ``--dim 10000`` ran out of memory after minutes
#: of training.
MAX_DIM = 512
_BIG = 10**8  # a generous ceiling for counts of steps, epochs, samples


@dataclass
class EncoderConfig(RunConfig):
    """Everything needed to train a noise-injected Deep InfoMax encoder.

    The defaults are the quick digits run (CPU, well under a minute); `configs/` holds presets.
    """

    data: str = "digits"
    """Data source: ``digits``, ``mnist``, ``fashion-mnist``, ``cifar10``, or ``npz:PATH``."""
    prior: str = one_of("gaussian", "gaussian", "uniform")
    """``gaussian`` (batch-norm + N(0, sigma^2)) or ``uniform`` (codes in [0,1], + U[-eps, eps])."""
    sigma: float = bounded(0.2, 1e-3, 100.0, why="capacity d/2 log(1 + 1/sigma^2) stays finite")
    """Gaussian channel noise standard deviation (> 0)."""
    eps: float = bounded(0.1, 0.0, 0.5, low_open=True)
    """Uniform channel noise half-width, in (0, 0.5]."""
    squash: str = one_of("sigmoid", *SQUASHES)
    """Uniform prior only: map from standardised outputs to [0, 1]: ``sigmoid`` (learned gain and
    offset; can reach the capacity grid {0, 2 eps, ..., 1}), ``clamp`` or ``phi`` (normal CDF;
    what runs without this field used) or ``steps`` (a soft staircase onto the grid whose
    temperature anneals from ``squash_temp_start`` to ``squash_temp``). See docs/tokenizer.md,
    "Uniform codes: the squash"."""
    squash_temp_start: float = bounded(1.0, 0.0, 1000.0, low_open=True)
    """``steps`` squash only: staircase temperature at the first epoch (1: a smooth ramp)."""
    squash_temp: float = bounded(30.0, 0.0, 1000.0, low_open=True)
    """``steps`` squash only: temperature at the last epoch (annealed geometrically); the trained
    encoder keeps it. Higher puts codes closer to the grid, with smaller gradients between steps
    (digits, eps 0.1: 8 -> 0.79 of codes within eps/2 of the grid, 30 -> 0.96; docs/tokenizer.md)."""
    dim: int = bounded(2, 1, MAX_DIM)
    """Code dimension d."""
    encoder: str = one_of("auto", "auto", "conv", "mlp")
    """``auto`` (conv for images of side >= 16, else MLP), ``conv`` or ``mlp``."""
    encoder_hidden: int = bounded(256, 1, 65536)
    """Width of the encoder's hidden fully connected layers."""
    critic: str = one_of("mlp", "mlp", "separable")
    """``mlp`` (the paper's 3-layer MLP on concatenated pairs) or ``separable`` (dot product)."""
    critic_hidden: int = bounded(64, 1, 65536)
    """Critic hidden width."""
    bound: str = one_of("infonce", "infonce", "dv", "nwj")
    """MI lower bound maximised: ``infonce``, ``dv`` or ``nwj``."""
    aug_noise: float = bounded(0.3, 0.0, 10.0)
    """Std of the additive Gaussian pixel noise that makes the second view X' (data in [0, 1])."""
    aug_shift: float = bounded(0.0, 0.0, 0.5, high_open=True)
    """Random shifts of X' up to this fraction of the image side, in [0, 0.5) (not in the paper)."""
    aug_rotate: float = bounded(0.0, 0.0, 180.0)
    """Random rotations of X' up to this many degrees, in [0, 180] (not in the paper)."""
    aug_scale: float = bounded(0.0, 0.0, 0.5, high_open=True)
    """Random zooms of X' by up to this relative amount, in [0, 0.5) (not in the paper)."""
    epochs: int = bounded(100, 1, _BIG)
    """Passes over the training data; an epoch is floor(n_train / batch_size) steps (the last
    partial batch is dropped). ``metrics.json`` records ``steps_per_epoch`` and ``steps``."""
    batch_size: int = bounded(128, 2, 2**20, why="in-batch negatives need 2 samples per batch")
    lr: float = bounded(2e-3, 0.0, 10.0, low_open=True)
    lr_schedule: str = one_of("constant", "constant", "cosine")
    """Learning rate over the optimiser steps: ``constant`` (``lr`` throughout) or ``cosine``
    (after the warm-up, ``lr`` decays as a half cosine to 0 at the last step; Loshchilov &
    Hutter, SGDR, ICLR 2017)."""
    lr_warmup_epochs: int = bounded(0, 0, _BIG)
    """``cosine`` only: epochs over which the learning rate first rises linearly to ``lr`` (0: no
    warm-up); fewer than ``epochs``."""
    weight_decay: float = bounded(0.0, 0.0, 10.0)
    split_seed: int = bounded(0, 0, MAX_SEED)
    """Seed of the random train/test split of sources without an official one (digits, npz);
    fixed by default, so runs with different ``seed`` share one split."""
    test_fraction: float = bounded(0.2, 0.0, 1.0, low_open=True, high_open=True)
    """Held-out fraction for sources without an official test split (digits, npz)."""
    max_train: int = bounded(0, 0, 2**40)
    """Use only the first N training samples (0: all); for quick experiments."""
    eval_batches: int = bounded(20, 1, 10**6)
    """Batches (each of ``batch_size``) of held-out data used to estimate the MI lower bound."""
    view_norm: str = one_of("shared", *VIEW_NORMS)
    """How training normalises the two views: ``shared`` (both through the clean view's batch
    statistics: one map, as at certification, and E f_i^2 = 1 on every batch), ``renorm`` (both
    through the running statistics, gradients through the batch's, as in batch renormalisation)
    or ``per-view`` (each view its own statistics: dimgen <= 0.2, whose training bound drifts
    above the certified one). See docs, "The certificate over training"."""
    sigreg: float = bounded(0.0, 0.0, 1000.0)
    """Weight of the SIGReg Gaussianity term on the clean codes (sliced Epps-Pulley statistic,
    Balestriero & LeCun 2025, LeJEPA), subtracted from the MI bound; Gaussian prior only (0: off)."""
    whiten: bool = False
    """Normalise the codes by batch whitening (mean 0, covariance I; Cholesky whitening, W-MSE,
    Ermolov et al. 2021) instead of per-coordinate standardisation (mean 0, variance 1), so the
    coordinates are also uncorrelated; E f_i^2 = 1 still holds (the capacity bound is unchanged)."""
    curve_every: int = bounded(1, 0, _BIG)
    """Evaluate the held-out certificate (fixed statistics) every N epochs into ``log.csv`` and
    ``curves.png``: certified MI bound, KL bound, 5-NN, prior-match statistic (0: off)."""
    amp: bool = False
    """bf16 autocast on CUDA."""
    compile: bool = False
    """``torch.compile`` the training step (falls back to eager if compilation fails)."""
    critic_chunk: int = bounded(0, 0, 2**20)
    """Rows of the B x B critic evaluated at a time (0: all at once); bounds peak memory."""
    checkpoint_every: int = bounded(10, 0, _BIG)
    """Save a resumable checkpoint every N epochs (0: never); removed once the run completes."""
    deterministic: bool = False
    """Use deterministic algorithms (bit-exact resume on CPU)."""
    threads: int = bounded(1, 0, 1024)
    """CPU threads for torch during training (0: torch's default, all cores; with several CPU
    processes, cores / processes). 1 by default: on a shared 2-core machine a second thread made
    the digits step 7-10x slower whenever another process was busy (benchmarks/README.md)."""
    devices: int = bounded(1, 1, 1024)
    """Data-parallel processes (DDP) to spawn: one per GPU, or gloo processes on the CPU. The
    global batch stays ``batch_size``. Under ``torchrun`` the launcher decides: leave it at 1."""


def _check_encoder(cfg: EncoderConfig) -> None:
    if cfg.whiten and cfg.view_norm == "renorm":
        raise ConfigError(
            "whiten true needs view_norm shared or per-view (batch renormalisation is defined "
            "per coordinate)"
        )
    if cfg.whiten and cfg.batch_size <= cfg.dim:
        raise ConfigError(
            f"whiten true needs batch_size > dim (a batch of {cfg.batch_size} cannot estimate a "
            f"{cfg.dim} x {cfg.dim} covariance)"
        )
    if cfg.lr_warmup_epochs and cfg.lr_schedule != "cosine":
        raise ConfigError(
            f"lr_warmup_epochs {cfg.lr_warmup_epochs} needs lr_schedule cosine; "
            f"got lr_schedule {cfg.lr_schedule}"
        )
    if cfg.lr_warmup_epochs >= cfg.epochs and cfg.lr_schedule == "cosine":
        raise ConfigError(
            f"lr_warmup_epochs {cfg.lr_warmup_epochs} must be fewer than epochs {cfg.epochs} "
            "(the cosine decay needs at least one epoch)"
        )
    if cfg.sigreg > 0 and cfg.prior != "gaussian":
        raise ConfigError(
            f"sigreg {cfg.sigreg:g} needs prior gaussian (it tests the codes against N(0, I)); "
            f"got prior {cfg.prior}"
        )
    if cfg.batch_size % cfg.devices:
        raise ConfigError(
            f"batch_size {cfg.batch_size} must be divisible by devices {cfg.devices} "
            "(each process takes an equal shard of every batch)"
        )
    if cfg.batch_size // cfg.devices < 2:
        raise ConfigError(
            f"batch_size {cfg.batch_size} over devices {cfg.devices} leaves "
            f"{cfg.batch_size // cfg.devices} sample per process; each needs at least 2 "
            "(in-batch negatives, batch-norm)"
        )


_VALIDATORS: dict[type, Any] = {RunConfig: check_run_config, EncoderConfig: _check_encoder}


def validate(cfg: Any, cls: type | None = None) -> Any:
    """Check a config: field types, finiteness and ranges, then cross-field rules; returns ``cfg``.

    Args:
        cfg: a config dataclass instance.
        cls: the config class expected (``cfg`` may be a subclass); refuses anything else, such
            as a plain dict, with a message saying how to build one.

    Raises:
        ConfigError: naming the field and the value.
    """
    if cls is not None and not isinstance(cfg, cls):
        raise ConfigError(
            f"expected a config of type {cls.__name__}, got {type(cfg).__name__} (build one with "
            f"{cls.__name__}(...) or dimgen.config.from_dict({cls.__name__}, mapping))"
        )
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise ConfigError(f"expected a config dataclass instance, got {type(cfg).__name__}")
    check_fields(cfg)
    for klass in reversed(type(cfg).__mro__):  # base classes' rules first
        check = _VALIDATORS.get(klass)
        if check is not None:
            check(cfg)
    return cfg


def register_validator(cls: type, check: Any) -> None:
    """Add cross-field checks for ``cls`` (and its subclasses) beyond the declared ranges."""
    _VALIDATORS[cls] = check


def check_fields(cfg: Any) -> None:
    """Type, finiteness, range and choices of every field of a config dataclass.

    Raises:
        ConfigError: ``"<field>: expected an integer, got 2.5"``, ``"<field> must be finite,
            got nan"``, ``"<field> must lie in [1, 512], got 10000"`` and the like.
    """
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        _coerce(f.name, value, hints[f.name], strings=False)
        if isinstance(value, str):
            check_text(value, f.name)
        rng: Range | None = f.metadata.get("range")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name} must be a finite number, got {value}")
        if rng is not None and value is not None and value not in rng:
            why = f" ({rng.why})" if rng.why else ""
            raise ConfigError(f"{f.name} must lie in {rng}{why}, got {value!r}")
        choices = f.metadata.get("choices")
        if choices is not None and value is not None and value not in choices:
            raise ConfigError(f"{f.name} must be one of {', '.join(choices)}, got {value!r}")


def check_text(value: str, name: str) -> str:
    """Refuse a string that cannot be written as UTF-8, before any work starts.

    A Linux path may hold bytes that are not UTF-8 (Python keeps them as lone surrogates,
    ``'\\udcff'``); dimgen records data sources and paths in UTF-8 text files (``run.json``,
    ``report.md``, ``config.yaml``), so such a value would only fail after training.

    Raises:
        ConfigError: naming the field and the value (escaped).
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise ConfigError(
            f"{name}: '{shown}' holds bytes that are not UTF-8; dimgen records paths in UTF-8 "
            "text files (run.json, report.md): rename the file or folder"
        ) from None
    return value


MAX_COUNT = 10**7
"""Most samples one API call draws (larger requests: loop over calls)."""


def check_count(n: Any, name: str = "n") -> int:
    """An API count argument (samples to draw, ...) as an ``int`` >= 1.

    Raises:
        DataError: not an integer (2.5, "3", True), below 1 or above :data:`MAX_COUNT`.
    """
    import numbers

    from .errors import DataError

    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise DataError(f"{name} must be an integer >= 1, got {n!r}")
    if n < 1:
        raise DataError(f"{name} must be >= 1, got {n}")
    if n > MAX_COUNT:
        raise DataError(f"{name} must be at most {MAX_COUNT:,} (one call), got {n:,}")
    return int(n)


#: The largest code temperature: draws from 10 * N(0, I) already reach far past any trained
#: code (dimgen codes are about N(0, 1)); beyond it a typo (1e38) would overflow the generator.
MAX_TEMPERATURE = 10.0


def check_temperature(temperature: Any, name: str = "the temperature") -> float:
    """A code temperature T as a float (None: 1): prior draws are T * N(0, I) (the temperature
    of Glow, Kingma & Dhariwal 2018, section 4: T < 1 trades diversity for typical codes);
    ``name`` is what the error calls it (an option's flag).

    Raises:
        ConfigError: not a number in (0, :data:`MAX_TEMPERATURE`].
    """
    import numbers

    if temperature is None:
        return 1.0
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise ConfigError(
            f"{name} must be a number in (0, {MAX_TEMPERATURE:g}], got {temperature!r}"
        )
    try:
        t = float(temperature)
    except OverflowError:
        t = math.inf
    if not (0 < t <= MAX_TEMPERATURE):
        raise ConfigError(f"{name} must be a number in (0, {MAX_TEMPERATURE:g}], got {temperature}")
    return t


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """An API seed argument: ``None`` or an integer in [0, 2^64 - 1].

    Raises:
        ConfigError: not an integer, negative or beyond 64 bits.
    """
    import numbers

    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"{name} must be an integer in [0, 2^64 - 1], got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{name} must lie in [0, 2^64 - 1], got {seed}")
    return int(seed)


def _coerce(name: str, value: Any, tp: Any, strings: bool = True) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected.

    With ``strings``, a string that parses as a finite float is accepted for a ``float`` field
    (PyYAML reads ``1e-3`` as a string).
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, value, arg, strings)
            except ConfigError:
                pass
        raise ConfigError(f"{name}: expected {tp}, got {value!r}")
    if value is None:
        raise ConfigError(f"{name}: needs a value, got null (or nothing); it cannot be cleared")
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
        if strings and isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number):
                return number
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return [_coerce(name, v, item, strings) if item is not Any else v for v in value]
    return value


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build a config dataclass from a mapping and :func:`validate` it.

    Args:
        cls: the config class.
        data: field name -> value (a parsed YAML file, ``--set`` items).
        source: named in error messages (a file path, ``options``).

    Raises:
        ConfigError: not a mapping, unknown keys, wrong types, non-finite or out-of-range values.
        A string that parses as a finite number is accepted for a ``float`` field (``1e-3``).
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of keys to values, got {type(data).__name__}"
        )
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(repr(k) for k in data if k not in names)
    if unknown:
        import difflib

        near = {str(k): difflib.get_close_matches(str(k), sorted(names), n=1, cutoff=0.6)
                for k in data if k not in names}  # fmt: skip
        hints = [f"`{m[0]}` for {k!r}" for k, m in near.items() if m]
        # `train-gan --set sigma=0.3`: a run on an encoder's codes inherits the encoder's settings
        encoder = {f.name for f in dataclasses.fields(EncoderConfig)} - names
        inherited = [repr(str(k)) for k, m in near.items() if not m and k in encoder]
        if inherited and not hints and "encoder_run" in names:
            others = [u for u in unknown if u not in inherited]
            raise ConfigError(
                f"{source}: {', '.join(inherited)}: encoder setting(s) (`dimgen encode`), fixed "
                "by the encoder run this run reads; train another encoder to change them"
                + (f" (also unknown: {', '.join(others)})" if others else "")
            )
        if hints:  # the nearest key, as click does for a mistyped option
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; did you mean "
                              f"{', '.join(hints)}?")  # fmt: skip
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})"
        )
    hints = typing.get_type_hints(cls)
    values = {k: _coerce(f"{source}: {k}", v, hints[k]) for k, v in data.items()}
    return validate(cls(**values), cls)


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


#: What runs written before a field existed were trained with: a missing key takes this value
#: (a function of the run's other settings), not today's default.
_RUN_LEGACY: dict[str, Any] = {
    "squash": lambda d: "phi",  # uniform codes were Phi(batch-norm(h))
    "split_seed": lambda d: d.get("seed", 0),  # the split followed --seed
}


def load_run_config(path: str | Path) -> EncoderConfig:
    """Load the ``config.yaml`` of an encoder run, as it was trained (for resume and reuse).

    Fields added after the run was written take the value the run was trained with
    (``squash: phi``, ``split_seed`` = ``seed``), not today's defaults.

    Raises:
        ConfigError: the file is missing, not YAML, or has unknown keys or bad values.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    from .parsing import parse_yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: cannot be read ({first})") from None
    data = parse_yaml(text, str(path))  # bounded, no aliases, no duplicate keys
    if isinstance(data, dict):
        data = {**{k: f(data) for k, f in _RUN_LEGACY.items() if k not in data}, **data}
    return from_dict(EncoderConfig, {} if data is None else data, source=str(path))


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically), headed by
    :data:`dimgen.folders.CONFIG_HEADER` (a comment: how a folder stopped before its first
    checkpoint is told from a user's own folder that holds a ``config.yaml``)."""
    from .folders import CONFIG_HEADER
    from .io import write_text

    header = f"{CONFIG_HEADER} ({type(cfg).__name__}); any YAML reader skips this line\n"
    write_text(path, header + yaml.safe_dump(to_dict(cfg), sort_keys=False))


def replace(cfg: T, **changes: Any) -> T:
    """Return a validated copy with ``changes`` applied (None values are ignored)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return cfg
    data = {**to_dict(cfg), **changes}
    return from_dict(type(cfg), data, source="options")


# Keep `field` importable for other config modules that build on this one.
_ = field
