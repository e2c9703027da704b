"""Shared CLI options (one definition, one help text) and fast argument errors (no torch import,
one line, exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from dimgen.cli import cli
from dimgen.cli.options import SHARED_OPTIONS, parse_sets

from dimgen.errors import ConfigError

HEAVY = ("torch", "torchvision", "nflows", "sklearn", "matplotlib")
#: Commands that train something: they take every shared option.
TRAINING_COMMANDS = ("encode", "sweep", "train-gan")


def _shared_params(command: click.Command) -> dict[str, click.Option]:
    return {
        flag: p
        for p in command.params
        if isinstance(p, click.Option)
        for flag in p.opts
        if flag in SHARED_OPTIONS
    }


def _help(command: click.Command, param: click.Option) -> str:
    ctx = click.Context(command, info_name=command.name)
    record = param.get_help_record(ctx)
    assert record is not None
    return record[1]


def test_every_command_is_checked() -> None:
    expected = {"encode", "evaluate", "sweep", "flow", "train-gan", "sample", "evaluate-gan"}
    assert expected <= set(cli.commands)
    for name in cli.commands:
        assert _shared_params(cli.commands[name]), f"{name} has none of the shared options"


#: Shared options whose help is the command's own: --out (a run folder, a PNG, a JSON file,
#: an export folder ...) and --data (whose default is the encoder run's data for a generator).
PER_COMMAND_HELP = ("--out", "--data")


@pytest.mark.parametrize("flag", SHARED_OPTIONS)
def test_shared_options_have_one_help_text_and_default(flag: str) -> None:
    seen: dict[str, tuple[object, ...]] = {}
    for name, command in sorted(cli.commands.items()):
        param = _shared_params(command).get(flag)
        if param is None:
            continue
        parsed = command.make_context(name, [], resilient_parsing=True).params[param.name or ""]
        seen[name] = (param.help or "", parsed, param.name or "", _help(command, param))
    assert seen, f"no command has {flag}"
    if flag in PER_COMMAND_HELP:  # one option, but each command says what it writes / reads
        assert all(v[0] and v[1] is None for v in seen.values()), seen
        return
    shown = {v[3].removesuffix("  [required]") for v in seen.values()}  # as --help prints it
    assert len(shown) == 1, f"{flag} is shown differently: {shown}"
    seen = {k: v[:3] for k, v in seen.items()}
    assert len(set(seen.values())) == 1, f"{flag} differs between commands: {seen}"
    help_text, default, _ = next(iter(seen.values()))
    assert help_text and default in (None, False, ())  # the library supplies defaults, not click


@pytest.mark.parametrize("name", TRAINING_COMMANDS)
def test_training_commands_take_every_shared_option(name: str) -> None:
    assert set(_shared_params(cli.commands[name])) == set(SHARED_OPTIONS)


def test_the_shown_defaults_are_the_config_defaults() -> None:
    from dimgen.config import EncoderConfig

    cmd = cli.commands["encode"]
    params = _shared_params(cmd)
    assert f"[default: {EncoderConfig().seed}]" in _help(cmd, params["--seed"])
    assert f"[default: {EncoderConfig().device}]" in _help(cmd, params["--device"])
    assert f"[default: {EncoderConfig().data}]" in _help(cmd, params["--data"])


def test_parse_sets() -> None:
    assert parse_sets(("lr=0.001", "max-train=5", "data_root=~", "x=[1, 2]")) == {
        "lr": 0.001,
        "max_train": 5,
        "data_root": None,
        "x": [1, 2],
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_sets(("lr",))
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_sets(("lr=[1",))


# ---------------------------------------------------------------------------------------------
# argument errors come back before any heavy import

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

BAD_ARGUMENTS = {
    "missing --out": (["encode"], "--out is required"),
    "unknown --set key": (["encode", "--out", "{tmp}/r", "--set", "bogus=1"], "unknown key"),
    "--set without =": (["encode", "--out", "{tmp}/r", "--set", "lr"], "KEY=VALUE"),
    "missing config file": (
        ["encode", "--out", "{tmp}/r", "--config", "{tmp}/no.yaml"],
        "not found",
    ),
    "bad value": (["encode", "--out", "{tmp}/r", "--sigma", "-1"], "sigma"),
    "NaN value": (["encode", "--out", "{tmp}/r", "--set", "lr=.nan"], "lr"),
    "negative seed": (["encode", "--out", "{tmp}/r", "--seed", "-1"], "--seed"),
    "seed beyond 64 bits": (["encode", "--out", "{tmp}/r", "--seed", str(2**64)], "--seed"),
    "not an integer": (["encode", "--out", "{tmp}/r", "--dim", "two"], "--dim"),
    "unknown option": (["encode", "--out", "{tmp}/r", "--sigmaa", "1"], "--sigmaa"),
    "encode --encoder without --out": (["encode", "--encoder", "{tmp}/run"], "--out is required"),
    "encode --encoder to a non-npz": (
        ["encode", "--encoder", "{tmp}/run", "--data", "digits", "--out", "{tmp}/c.txt"],
        ".npz",
    ),
    "resume of nothing": (["encode", "--resume", "{tmp}/none"], "nothing to resume"),
    "sweep: unknown key": (["sweep", "--out", "{tmp}/s", "--set", "bogus=1"], "unknown key"),
    "sweep: bad alpha": (["sweep", "--out", "{tmp}/s", "--alpha", "2"], "alpha"),
    "evaluate: neither run nor codes": (["evaluate"], "give either"),
    "evaluate: bad alpha": (["evaluate", "{tmp}/run", "--alpha", "7"], "alpha"),
    "flow: missing --out": (["flow", "{tmp}/run"], "Missing option '--out'"),
    "flow: unknown key": (["flow", "{tmp}/run", "--out", "{tmp}/f", "--set", "bogus=1"], "unknown"),
    "flow: --set null for a value": (
        ["flow", "{tmp}/run", "--to-codes", "--out", "{tmp}/f", "--set", "components=null"],
        "--set: components: needs a value, got null (or nothing); it cannot be cleared",
    ),
    "train-gan: missing --out": (["train-gan", "{tmp}/run"], "--out"),
    "train-gan: missing config": (
        ["train-gan", "{tmp}/run", "--out", "{tmp}/g", "--config", "{tmp}/no.yaml"],
        "not found",
    ),
    "sample: no mode": (["sample", "{tmp}/run", "--out", "{tmp}/s.png"], "exactly one"),
    "sample: missing --out": (["sample", "{tmp}/run", "--unconditional"], "--out"),
    "evaluate-gan: n = 0": (["evaluate-gan", "{tmp}/run", "-n", "0"], "-n must be"),
    "train-diffusion: missing --out": (["train-diffusion", "{tmp}/run"], "--out"),
    "train-diffusion: unknown key": (
        ["train-diffusion", "{tmp}/run", "--out", "{tmp}/d", "--set", "bogus=1"],
        "unknown key",
    ),
    "train-diffusion: bad value": (
        ["train-diffusion", "{tmp}/run", "--out", "{tmp}/d", "--set", "p_uncond=1.5"],
        "p_uncond",
    ),
    "sample: negative guidance": (
        ["sample", "{tmp}/run", "--unconditional", "--guidance", "-1", "--out", "{tmp}/s.png"],
        "--guidance",
    ),
    "sample: negative --guidance-scale": (
        [
            "sample",
            "{tmp}/run",
            "--unconditional",
            "--guidance-scale",
            "-1",
            "--out",
            "{tmp}/s.png",
        ],
        "--guidance-scale must be >= 0",
    ),
    "sample: zero --truncation": (
        ["sample", "{tmp}/run", "--unconditional", "--truncation", "0", "--out", "{tmp}/s.png"],
        "--truncation must be a finite number > 0",
    ),
    "evaluate-gan: nan --truncation": (
        ["evaluate-gan", "{tmp}/run", "--truncation", "nan"],
        "--truncation must be a finite number > 0",
    ),
    "train-gan: mistyped run folder": (
        ["train-gan", "{tmp}/digitz", "--out", "{tmp}/g"],
        "no such run folder",
    ),
    "encode --encoder: mistyped run folder": (
        ["encode", "--encoder", "{tmp}/runs/digitz", "--data", "digits", "--out", "{tmp}/c.npz"],
        "no such run folder",
    ),
    "sample: mistyped run folder": (
        ["sample", "{tmp}/digitz", "--unconditional", "--out", "{tmp}/s.png"],
        "no such run folder",
    ),
    "evaluate: mistyped run folder": (["evaluate", "{tmp}/digitz"], "no such run folder"),
    "misspelt key: the nearest": (
        ["encode", "--out", "{tmp}/r", "--set", "sigmaa=1"],
        "did you mean `sigma` for 'sigmaa'?",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_argument_errors_are_one_line_exit_2_without_torch(case: str, tmp_path: Path) -> None:
    args, needle = BAD_ARGUMENTS[case]
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
    assert needle in lines[0]
    assert result["heavy"] == [], f"{case}: imported {result['heavy']} before refusing"
    assert not list(tmp_path.iterdir()), "an argument error left files behind"


def test_python_m_dimgen_cli_reports_an_argument_error_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dimgen.cli",
            "encode",
            "--set",
            "bogus=1",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "bogus" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_import_and_parsing_need_no_torch() -> None:
    code = (
        "import sys, dimgen.cli\n"
        "from dimgen.cli import cli\n"
        "for name, cmd in cli.commands.items():\n"
        "    cmd.make_context(name, [], resilient_parsing=True)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_closed_stdout_pipe_is_not_an_internal_error(tmp_path: Path) -> None:
    """`dimgen evaluate-generator RUN | head` closed the pipe early and printed "internal error:
    BrokenPipeError ... (this is a dimgen bug)"; a reader that stops reading is no bug: nothing
    on stderr, exit 141 (128 + SIGPIPE, what a shell reports for `yes | head`)."""
    import numpy as np

    np.savez(tmp_path / "c.npz", codes=np.random.default_rng(0).standard_normal((200, 2)))
    args = ["evaluate", "--codes", str(tmp_path / "c.npz"), "--no-plots", "--no-probes", "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dimgen.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the first line is written
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141, err
    assert err == ""


def test_set_null_clears_an_optional_field_and_is_refused_where_a_value_is_needed() -> None:
    """``--set KEY=null`` is applied (it was dropped, leaving the config file's value)."""
    from dimgen.cli.options import parse_sets, with_sets

    from dimgen.errors import ConfigError
    from dimgen.gan.config import GANConfig

    cfg = GANConfig(data_root="/data/elsewhere", steps=7)
    cleared = with_sets(cfg, parse_sets(("data_root=null",)))
    assert cleared.data_root is None and cleared.steps == 7
    assert with_sets(cfg, {}) is cfg
    with pytest.raises(ConfigError, match="--set: steps: needs a value, got null"):
        with_sets(cfg, parse_sets(("steps=null",)))
