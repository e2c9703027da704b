"""``dimgen flow`` through click's CliRunner: happy paths and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from dimgen.cli import cli

FAST = [
    "--layers",
    "1",
    "--hidden",
    "8",
    "--steps",
    "20",
    "--set",
    "n_train=1000",
    "--set",
    "n_test=300",
]


@pytest.fixture(scope="module")
def src(make_encoder_run):
    codes = np.random.default_rng(0).normal(size=(400, 2))
    return make_encoder_run(codes, "gaussian", bound=0.25)


def _run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_exact_target_writes_a_flow_run(src, tmp_path) -> None:
    res = _run("flow", src, "--to", "laplace(scale=2)", "--out", tmp_path / "lap")
    assert res.exit_code == 0, res.output
    assert "exact map gaussian -> laplace(scale=2)" in res.output
    assert "KL bound 0.250 nats [bound on the noisy codes, KL(T#(codes + Z)" in res.output
    assert "[estimate]" in res.output
    rec = json.loads((tmp_path / "lap" / "run.json").read_text())
    assert rec["kind"] == "flow" and rec["complete"] is True
    assert rec["spec"]["target"] == "laplace(scale=2)" and rec["spec"]["method"] == "exact"
    metrics = json.loads((tmp_path / "lap" / "metrics.json").read_text())
    assert metrics["kl_upper_bound_nats"] == 0.25 and metrics["round_trip_max_abs_error"] < 1e-10


def test_trained_flow_and_samples_target(src, tmp_path) -> None:
    res = _run("flow", src, "--to", "mixture:3", "--method", "maf", *FAST, "--out", tmp_path / "m")
    assert res.exit_code == 0, res.output
    assert "maf flow gaussian -> mixture:3" in res.output and "held-out NLL" in res.output
    assert (tmp_path / "m" / "flow.safetensors").is_file()
    samples = tmp_path / "t.npz"
    np.savez(samples, samples=np.random.default_rng(1).uniform(-1, 1, size=(500, 2)))
    res = _run("flow", src, "--to-samples", samples, *FAST, "--out", tmp_path / "s")
    assert res.exit_code == 0, res.output
    assert "rqs flow gaussian -> samples:" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "weibull"], "error: unknown target law 'weibull'"),
        (
            ["--to", "laplace(scale=oops)"],
            "error: target 'laplace(scale=oops)': scale='oops' is not a number",
        ),
        (["--to", "mixture:8", "--method", "exact"], "no exact elementwise map"),
        ([], "error: give exactly one target"),
        (["--to", "laplace", "--set", "layer=3"], "unknown key(s) 'layer'"),
        (["--to", "mixture:8", "--steps", "0"], "steps must lie in [1, "),
        # options the method would ignore are refused, not silently dropped
        (
            ["--to-codes", "--components", "8"],
            "--components applies to --method gmm only; this run uses --method auto",
        ),
        (
            ["--to-codes", "--method", "gmm", "--steps", "100"],
            "--steps applies to a trained flow; --method gmm is a Gaussian mixture fitted by EM",
        ),
        (
            ["--to-codes", "--method", "gmm", "--set", "lr=0.1"],
            "--set lr applies to a trained flow",
        ),
        (
            ["--to-codes", "--method", "gmm", "--set", "blocks=2"],
            "--set blocks applies to a trained flow",
        ),
        (
            ["--to", "uniform", "--method", "exact", "--layers", "2"],
            "--layers applies to a trained flow; --method exact is an exact map",
        ),
        (
            ["--to", "mixture:3", "--method", "maf", "--bins", "4"],
            "--bins applies to --method rqs only; this run uses --method maf",
        ),
    ],
)
def test_bad_options_give_one_line(src, tmp_path, args: list[str], message: str) -> None:
    res = _run("flow", src, *args, "--out", tmp_path / "x")
    assert res.exit_code == 2
    assert message in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert not (tmp_path / "x").exists()


def test_bad_inputs_give_one_line(src, tmp_path, make_encoder_run) -> None:
    wrong = tmp_path / "w.npz"
    np.savez(wrong, x=np.zeros((100, 5)))
    res = _run("flow", src, "--to-samples", wrong, "--out", tmp_path / "a")
    assert res.exit_code == 2
    assert "target samples have dimension 5, but the codes have dimension 2" in res.output
    res = _run("flow", tmp_path / "missing", "--to", "uniform", "--out", tmp_path / "b")
    assert res.exit_code == 2 and "error: no such run folder" in res.output
    res = _run("flow", src, "--to", "uniform")
    assert res.exit_code == 2 and "Missing option '--out'" in res.output
    outside = make_encoder_run(np.full((40, 2), 1.5), "uniform")
    res = _run("flow", outside, "--to", "gaussian", "--out", tmp_path / "c")
    assert res.exit_code == 2 and "outside [0, 1], the support of the uniform prior" in res.output
    _run("flow", src, "--to", "uniform", "--out", tmp_path / "d")
    res = _run("flow", tmp_path / "d", "--to", "gaussian", "--out", tmp_path / "e")
    assert res.exit_code == 2 and "is a 'flow' run folder; expected encoder" in res.output


@pytest.mark.parametrize("method", ["maf", "rqs"])
def test_zuko_backend_writes_a_run_that_loads_and_inverts(src, tmp_path, method: str) -> None:
    pytest.importorskip("zuko")
    import torch

    from dimgen.flows import load_prior

    out = tmp_path / method
    res = _run("flow", src, "--to", "mixture:3", "--method", method, "--backend", "zuko", *FAST,
               "--out", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["round_trip_max_abs_error"] < 1e-8
    prior = load_prior(out)  # rebuilt from the arch record: a zuko flow again
    assert type(prior.transform).__name__ == "ZukoBackend"
    z = prior.sample(64, seed=0)
    codes = prior.to_source(z, dtype=torch.float64)
    assert torch.allclose(prior.forward(codes), z.double(), atol=1e-6)
    assert torch.isfinite(prior.log_prob(z)).all()


def test_unknown_backend_is_one_line(src, tmp_path) -> None:
    res = _run(
        "flow", src, "--to", "mixture:3", "--set", "backend=normflows", "--out", tmp_path / "x"
    )
    assert res.exit_code == 2 and "backend must be one of nflows, zuko" in res.output
    assert not (tmp_path / "x").exists()
