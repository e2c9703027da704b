"""A newcomer's first hour (issue #25): smoke runs that are quick on any data and say so in
every artefact, library calls that are not silent, and messages that point the way."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from dimgen.cli import cli

from dimgen.config import EncoderConfig
from dimgen.errors import ConfigError, RunFolderError
from dimgen.infomax.trainer import train_encoder

# --- smoke runs: steps and data are capped, not epochs; every artefact says so -----------------


def test_smoke_caps_steps_and_data_not_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Digits at batch 16 is 89 steps an epoch: 3 smoke epochs were 267 steps on all 1,438
    training images; a smoke run on MNIST took minutes. Now: at most 30 steps, 1,024 images."""
    from dimgen.training import smoke

    monkeypatch.setenv("DIMGEN_SMOKE", "1")
    run = train_encoder(EncoderConfig(epochs=50, batch_size=16), tmp_path / "enc", progress=False)
    m = run.metrics
    assert m["n_train"] == smoke.MAX_TRAIN == 1024 and m["n_test"] <= smoke.MAX_TEST
    assert m["epochs"] == 3 and m["steps_per_epoch"] == 10 and m["steps"] == 30
    assert len(run.codes) == m["n_train"] + m["n_test"]  # codes of the capped data only
    mark = json.loads((tmp_path / "enc" / "run.json").read_text())["smoke"]
    assert mark["max_train"] == 1024 and mark["max_steps"] == 30
    first = (tmp_path / "enc" / "report.md").read_text().splitlines()[0]
    assert first.startswith("> **Smoke run**") and "1,024 training" in first


def test_smoke_caps_nothing_when_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIMGEN_SMOKE", "0")
    run = train_encoder(EncoderConfig(epochs=1, batch_size=16), None, progress=False)
    assert run.metrics["n_train"] == 1438 and run.metrics["steps"] == 89


def test_smoke_sweep_marks_every_artefact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """report.md, sweep.csv, sweep_summary.csv, run.json and the figure's title all say smoke."""
    import dimgen.plots
    from dimgen.infomax.sweep import run_sweep

    titles: list[str] = []
    real = dimgen.plots.plot_sweep

    def spy(*args: Any, **kwargs: Any) -> Any:
        titles.append(kwargs["title"])
        return real(*args, **kwargs)

    monkeypatch.setattr(dimgen.plots, "plot_sweep", spy)
    monkeypatch.setenv("DIMGEN_SMOKE", "1")
    out = tmp_path / "sweep"
    res = run_sweep(EncoderConfig(epochs=2), [1.0], runs=5, out=out, progress=False)
    assert len(res.rows) == 2  # 2 of 5 runs per level
    assert (out / "report.md").read_text().startswith("> **Smoke run**")
    for name in ("sweep.csv", "sweep_summary.csv"):
        rows = list(csv.DictReader((out / name).open()))
        assert rows and all(r["smoke"] == "1" for r in rows), name
    assert json.loads((out / "run.json").read_text())["smoke"]["configured"] == 5
    assert titles and titles[0].startswith("SMOKE RUN")


