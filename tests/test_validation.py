"""Validation up front (issues 10 and 16): every numeric config field of every config class is
checked for type, finiteness and range in one place; bad values, impossible data sizes and wrong
API types give one dimgen error naming the problem, before any training or heavy import.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
import pkgutil
import subprocess
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dimgen
from dimgen.config import (
    _VALIDATORS,
    EncoderConfig,
    Range,
    RunConfig,
    bounded,
    check_count,
    check_seed,
    from_dict,
    replace,
    validate,
)
from dimgen.errors import ConfigError, DataError, DimgenError

HEAVY = ("torch", "torchvision", "nflows", "sklearn", "matplotlib")


# ---------------------------------------------------------------------------------------------
# the sweep: every numeric field of every config class


def _config_classes() -> list[type]:
    """Every config dataclass in dimgen: RunConfig subclasses, classes with registered checks,
    and dataclasses with a declared range; found by importing every dimgen module, so a config
    class added later is covered without editing this test."""
    for mod in pkgutil.walk_packages(dimgen.__path__, "dimgen."):
        try:
            importlib.import_module(mod.name)
        except ImportError:  # an optional dependency that is not installed
            continue
    found: set[type] = set(_VALIDATORS)
    stack = [RunConfig]
    while stack:
        cls = stack.pop()
        found.add(cls)
        stack.extend(cls.__subclasses__())
    for name, module in list(sys.modules.items()):
        if not name.startswith("dimgen.") or module is None:
            continue
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and dataclasses.is_dataclass(obj)
                and obj.__module__.startswith("dimgen.")
                and any("range" in f.metadata for f in dataclasses.fields(obj))
            ):
                found.add(obj)
    return sorted(
        (c for c in found if c.__module__.startswith("dimgen.")), key=lambda c: c.__name__
    )


CONFIG_CLASSES = _config_classes()


def _numeric_fields(cls: type) -> list[tuple[str, type, Any]]:
    """(name, int or float, Range or None) of every numeric field (``int | None`` too)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        args = set(typing.get_args(tp)) - {type(None)} or {tp}
        if args & {int, float}:
            kind = float if float in args else int
            out.append((f.name, kind, f.metadata.get("range")))
    return out


FIELDS = [
    pytest.param(cls, name, kind, rng, id=f"{cls.__name__}.{name}")
    for cls in CONFIG_CLASSES
    for name, kind, rng in _numeric_fields(cls)
]


def _bad_values(kind: type, rng: Range) -> list[Any]:
    """nan, inf, -1, 0, huge, below / above the range, wrong types: those outside ``rng``."""
    candidates: list[Any] = [-1, 0, 10**30, 2**64, rng.high * 10 + 1, "abc", [1], {"a": 1}, True]
    if rng.low_open:
        candidates.append(rng.low)
    else:
        candidates.append(rng.low - 1 if kind is int else rng.low - 1e-6 * max(1, abs(rng.low)))
    if rng.high_open:
        candidates.append(rng.high)
    if kind is int:
        candidates += [2.5, 64.0, float("nan"), "3"]
    else:
        candidates += [float("nan"), float("inf"), -float("inf"), 1e300, -1e300, "nan", "1e400"]
    out = []
    for v in candidates:
        numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
        if kind is int and numeric and isinstance(v, float) and v.is_integer():
            out.append(v)  # 64.0 is not an integer field's type
        elif numeric and (kind is float or isinstance(v, int)) and math.isfinite(v) and v in rng:
            continue  # a good value: not part of the sweep
        else:
            out.append(v)
    return out


def test_the_known_config_classes_are_found() -> None:
    names = {c.__name__ for c in CONFIG_CLASSES}
    assert {"EncoderConfig", "GANConfig", "FlowConfig", "EvalConfig", "SweepConfig"} <= names
    assert sum(1 for p in FIELDS) >= 60  # every numeric field of all of them


