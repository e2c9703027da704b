"""`dimgen train-gan`, `dimgen sample`, `dimgen evaluate-gan`: outputs, seeds and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from dimgen.cli import cli


def _run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def check_error(res: Result, match: str) -> None:
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert match in lines[0], lines[0]


def test_train_gan_writes_a_run(digits_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "gan"
    res = _run("train-gan", digits_run, "--out", out, "--steps", 40, "--quiet",
               "--set", "sample_every=20", "--set", "classifier_epochs=2", "--set", "eval_samples=60")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"wrote {out}: 40 steps")
    assert "conditional consistency" in res.output
    rec = json.loads((out / "run.json").read_text())
    assert rec["kind"] == "gan" and rec["spec"]["arch"] == "mlp"
    assert (out / "samples" / "step-000020.png").is_file() and (
        out / "samples" / "step-000040.png"
    ).is_file()
    assert json.loads((out / "metrics.json").read_text())["n_eval"] == 60
    # The same folder again: refused, one line.
    check_error(_run("train-gan", digits_run, "--out", out), "not empty")


def test_train_gan_with_a_preset(digits_run: Path, tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    check_error(_run("train-gan", digits_run, "--out", tmp_path / "g", "--config",
                repo / "configs" / "digits-gan.yaml", "--set", "steps=0"), "steps must lie in [1, ")  # fmt: skip
    check_error(
        _run("train-gan", digits_run, "--out", tmp_path / "g", "--set", "stepz=3"), "unknown key"
    )


def test_sample_unconditional_seeds(digits_gan_run: Path, tmp_path: Path) -> None:
    outs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        res = _run("sample", digits_gan_run, "--unconditional", "-n", 10, "--seed", seed,
                   "--out", tmp_path / f"{name}.png")  # fmt: skip
        assert res.exit_code == 0, res.output
        assert (tmp_path / f"{name}.png").is_file()
        with np.load(tmp_path / f"{name}.npz") as f:
            outs.append((f["images"], f["codes"]))
    (ia, ca), (ib, cb), (ic, _) = outs
    assert ia.shape == (10, 1, 8, 8) and ca.shape == (10, 2)
    assert np.array_equal(ia, ib) and np.array_equal(ca, cb)
    assert not np.array_equal(ia, ic)


def test_sample_from_images_pairs(digits_gan_run: Path, tmp_path: Path) -> None:
    from dimgen.infomax.tokenizer import Tokenizer

    res = _run(
        "sample", digits_gan_run, "--from-images", "digits", "-n", 6, "--out", tmp_path / "c.png"
    )
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "c.npz") as f:
        assert set(f.files) == {"images", "codes", "real", "labels", "seed"}
        assert f["real"].shape == f["images"].shape == (6, 1, 8, 8) and f["labels"].shape == (6,)
        tok = Tokenizer.from_pretrained(
            json.loads((digits_gan_run / "run.json").read_text())["encoder_run"]
        )
        np.testing.assert_allclose(f["codes"], tok.encode(f["real"]).numpy(), atol=1e-6)
    from PIL import Image

    assert Image.open(tmp_path / "c.png").size == (8 * 34 + 2, 2 * 34 + 2)  # 6 pairs: 4 + 2 per row


def test_sample_given_codes(digits_gan_run: Path, digits_run: Path, tmp_path: Path) -> None:
    codes = tmp_path / "codes.npz"
    assert (
        _run("encode", "--encoder", digits_run, "--data", "digits:test", "--out", codes).exit_code
        == 0
    )
    res = _run("sample", digits_gan_run, "--codes", codes, "-n", 12, "--out", tmp_path / "m.png")
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "m.npz") as f, np.load(codes) as c:
        assert f["images"].shape == (12, 1, 8, 8)
        np.testing.assert_array_equal(f["codes"], c["codes"][:12])
    np.savez(tmp_path / "bad.npz", codes=np.zeros((5, 3), np.float32))
    check_error(_run("sample", digits_gan_run, "--codes", tmp_path / "bad.npz", "--out", tmp_path / "x.png"),
           "codes must have shape (n, 2)")  # fmt: skip


def test_evaluate_gan_json(digits_gan_run: Path, tmp_path: Path) -> None:
    res = _run("evaluate-gan", digits_gan_run, "--json", "-n", 150, "--out", tmp_path / "m.json")
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)  # progress of the phases goes to stderr
    assert m == json.loads((tmp_path / "m.json").read_text())
    assert "evaluate: [1/2] 150 conditional samples done" in res.stderr
    assert any("consistency" in k for k in m) and m["conditional_consistency"] > 25
    assert m["n_eval"] == 150 and m["feature_extractor"] == "dimgen-classifier-digits"
    for mode in ("conditional", "unconditional", "real"):
        assert m[f"fid_dimgen_classifier_{mode}"] >= 0
    assert m["fid_dimgen_classifier_real"] < m["fid_dimgen_classifier_unconditional"]
    # No Inception weights offline: nothing may be reported under the name "fid" / "kid".
    assert not [k for k in m if k.startswith(("fid", "kid")) and "dimgen_classifier" not in k]
    text = _run("evaluate-gan", digits_gan_run, "-n", 50)
    assert text.exit_code == 0 and "conditional_consistency: " in text.output


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["sample", "{enc}", "--unconditional", "--out", "{tmp}/x.png"], "not a generator"),
        (["sample", "{gan}", "--unconditional", "-n", "0", "--out", "{tmp}/x.png"], "-n must be >= 1"),
        (["sample", "{gan}", "--unconditional", "-n", "-2", "--out", "{tmp}/x.png"], "-n must be >= 1"),
        (["sample", "{gan}", "--unconditional", "--codes", "a.npz", "--out", "{tmp}/x.png"], "exactly one"),
        (["sample", "{gan}", "--out", "{tmp}/x.png"], "exactly one"),
        (["sample", "{gan}", "--from-images", "digits", "--prior", "f", "--out", "{tmp}/x.png"], "--prior only"),
        (["sample", "{gan}", "--from-images", "digits", "--temperature", "0.5", "--out", "{tmp}/x.png"], "--temperature only"),
        (["sample", "{gan}", "--unconditional", "--temperature", "0", "--out", "{tmp}/x.png"], "--temperature must be a number in (0, 10]"),
        (["sample", "{gan}", "--unconditional", "--temperature", "nan", "--out", "{tmp}/x.png"], "--temperature must be a number in (0, 10]"),
        (["sample", "{gan}", "--unconditional", "--temperature", "1e38", "--out", "{tmp}/x.png"], "--temperature must be a number in (0, 10]"),
        (["sample", "{gan}", "--unconditional", "--out", "{tmp}/x.jpg"], ".png"),
        (["sample", "{gan}", "--codes", "{tmp}/missing.npz", "--out", "{tmp}/x.png"], "not found"),
        (["sample", "{gan}", "--from-images", "imagenet", "--out", "{tmp}/x.png"], "unknown data source"),
        (["sample", "{tmp}", "--unconditional", "--out", "{tmp}/x.png"], "not a dimgen run folder"),
        (["train-gan", "{gan}", "--out", "{tmp}/g"], "expected encoder"),
        (["evaluate-gan", "{enc}"], "not a generator"),
        (["evaluate-gan", "{gan}", "-n", "0"], "-n must be >= 10"),
        (["evaluate-gan", "{gan}", "-n", "5"], "FID / KID need that many"),  # as eval_samples
        (["evaluate-gan", "{gan}", "--inception-weights", "{tmp}/none.pth"], "Inception weights not found"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line(args: list[str], match: str, digits_gan_run: Path, digits_run: Path,
                               tmp_path: Path) -> None:  # fmt: skip
    fill = {"enc": str(digits_run), "gan": str(digits_gan_run), "tmp": str(tmp_path)}
    check_error(_run(*[a.format(**fill) for a in args]), match)