def test_smoke_train_diffusion_says_the_steps_it_ran(
    digits_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It printed "2000 steps in 4 s" after 30 steps."""
    pytest.importorskip("diffusers")
    monkeypatch.setenv("DIMGEN_SMOKE", "1")
    out = tmp_path / "diff"
    res = CliRunner().invoke(cli, [
        "train-diffusion", str(digits_run), "--out", str(out), "--quiet", "--steps", "2000",
        "--set", "eval_samples=0", "--set", "sample_every=0", "--set", "sample_steps=2",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert " 30 steps in " in res.output and "[smoke run (DIMGEN_SMOKE): not results]" in res.output
    assert json.loads((out / "metrics.json").read_text())["steps"] == 30


# --- no silent phase from Python ------------------------------------------------------------------


def test_library_training_shows_progress_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """train_encoder(...) printed nothing for 69 s; like the CLI it now shows a bar and phases."""
    train_encoder(EncoderConfig(epochs=2), tmp_path / "a")
    err = capsys.readouterr().err
    assert "encode: [1/4]" in err and "encode: [4/4]" in err and "step" in err  # phases, bar
    train_encoder(EncoderConfig(epochs=2), tmp_path / "b", progress=False)
    assert capsys.readouterr().err == ""


class _Terminal:
    """A stderr that says it is a terminal, and keeps what was written."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_the_set_up_before_the_bar_is_announced_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data, models and the optimiser's first import: 5.5 s of silence before the bar under load.
    On a terminal a line says so; if the set-up refuses the input, the line is erased, so the
    refusal stays one line (a pipe or a log never sees it)."""
    import numpy as np

    from dimgen.errors import DataError

    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    train_encoder(EncoderConfig(epochs=1), tmp_path / "a")
    head = "encode: setting up: data, models, optimisers ..."
    assert term.text.startswith(head)
    assert "\r\033[Kencode: setting up: data, models, optimisers done (" in term.text
    assert term.text.index("done (") < term.text.index("step")
    np.savez(tmp_path / "five.npz", x=np.random.default_rng(0).random((5, 8, 8)))
    term.text = ""
    with pytest.raises(DataError):
        train_encoder(EncoderConfig(data=f"npz:{tmp_path / 'five.npz'}"), tmp_path / "b")
    assert term.text == head + "\r\033[K"  # written, then erased: nothing left on the screen


def test_flow_shows_progress_by_default(
    digits_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dimgen.flows.config import FlowConfig
    from dimgen.flows.runs import transform_codes

    cfg = FlowConfig(steps=5)
    transform_codes(digits_run, "mixture:4", config=cfg)
    assert "flow" in capsys.readouterr().err
    transform_codes(digits_run, "mixture:4", config=cfg, progress=False)
    assert capsys.readouterr().err == ""


def test_an_epoch_bar_moves_within_the_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trainer whose unit is an epoch of several steps moves the bar per step (tick)."""
    import tqdm.auto

    from dimgen.training import CheckpointState, Context, Fitted, Trainer, fit

    bars: list[Any] = []

    class Bar:
        def __init__(self, total: int, initial: int = 0, **kwargs: Any) -> None:
            self.total, self.n, self.updates = total, initial, []
            bars.append(self)

        def update(self, n: int = 1) -> None:
            self.n += n
            self.updates.append(n)

        def set_postfix(self, *args: Any, **kwargs: Any) -> None:
            pass

        def close(self) -> None:
            pass

    class Epochs(Trainer):
        kind, unit, label = "toy", "epoch", "toy"

        def __init__(self) -> None:
            self.config, self.total, self.substeps = None, 3, 4

        def setup(self, ctx: Context) -> CheckpointState:
            return CheckpointState({})

        def step(self, index: int) -> dict[str, torch.Tensor]:
            for _ in range(self.substeps):
                self.tick()
            return {"loss": torch.tensor(1.0)}

        def finish(self, fitted: Fitted, out: Path | None) -> None:
            return None

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    fit(Epochs(), torch.device("cpu"), None, progress=True)
    (bar,) = bars
    assert bar.total == 12 and bar.n == 12
    assert bar.updates.count(1) == 12  # one move per optimiser step, not one per epoch


def test_evaluate_announces_its_phases(digits_run: Path) -> None:
    res = CliRunner().invoke(cli, ["evaluate", str(digits_run), "--json", "--no-probes"])
    assert res.exit_code == 0, res.output
    for i in (1, 2):
        assert f"evaluate: [{i}/3] " in res.stderr
    quiet = CliRunner().invoke(cli, ["evaluate", str(digits_run), "--json", "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


# --- messages that point the way --------------------------------------------------------------


def test_a_mistyped_local_run_is_not_sent_to_the_hub(
    digits_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`runs/digitz` beside a `runs/` folder was reported as a Hub download failure."""
    from dimgen.infomax import hub
    from dimgen.infomax.tokenizer import Tokenizer

    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "digits").mkdir()
    monkeypatch.chdir(tmp_path)

    def no_hub(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("a local path went to the Hub")

    monkeypatch.setattr(hub, "snapshot_download", no_hub, raising=False)
    with pytest.raises(
        RunFolderError, match=r"no such run folder: runs/digitz; did you mean `runs/digits`\?"
    ):
        Tokenizer.from_pretrained("runs/digitz")
    with pytest.raises(RunFolderError, match=r"no such run folder: \./elsewhere/x"):
        Tokenizer.from_pretrained("./elsewhere/x")
    from dimgen.folders import looks_like_hub_id

    assert looks_like_hub_id("someone/dimgen-digits") and not looks_like_hub_id("runs/digits")


def _hit_ctrl_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_checkpoint: bool) -> Any:
    import dimgen.infomax.trainer as trainer_module

    out = tmp_path / "r"

    def interrupted(cfg: Any, target: Any, **kwargs: Any) -> None:
        Path(target).mkdir()
        (Path(target) / "config.yaml").write_text("seed: 0\n")
        if with_checkpoint:
            (Path(target) / "checkpoint.safetensors").write_bytes(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "train_encoder", interrupted)
    return out, CliRunner().invoke(cli, ["encode", "--out", str(out)])


def test_ctrl_c_names_the_folder_and_the_resume_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, res = _hit_ctrl_c(tmp_path, monkeypatch, with_checkpoint=True)
    assert res.exit_code == 130
    assert f"{out} is incomplete; continue it with `dimgen encode --resume {out}`" in res.output


def test_ctrl_c_before_the_first_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, res = _hit_ctrl_c(tmp_path, monkeypatch, with_checkpoint=False)
    assert res.exit_code == 130
    assert "rerun the same command" in res.output and f"dimgen encode --resume {out}" in res.output


def test_ctrl_c_in_a_command_without_checkpoints(tmp_path: Path) -> None:
    from dimgen.folders import interrupted_message

    (tmp_path / "config.yaml").write_text("steps: 5\n")
    assert interrupted_message(tmp_path, "flow").endswith(
        "rerun the same command to write it again"
    )
    assert "--resume" not in interrupted_message(tmp_path, "flow")
    assert "rerun the same `dimgen sweep` command" in interrupted_message(tmp_path, "sweep")
    assert interrupted_message(None) == "interrupted"
    assert interrupted_message(None, None, "evaluate").startswith(
        "interrupted: dimgen evaluate stopped; files are written whole or not at all"
    )


_WRAPPER = """
import json, sys
from dimgen.cli import main
code = 0
try:
    main(json.loads(sys.argv[1]))
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "torch": "torch" in sys.modules}))
"""


def _refusal(args: list[str]) -> tuple[str, dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(args)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONWARNINGS": "ignore"})  # fmt: skip
    return proc.stderr.strip(), json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_used_out_says_what_it_holds_before_torch(digits_run: Path, tmp_path: Path) -> None:
    """Each refusal says what the folder is and a free name, without importing torch (8-19 s)."""
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    err, res = _refusal(["encode", "--out", str(foreign)])
    assert res == {"code": 2, "torch": False}
    assert "not a dimgen run" in err and f"e.g. {tmp_path / 'mine-2'}" in err
    err, res = _refusal(["train-gan", str(digits_run), "--out", str(digits_run)])
    assert res == {"code": 2, "torch": False}
    assert "a complete encoder run" in err and "choose another --out" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text("seed: 0\n")
    (broken / "checkpoint.safetensors").write_bytes(b"x")
    err, res = _refusal(["encode", "--out", str(broken)])
    assert res == {"code": 2, "torch": False}
    assert f"continue it with `dimgen encode --resume {broken}`" in err


def test_sample_refuses_a_wrong_out_before_torch_and_announces_its_work(
    digits_gan_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sample --out x.jpgg` was refused after torch and the run were loaded (2 s); a good
    command was silent for 5 s under load while it loaded the run and wrote the grid."""
    err, res = _refusal(["sample", str(digits_gan_run), "--unconditional", "--out", "x.jpgg"])
    assert res == {"code": 2, "torch": False}
    assert err == "error: --out must be a .png file, got x.jpgg"
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    out = tmp_path / "u.png"  # cli.main, not CliRunner: CliRunner replaces sys.stderr
    cli.main(
        ["sample", str(digits_gan_run), "--unconditional", "-n", "4", "--out", str(out)],
        standalone_mode=False,
    )
    assert out.is_file()
    what = f"sample: loading {digits_gan_run}, sampling and writing {out}"
    assert term.text.startswith(f"{what} ...\r\033[K{what} done (")


def test_an_incomplete_run_names_its_command(tmp_path: Path) -> None:
    from dimgen.io import read_run

    (tmp_path / "config.yaml").write_text("seed: 0\n")
    (tmp_path / "checkpoint.safetensors").write_bytes(b"x")
    with pytest.raises(RunFolderError, match=f"`dimgen encode --resume {tmp_path}`"):
        read_run(tmp_path, "encoder")


def test_an_incomplete_run_given_to_evaluate_names_its_own_command(tmp_path: Path) -> None:
    """`dimgen evaluate` (an encoder or a pretrain run) on an encoder run stopped before its
    first checkpoint said "rerun the same command" (evaluate again) and `dimgen <command>`."""
    from dimgen.config import EncoderConfig, save_config

    stuck = tmp_path / "stuck"
    stuck.mkdir()
    save_config(EncoderConfig(), stuck / "config.yaml")
    res = CliRunner().invoke(cli, ["evaluate", str(stuck)])
    assert res.exit_code == 2
    assert res.output == (
        f"error: {stuck} is an incomplete encoder run stopped before its first checkpoint: "
        f"rerun the command that wrote it (it replaces the folder), or `dimgen encode --resume "
        f"{stuck}` to start it again from its config\n"
    )


def test_each_kind_is_told_by_its_config_keys(tmp_path: Path) -> None:
    """CONFIG_MARKS: a key of exactly one resumable kind's config, so a folder without run.json
    still names its `--resume` command."""
    import dataclasses

    from dimgen.config import save_config
    from dimgen.diffusion.config import DiffusionConfig
    from dimgen.folders import CONFIG_MARKS, RESUME_COMMANDS, kind_from_config
    from dimgen.gan.config import GANConfig
    from dimgen.ssl.config import PretrainConfig

    classes = {"encoder": EncoderConfig, "gan": GANConfig, "diffusion": DiffusionConfig,
               "pretrain": PretrainConfig}  # fmt: skip
    assert set(CONFIG_MARKS) == set(RESUME_COMMANDS) == set(classes)
    for kind, cls in classes.items():
        owners = [k for k, c in classes.items()
                  if CONFIG_MARKS[kind] in {f.name for f in dataclasses.fields(c)}]  # fmt: skip
        assert owners == [kind]
        save_config(cls(), tmp_path / "config.yaml")
        assert kind_from_config(tmp_path) == kind
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    assert kind_from_config(tmp_path) is None


def test_a_misspelt_key_suggests_the_nearest() -> None:
    from dimgen.config import from_dict

    with pytest.raises(ConfigError, match=r"did you mean `sigma` for 'sigmaa'\?") as exc:
        from_dict(EncoderConfig, {"sigmaa": 0.3}, "preset.yaml")
    assert "known:" not in str(exc.value)  # not the list of every key
    with pytest.raises(ConfigError, match="known: "):
        from_dict(EncoderConfig, {"zzzzzz": 1}, "preset.yaml")


@pytest.mark.parametrize(
    ("source", "hint"),
    [
        ("mnistt", "did you mean `mnist`?"),
        ("digit:test", "did you mean `digits:test`?"),
        ("{tmp}/x.npz", "a file of arrays is `npz:{tmp}/x.npz`"),
        ("{tmp}", "a folder of images is `folder:{tmp}`"),
        ("imagenet", "(known: digits, mnist, fashion-mnist, cifar10, npz:PATH, folder:PATH)"),
    ],
)
def test_a_mistyped_data_source_points_at_the_right_one(
    tmp_path: Path, source: str, hint: str
) -> None:
    """`--data mnistt` listed the six sources; a path without `npz:` / `folder:` did too."""
    source, hint = source.format(tmp=tmp_path), hint.format(tmp=tmp_path)
    res = CliRunner().invoke(cli, ["encode", "--data", source, "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert (
        res.output
        == f"error: unknown data source {source!r}{'' if hint[0] == '(' else ';'} {hint}\n"
    )


def test_an_encoder_setting_on_a_generator_says_the_encoder_run_fixes_it() -> None:
    """`train-gan --set sigma=0.3` listed the GAN's 30 keys, as if `sigma` were a typo."""
    from dimgen.config import from_dict
    from dimgen.diffusion.config import DiffusionConfig
    from dimgen.gan.config import GANConfig

    for cls in (GANConfig, DiffusionConfig):
        with pytest.raises(ConfigError) as err:
            from_dict(cls, {"sigma": 0.3, "foo": 1}, "options")
        assert str(err.value) == (
            "options: 'sigma': encoder setting(s) (`dimgen encode`), fixed by the encoder run "
            "this run reads; train another encoder to change them (also unknown: 'foo')"
        )
    with pytest.raises(ConfigError, match=r"did you mean `steps` for 'stepz'"):
        from_dict(GANConfig, {"sigma": 0.3, "stepz": 3}, "options")  # a typo is a typo first


def test_sample_on_an_encoder_run_points_at_the_generators(
    digits_run: Path, tmp_path: Path
) -> None:
    res = CliRunner().invoke(
        cli, ["sample", str(digits_run), "--unconditional", "--out", str(tmp_path / "s.png")]
    )
    assert res.exit_code == 2
    assert "is an encoder run, not a generator" in res.output
    assert "dimgen train-gan" in res.output and "dimgen train-diffusion" in res.output


# --- one CLI vocabulary -------------------------------------------------------------------------


def _help(*args: str) -> str:
    res = CliRunner().invoke(cli, [*args, "--help"], terminal_width=200)
    assert res.exit_code == 0
    return res.output


def test_cli_speaks_alike() -> None:
    for cmd in ("sample", "evaluate-gan"):
        text = _help(cmd)
        assert "--guidance-scale" in text and "--guidance " not in text  # the old name: hidden
    assert "-n, --num-samples" in _help("sample")
    assert "-n, --num-images" in _help("evaluate-gan")
    for cmd in ("sample", "export", "evaluate", "probe"):
        assert "--quiet" in _help(cmd), cmd
    assert "required unless --resume" in _help("encode")
    assert "a derived run" not in _help("encode")
    assert "export folder to create" in _help("export")
    assert "sweep folder to create" in _help("sweep")
    assert "(also: ``dimgen evaluate-generator``)" not in _help("evaluate-generator")


def _collected_by_this_run(request: pytest.FixtureRequest) -> int | None:
    """The number of tests this pytest run collected, if it collected the whole suite (no path,
    -k, -m or --deselect narrowing it; under pytest-xdist each worker collects everything)."""
    config = request.config
    tests = Path(__file__).resolve().parent
    where = {(config.invocation_params.dir / a.split("::")[0]).resolve() for a in config.args}
    narrowed = config.option.keyword or config.option.markexpr or config.getoption("deselect")
    if where != {tests} or narrowed or config.getoption("lf", False):
        return None
    return len(request.session.items)


def test_the_readme_states_the_suites_size(request: pytest.FixtureRequest) -> None:
    """The README said nothing of the suite's length, then docs/newcomer.md said 1,070 tests when
    there were 1,282: the count it states stays within a quarter of what pytest collects (this
    run's own collection when it is the whole suite, else a --collect-only run)."""
    import re
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    stated = {
        page: int(m.group(1).replace(",", ""))
        for page in ("README.md", "docs/newcomer.md")
        if (m := re.search(r"([\d,]{3,}) tests", (repo / page).read_text()))
    }
    assert set(stated) == {"README.md", "docs/newcomer.md"}, stated
    collected = _collected_by_this_run(request)
    if collected is None:
        proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0",
                               "-p", "no:cacheprovider", str(repo / "tests")], cwd=repo,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        m = re.search(r"(\d+) tests? collected", proc.stdout)
        assert m, proc.stdout[-500:]
        collected = int(m.group(1))
    for page, n in stated.items():
        assert abs(n - collected) <= collected / 4, (
            f"{page} says {n} tests, pytest collects {collected}"
        )


def test_the_suite_runs_without_pytest_xdist() -> None:
    """CI failed with exit 4 in 6 s when pyproject's addopts carried ``-n auto`` and the machine
    had no pytest-xdist: the suite must run in one process without it (xdist is an extra)."""
    repo = Path(__file__).resolve().parents[1]
    test = "tests/test_config.py::test_digits_preset_is_the_default"
    alone = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "-p", "no:xdist", test], cwd=repo, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert alone.returncode == 0, alone.stdout[-800:] + alone.stderr[-800:]
    assert "1 passed" in alone.stdout and "bringing up nodes" not in alone.stdout