@pytest.mark.parametrize("cls,name,kind,rng", FIELDS)
def test_every_numeric_field_declares_a_range(cls: type, name: str, kind: type, rng: Any) -> None:
    assert isinstance(rng, Range), (
        f"{cls.__name__}.{name} has no declared range: declare it with dimgen.config.bounded()"
    )
    default = getattr(cls(), name)
    assert default in rng


@pytest.mark.parametrize("cls,name,kind,rng", FIELDS)
def test_bad_values_of_every_numeric_field_are_refused_naming_it(
    cls: type, name: str, kind: type, rng: Range
) -> None:
    bad = _bad_values(kind, rng)
    assert len(bad) >= 10
    for value in bad:
        # through the Python API (a config built directly) ...
        with pytest.raises(ConfigError, match=rf"\b{name}\b") as info:
            validate(cls(**{name: value}), cls)
        assert "\n" not in str(info.value)
        # ... and through a YAML file / --set (strings that parse as numbers are read as numbers)
        with pytest.raises(ConfigError, match=rf"\b{name}\b"):
            from_dict(cls, {name: value}, source="options")


@pytest.mark.parametrize("cls,name,kind,rng", FIELDS)
def test_the_ends_of_each_closed_range_are_accepted(
    cls: type, name: str, kind: type, rng: Range
) -> None:
    for end, is_open in ((rng.low, rng.low_open), (rng.high, rng.high_open)):
        if is_open:
            continue
        try:
            validate(cls(**{name: end}), cls)
        except ConfigError as exc:  # only a cross-field rule may object, and it names the field
            assert name in str(exc) or "eval_samples" in str(exc) or "n_test" in str(exc)


def test_a_config_class_added_later_is_checked_without_registering_anything() -> None:
    @dataclass
    class FutureConfig(RunConfig):
        steps: int = bounded(10, 1, 100)
        rate: float = bounded(0.5, 0.0, 1.0, low_open=True)

    validate(FutureConfig(), FutureConfig)
    for data, field_name in (
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"rate": math.nan}, "rate"),
        ({"rate": 0.0}, "rate"),
        ({"seed": -1}, "seed"),  # inherited from RunConfig
        ({"seed": 2**64}, "seed"),
        ({"threads": -1}, "threads"),
    ):
        with pytest.raises(ConfigError, match=field_name):
            validate(FutureConfig(**data), FutureConfig)
    assert from_dict(FutureConfig, {"rate": "1e-1"}).rate == 0.1


def test_a_numeric_field_without_a_range_is_caught_by_the_sweep() -> None:
    @dataclass
    class Forgetful:
        steps: int = 10

    ((name, kind, rng),) = _numeric_fields(Forgetful)
    assert (name, kind, rng) == ("steps", int, None)  # test_every_numeric_field_... would fail


def test_a_default_outside_its_range_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="outside"):
        bounded(0, 1, 10)


# ---------------------------------------------------------------------------------------------
# the reproductions of issue 10, through the library


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"weight_decay": ".nan"}, "weight_decay"),
        ({"weight_decay": ".inf"}, "weight_decay"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"dim": 10000}, "dim"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"batch_size": 1}, "batch_size"),
        ({"batch_size": 4, "devices": 4}, "1 sample per process"),
    ],
)
def test_encoder_reproductions(changes: dict[str, Any], needle: str) -> None:
    from dimgen.cli.options import parse_sets

    sets = tuple(f"{k}={v}" for k, v in changes.items())
    with pytest.raises(ConfigError, match=needle):
        replace(EncoderConfig(), **parse_sets(sets))


def test_lr_written_without_a_dot_is_read_as_a_number() -> None:
    from dimgen.cli.options import parse_sets

    sets = parse_sets(("lr=1e-3", "weight_decay=5e-4", "sigma=1"))
    assert sets["lr"] == "1e-3"  # what PyYAML gives
    cfg = replace(EncoderConfig(), **sets)
    assert cfg.lr == 0.001 and cfg.weight_decay == 0.0005 and cfg.sigma == 1.0
    assert isinstance(cfg.lr, float)
    with pytest.raises(ConfigError, match="epochs: expected an integer"):
        replace(EncoderConfig(), **parse_sets(("epochs=1e3",)))  # integers take integers only


