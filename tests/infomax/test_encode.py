"""End-to-end `dimgen encode` on digits: run folder, Gaussian codes, informative codes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from dimgen.cli import cli

from dimgen.infomax.tokenizer import Tokenizer

ARTEFACTS = [
    "config.yaml",
    "encoder.safetensors",
    "codes.npz",
    "metrics.json",
    "codes.png",
    "report.md",
    "run.json",
]


def test_run_folder_is_complete(digits_run: Path) -> None:
    for name in ARTEFACTS:
        assert (digits_run / name).is_file(), name
    assert json.loads((digits_run / "run.json").read_text())["kind"] == "encoder"
    assert not list(digits_run.glob(".*.tmp"))


def test_metrics_are_consistent(digits_run: Path) -> None:
    m = json.loads((digits_run / "metrics.json").read_text())
    cap = 0.5 * 2 * np.log(1 + 1 / 0.2**2)
    assert m["capacity_nats"] == pytest.approx(cap)
    # a valid lower bound never exceeds the capacity (up to its sampling error)
    assert m["mi_lower_bound_nats"] <= cap + 2 * m["mi_lower_bound_stderr"]
    assert m["mi_lower_bound_nats"] > 1.0  # training made real progress
    assert m["kl_upper_bound_nats"] == pytest.approx(cap - m["mi_lower_bound_nats"])
    assert np.array(m["code_cov"]).shape == (2, 2)


def test_codes_are_near_standard_normal_and_informative(digits_run: Path) -> None:
    d = np.load(digits_run / "codes.npz")
    codes, labels, split = d["codes"], d["labels"], d["split"]
    assert set(np.unique(split)) == {"train", "test"}
    tr = codes[split == "train"]
    # the recalibrated normalisation holds exactly on the training data
    assert np.allclose(tr.mean(0), 0, atol=1e-3) and np.allclose((tr**2).mean(0), 1, atol=1e-3)
    te = codes[split == "test"]
    assert np.allclose(te.mean(0), 0, atol=0.2)
    cov = np.cov(te, rowvar=False)
    assert np.allclose(np.diag(cov), 1, atol=0.3) and abs(cov[0, 1]) < 0.3
    from sklearn.neighbors import KNeighborsClassifier

    acc = (
        KNeighborsClassifier(5).fit(tr, labels[split == "train"]).score(te, labels[split == "test"])
    )
    assert acc > 0.6  # chance is about 0.1


def test_tokenizer_reproduces_the_run_codes(digits_run: Path) -> None:
    from dimgen.data import load_data

    tok = Tokenizer.from_pretrained(digits_run)
    ds = load_data("digits")
    codes = tok.encode(ds.x_test)
    saved = np.load(digits_run / "codes.npz")
    assert np.allclose(codes.numpy(), saved["codes"][saved["split"] == "test"], atol=1e-5)
    assert tok.dim == 2 and tok.sample_prior(7, seed=1).shape == (7, 2)
    assert torch.equal(tok.sample_prior(3, seed=1), tok.sample_prior(3, seed=1))
    # uint8 and (N, H, W) inputs are accepted
    u8 = (ds.x_test[:4, 0] * 255).round().astype(np.uint8)
    assert tok.encode(u8).shape == (4, 2)


def test_encode_with_trained_encoder(digits_run: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((30, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "new.npz", x=x)
    out = tmp_path / "new-codes.npz"
    res = CliRunner().invoke(
        cli,
        [
            "encode",
            "--encoder",
            str(digits_run),
            "--data",
            f"npz:{tmp_path / 'new.npz'}",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    codes = np.load(out)["codes"]
    assert codes.shape == (30, 2)
    assert np.allclose(codes, Tokenizer.from_pretrained(digits_run).encode(x).numpy(), atol=1e-6)


def test_cli_trains_uniform_codes(tmp_path: Path) -> None:
    out = tmp_path / "u"
    res = CliRunner().invoke(
        cli,
        [
            "encode",
            "--prior",
            "uniform",
            "--eps",
            "0.25",
            "--set",
            "max_train=500",
            "--epochs",
            "3",
            "--quiet",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    codes = np.load(out / "codes.npz")["codes"]
    assert codes.min() >= 0 and codes.max() <= 1
    m = json.loads((out / "metrics.json").read_text())
    assert m["capacity_nats"] == pytest.approx(2 * np.log(1 + 1 / 0.5))
    assert m["n_train"] == 500


def check_fails(args: list[str], match: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    assert match in lines[0], lines[0]


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--sigma", "0"], "sigma"),
        (["--sigma", "-1"], "sigma"),
        (["--prior", "uniform", "--eps", "0.7"], "eps"),
        (["--eps", "0", "--prior", "uniform"], "eps"),
        (["--dim", "0"], "dim"),
        (["--data", "imagenet"], "unknown data source"),
        (["--data", "npz:/nonexistent.npz"], "not found"),
        (["--set", "sigmaa=0.3"], "unknown key"),
        (["--config", "/nonexistent.yaml"], "not found"),
    ],
)
def test_bad_input_one_line_exit_2_no_folder(tmp_path: Path, extra: list[str], match: str) -> None:
    out = tmp_path / "run"
    check_fails(["encode", *extra, "--out", str(out)], match, tmp_path)
    assert not out.exists()


def test_npz_without_x_and_bad_encoder_folder(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=np.zeros((10, 4)))
    check_fails(
        ["encode", "--data", f"npz:{tmp_path / 'd.npz'}", "--out", str(tmp_path / "r")],
        "no array named 'x'",
        tmp_path,
    )
    assert not (tmp_path / "r").exists()
    (tmp_path / "notarun").mkdir()
    check_fails(
        [
            "encode",
            "--encoder",
            str(tmp_path / "notarun"),
            "--data",
            "digits",
            "--out",
            str(tmp_path / "c.npz"),
        ],
        "not a dimgen run folder",
        tmp_path,
    )
    assert not (tmp_path / "c.npz").exists()


def test_unknown_config_key_in_file(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 2\nnoise: 0.3\n")
    check_fails(
        ["encode", "--config", str(p), "--out", str(tmp_path / "r")],
        "unknown key(s) 'noise'",
        tmp_path,
    )


def test_wrong_shape_for_encoder(digits_run: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 28, 28), dtype=np.float32))
    check_fails(
        [
            "encode",
            "--encoder",
            str(digits_run),
            "--data",
            f"npz:{tmp_path / 'd.npz'}",
            "--out",
            str(tmp_path / "c.npz"),
        ],
        "expects (1, 8, 8)",
        tmp_path,
    )


def test_existing_output_folder_is_not_overwritten(digits_run: Path) -> None:
    check_fails(
        ["encode", "--epochs", "1", "--out", str(digits_run)], "exists and is not empty", digits_run
    )
