"""Every command's --help speaks alike: every option has help text, the library's defaults are
shown (read from the config dataclasses), and required options are marked [required]."""

from __future__ import annotations

import dataclasses
import re

import click
import pytest
from click.testing import CliRunner
from dimgen.cli import cli

from dimgen.config import EncoderConfig
from dimgen.diagnostics.settings import EvalConfig
from dimgen.flows.config import FlowConfig
from dimgen.gan.config import GANConfig

#: The config dataclass whose defaults a command's options stand for.
CONFIGS: dict[str, type] = {
    "encode": EncoderConfig,
    "sweep": EncoderConfig,
    "evaluate": EvalConfig,
    "flow": FlowConfig,
    "train-gan": GANConfig,
}


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_help_shows_help_defaults_and_required(name: str) -> None:
    command = cli.commands[name]
    res = CliRunner().invoke(cli, [name, "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    ctx = click.Context(command, info_name=name, parent=click.Context(cli), show_default=True)
    fields = {f.name: f.default for f in dataclasses.fields(CONFIGS.get(name, object))} if (
        name in CONFIGS
    ) else {}  # fmt: skip
    for param in command.params:
        if not isinstance(param, click.Option) or param.hidden:  # e.g. an old name kept as alias
            continue
        record = param.get_help_record(ctx)
        assert record is not None and param.help, f"{name} {param.opts[0]}: no help text"
        shown = " ".join(record[1].split())
        assert shown in text, f"{name} {param.opts[0]}: not in --help"
        assert param.required == shown.endswith("[required]"), f"{name} {param.opts[0]}"
        if param.name in fields and not param.is_flag:
            default = fields[param.name]
            value = re.escape(str(default)) if default is not None else ".+"  # e.g. $DIMGEN_DATA
            pattern = rf"\[default: {value}[\];]"
            assert re.search(pattern, shown), f"{name} {param.opts[0]}: default {default}"


def test_required_options_are_enforced_with_one_line() -> None:
    res = CliRunner().invoke(cli, ["flow", "some-run", "--to", "uniform"])
    assert res.exit_code == 2
    assert "--out" in res.output and "Traceback" not in res.output