def test_gan_reproductions() -> None:
    from dimgen.gan.config import MIN_EVAL_SAMPLES, GANConfig

    with pytest.raises(ConfigError, match="eval_samples"):
        replace(GANConfig(), eval_samples=1)
    with pytest.raises(ConfigError, match=r"batch_size.*batch-norm"):
        replace(GANConfig(), batch_size=1)
    assert replace(GANConfig(), eval_samples=0).eval_samples == 0
    assert replace(GANConfig(), eval_samples=MIN_EVAL_SAMPLES).eval_samples == MIN_EVAL_SAMPLES


def _tiny_npz(path: Path, n: int, split: list[str] | None = None) -> str:
    x = np.random.default_rng(0).integers(0, 256, (n, 1, 8, 8)).astype(np.uint8)
    arrays: dict[str, Any] = {"x": x, "y": np.arange(n) % 2}
    if split is not None:
        arrays["split"] = np.array(split)
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_a_data_set_too_small_for_its_held_out_split_is_refused_before_training(
    tmp_path: Path,
) -> None:
    from dimgen.infomax.trainer import train_encoder

    data = _tiny_npz(tmp_path / "five.npz", 5)  # test_fraction 0.2: one held-out sample
    with pytest.raises(DataError, match=r"1 held-out sample.*MI estimate needs at least 2"):
        train_encoder(EncoderConfig(data=data, epochs=1), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_empty_training_split_is_refused_before_training(tmp_path: Path) -> None:
    from dimgen.infomax.trainer import train_encoder

    cfg = replace(EncoderConfig(), test_fraction=0.999999, epochs=1)
    with pytest.raises(DataError, match=r"0 training sample.*test_fraction 0\.999999"):
        train_encoder(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def quick_encoder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dimgen.infomax.trainer import train_encoder

    out = tmp_path_factory.mktemp("runs") / "enc"
    train_encoder(EncoderConfig(epochs=2, seed=0), out)
    return out


def test_gan_data_too_small_is_refused_before_training(
    quick_encoder_run: Path, tmp_path: Path
) -> None:
    from dimgen.gan import GANConfig, train_gan

    one_train = _tiny_npz(tmp_path / "a.npz", 12, ["train"] + ["test"] * 11)
    cfg = GANConfig(encoder_run=str(quick_encoder_run), data=one_train, steps=2, device="cpu")
    with pytest.raises(DataError, match=r"1 training image.*batch-norm"):
        train_gan(cfg, tmp_path / "g1")
    few_test = _tiny_npz(tmp_path / "b.npz", 12, ["train"] * 9 + ["test"] * 3)
    cfg = dataclasses.replace(cfg, data=few_test)
    with pytest.raises(DataError, match=r"3 held-out image.*eval_samples=0"):
        train_gan(cfg, tmp_path / "g2")
    assert not (tmp_path / "g1").exists() and not (tmp_path / "g2").exists()


def test_the_smallest_evaluation_allowed_completes(quick_encoder_run: Path, tmp_path: Path) -> None:
    from dimgen.gan import GANConfig, train_gan
    from dimgen.gan.config import MIN_EVAL_SAMPLES

    cfg = GANConfig(encoder_run=str(quick_encoder_run), steps=2, batch_size=2, device="cpu",
                    classifier_epochs=1, eval_samples=MIN_EVAL_SAMPLES, sample_every=0)  # fmt: skip
    run = train_gan(cfg, tmp_path / "g")
    assert (tmp_path / "g" / "run.json").is_file()
    assert 0.0 <= run.metrics["conditional_consistency"] <= 100.0
    assert math.isfinite(run.metrics["fid_dimgen_classifier_conditional"])


# ---------------------------------------------------------------------------------------------
# Python API: wrong types are dimgen errors (issue 16)


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda: EncoderConfig(sigma="0.2"), "sigma: expected a number"),
        (lambda: EncoderConfig(epochs=2.5), "epochs: expected an integer"),
        (lambda: EncoderConfig(batch_size=64.0), "batch_size: expected an integer"),
        (lambda: EncoderConfig(amp="yes"), "amp: expected true/false"),
        (lambda: EncoderConfig(prior=1), "prior: expected a string"),
        (lambda: EncoderConfig(prior="laplace"), "prior must be one of gaussian, uniform"),
        (lambda: {"sigma": 0.2}, "expected a config of type EncoderConfig, got dict"),
        (lambda: None, "expected a config of type EncoderConfig, got NoneType"),
    ],
)
def test_train_encoder_refuses_wrong_types_before_anything(
    make: Any, needle: str, tmp_path: Path
) -> None:
    from dimgen.infomax.trainer import train_encoder

    with pytest.raises(ConfigError, match=needle):
        train_encoder(make(), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_other_entry_points_refuse_a_dict_or_wrong_types(tmp_path: Path) -> None:
    from dimgen.flows import transform_codes
    from dimgen.gan import GANConfig, train_gan
    from dimgen.infomax.sweep import run_sweep

    with pytest.raises(ConfigError, match="GANConfig, got dict"):
        train_gan({"encoder_run": "x"}, tmp_path / "g")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="steps: expected an integer"):
        train_gan(GANConfig(encoder_run="x", steps=10.0), tmp_path / "g")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="FlowConfig, got dict"):
        transform_codes("x", "laplace", config={"steps": 1}, out=tmp_path / "f")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="runs: expected an integer"):
        run_sweep(EncoderConfig(), [0.1], runs=2.5, out=tmp_path / "s")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="runs must lie in"):
        run_sweep(EncoderConfig(), [0.1], runs=10**6, out=tmp_path / "s")
    codes = np.random.default_rng(0).standard_normal((100, 2))
    with pytest.raises(ConfigError, match="EvalConfig, got dict"):
        dimgen.evaluate(codes, config={"alpha": 0.1})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="alpha: expected a number"):
        dimgen.evaluate(codes, alpha="0.1x")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"codes": [[0.1, 0.2], [0.3]]}, "codes must be a rectangular array.*ragged"),
        ({"codes": np.zeros((50, 2)), "labels": [[1], [2, 3]]}, "labels must be a rectangular"),
        ({"codes": np.zeros((50, 2)), "split": [["train"], []]}, "split must be a rectangular"),
        ({"codes": [["a", "b"], ["c", "d"]]}, "codes must be numeric"),
    ],
)
def test_evaluate_refuses_ragged_input(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(DataError, match=needle):
        dimgen.evaluate(**kwargs)


def test_tokenizer_refuses_ragged_input_and_bad_counts(quick_encoder_run: Path) -> None:
    from dimgen.infomax.tokenizer import Tokenizer

    tok = Tokenizer.from_pretrained(quick_encoder_run)
    ragged = [[0.0] * 64, [0.0] * 63]
    with pytest.raises(DataError, match=r"inputs must be a rectangular array.*ragged"):
        tok.encode(ragged)
    assert tok.encode([[0.5] * 64, [0.25] * 64]).shape == (2, 2)  # a rectangular list is fine
    with pytest.raises(DataError, match="codes must be a rectangular array"):
        tok.quantize([[0.1, 0.2], [0.3]])
    with pytest.raises(DataError, match="batch_size must be >= 1"):
        tok.encode([[0.5] * 64], batch_size=0)
    for n, err, needle in (
        (2.5, DataError, "n must be an integer >= 1, got 2.5"),
        ("3", DataError, "n must be an integer"),
        (True, DataError, "n must be an integer"),
        (0, DataError, "n must be >= 1"),
    ):
        with pytest.raises(err, match=needle):
            tok.sample_prior(n)  # type: ignore[arg-type]
    for seed in (-1, 2**64, 1.5, "0"):
        with pytest.raises(ConfigError, match="seed"):
            tok.sample_prior(3, seed=seed)  # type: ignore[arg-type]
    assert tok.sample_prior(np.int64(3), seed=np.uint64(2**64 - 1)).shape == (3, 2)


def test_count_and_seed_helpers() -> None:
    assert check_count(np.int32(4)) == 4 and check_seed(None) is None
    assert check_seed(2**64 - 1) == 2**64 - 1
    with pytest.raises(DataError, match="k must be"):
        check_count(1.0, "k")
    with pytest.raises(ConfigError, match="seed"):
        check_seed(False)


def test_every_dimgen_error_here_is_a_value_error_for_callers_that_catch_that() -> None:
    assert issubclass(ConfigError, ValueError) and issubclass(DataError, ValueError)
    assert issubclass(ConfigError, DimgenError)


# ---------------------------------------------------------------------------------------------
# the CLI: one line, exit 2, before torch is imported


_WRAPPER = f"""
import json, sys
sys.argv = ["dimgen", *json.loads(sys.argv[1])]
from dimgen.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
print(json.dumps({{"code": code, "heavy": heavy}}))
"""

CLI_CASES = {
    "encode weight_decay=.nan": (
        ["encode", "--out", "{tmp}/r", "--set", "weight_decay=.nan"],
        "weight_decay must be a finite number",
    ),
    "encode weight_decay=.inf": (
        ["encode", "--out", "{tmp}/r", "--set", "weight_decay=.inf"],
        "weight_decay must be a finite number",
    ),
    "encode --set seed=-1": (["encode", "--out", "{tmp}/r", "--set", "seed=-1"], "seed must lie"),
    "encode --dim 10000": (["encode", "--out", "{tmp}/r", "--dim", "10000"], "dim must lie in"),
    "encode test_fraction=1": (
        ["encode", "--out", "{tmp}/r", "--set", "test_fraction=1"],
        "test_fraction must lie in (0, 1)",
    ),
    "train-gan --batch-size 1": (
        ["train-gan", "{tmp}/enc", "--out", "{tmp}/g", "--batch-size", "1"],
        "batch_size must lie in [2,",
    ),
    "train-gan eval_samples=1": (
        ["train-gan", "{tmp}/enc", "--out", "{tmp}/g", "--set", "eval_samples=1"],
        "eval_samples must be 0",
    ),
    "train-gan unknown key": (
        ["train-gan", "{tmp}/enc", "--out", "{tmp}/g", "--set", "bogus=1"],
        "unknown key(s) 'bogus'",
    ),
    "train-gan lr_g=.nan": (
        ["train-gan", "{tmp}/enc", "--out", "{tmp}/g", "--set", "lr_g=.nan"],
        "lr_g must be a finite number",
    ),
    "train-gan --steps 2.5": (
        ["train-gan", "{tmp}/enc", "--out", "{tmp}/g", "--set", "steps=2.5"],
        "steps: expected an integer",
    ),
    "flow knn_k=0": (
        ["flow", "{tmp}/enc", "--out", "{tmp}/f", "--set", "knn_k=0"],
        "knn_k must lie in",
    ),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_refuses_bad_values_in_one_line_before_torch(case: str, tmp_path: Path) -> None:
    args, needle = CLI_CASES[case]
    args = [a.format(tmp=tmp_path) for a in args]
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    lines = proc.stderr.strip().splitlines()
    assert result["code"] == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert needle in lines[0], lines[0]
    assert result["heavy"] == [], f"{case}: imported {result['heavy']} before refusing"
    assert not list(tmp_path.iterdir()), "an argument error left files behind"


def test_cli_refuses_a_five_sample_data_set_before_training(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from dimgen.cli import cli

    data = _tiny_npz(tmp_path / "five.npz", 5)
    res = CliRunner().invoke(cli, ["encode", "--data", data, "--out", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    assert "held-out" in res.output and res.output.count("\n") == 1
    assert not (tmp_path / "r").exists()