def test_conftest_spreads_the_suite_only_when_no_n_is_given() -> None:
    """tests/conftest.py's hook sets xdist's options as ``-n auto --maxprocesses 4 --dist
    loadfile`` would, and leaves a given ``-n`` / ``--dist`` alone (and does nothing in workers)."""
    from types import SimpleNamespace

    from conftest import MAX_WORKERS, pytest_cmdline_main

    def config(**option: Any) -> Any:
        defaults = {"numprocesses": None, "maxprocesses": None, "dist": "no"}
        plugins = SimpleNamespace(hasplugin=lambda name: name == "xdist")
        return SimpleNamespace(pluginmanager=plugins, option=SimpleNamespace(**defaults | option))

    plain = config()
    pytest_cmdline_main(plain)
    assert vars(plain.option) == {"numprocesses": "auto", "maxprocesses": MAX_WORKERS,
                                  "dist": "loadfile"}  # fmt: skip
    for given in ({"numprocesses": 0}, {"numprocesses": 3}, {"dist": "load"}):
        c = config(**given)
        pytest_cmdline_main(c)
        assert vars(c.option) == {"numprocesses": None, "maxprocesses": None, "dist": "no"} | given
    worker = config()
    worker.workerinput = {}
    pytest_cmdline_main(worker)
    assert worker.option.numprocesses is None
    absent = config()
    absent.pluginmanager = SimpleNamespace(hasplugin=lambda name: False)
    pytest_cmdline_main(absent)
    assert absent.option.numprocesses is None
