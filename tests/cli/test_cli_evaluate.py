"""``dimgen evaluate`` on run folders and codes files: JSON, files, report, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from dimgen.cli import cli


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete Gaussian encoder run on digits, trained for seconds (quality is irrelevant)."""
    from dimgen.config import EncoderConfig
    from dimgen.infomax.trainer import train_encoder

    out = tmp_path_factory.mktemp("eval") / "digits"
    train_encoder(EncoderConfig(epochs=2, critic="separable", eval_batches=2, seed=0), out)
    return out


def _invoke(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, list(args))
    return res.exit_code, res.stdout, res.stderr


def test_evaluate_run_folder_json_and_files(tiny_run: Path) -> None:
    code, out, err = _invoke("evaluate", str(tiny_run), "--json")
    assert code == 0, err
    res = json.loads(out)  # stdout is exactly one JSON object
    for key in ("dagostino_p", "shapiro_p", "henze_zirkler_p"):
        assert 0 <= res["normality"][key] <= 1
    for key in ("knn_acc", "gnb_acc", "mlp_acc", "linear_acc"):
        assert 0 <= res["probes"][key] <= 1
    assert -1 <= res["silhouette"] <= 1
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert res["training"]["capacity_nats"] == pytest.approx(metrics["capacity_nats"])
    assert res["training"]["kl_upper_bound_nats"] == pytest.approx(metrics["kl_upper_bound_nats"])
    assert res["n"] == metrics["n_test"]  # the held-out codes are tested
    assert "evaluation" not in metrics and not (tiny_run / "evaluation.json").exists()  # --json
    code, _, err = _invoke("evaluate", str(tiny_run))  # without --json: written into the run
    assert code == 0, err
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["evaluation"]["normality"]["p"] == pytest.approx(res["normality"]["p"])
    assert json.loads((tiny_run / "evaluation.json").read_text())["p"] == pytest.approx(res["p"])
    for name in ("qq.png", "codes.png"):
        assert (tiny_run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_prints_a_verdict_and_report_is_not_duplicated(tiny_run: Path) -> None:
    for _ in range(2):
        code, out, err = _invoke("evaluate", str(tiny_run), "--no-plots", "--seed", "1")
        assert code == 0, err
    assert "verdict: codes are" in out and "normality (shape)" in out
    report = (tiny_run / "report.md").read_text()
    assert report.startswith("# dimgen encoder run")  # the training summary is kept
    assert report.count("## Distribution-matching diagnostics") == 1
    assert "| **normality, combined** |" in report and "KL upper bound" in report
    assert "pass" in report or "FAIL" in report


def test_evaluate_codes_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((400, 3))
    labels = (codes[:, 0] > 0).astype(np.int64)  # a labelling the codes determine
    np.savez(tmp_path / "c.npz", codes=codes, labels=labels)
    code, out, err = _invoke(
        "evaluate", "--codes", str(tmp_path / "c.npz"), "--prior", "gaussian", "--json"
    )
    assert code == 0, err
    res = json.loads(out)
    assert res["passes"] is True and res["tested_on"] == "all codes"
    assert res["probes"]["protocol"] == "stratified 50/50" and res["probes"]["linear_acc"] > 0.95
    assert not list(tmp_path.glob("*.json"))  # without --out nothing is written
    code, out, err = _invoke(
        "evaluate", "--codes", str(tmp_path / "c.npz"), "--out", str(tmp_path / "ev")
    )
    assert code == 0, err
    assert "verdict: codes are consistent with N(0, I)" in out
    assert {p.name for p in (tmp_path / "ev").iterdir()} >= {
        "evaluation.json",
        "report.md",
        "qq.png",
        "codes.png",
    }
    assert (tmp_path / "ev" / "report.md").read_text().startswith("# dimgen evaluate")


def test_evaluate_uniform_codes(tmp_path: Path) -> None:
    u = np.random.default_rng(1).uniform(size=(300, 2))
    np.savez(tmp_path / "u.npz", codes=u)
    code, out, err = _invoke(
        "evaluate", "--codes", str(tmp_path / "u.npz"), "--prior", "uniform", "--json"
    )
    assert code == 0, err
    res = json.loads(out)
    assert res["prior_match"]["ks_reference"] == "U[0,1]" and res["passes"] is True
    assert res["probes"] is None and res["silhouette"] is None


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda p: np.savez(p, codes=np.full((30, 2), np.nan)), [], "NaN"),
        (lambda p: np.savez(p, codes=np.zeros(30)), [], "2-D"),
        (
            lambda p: np.savez(p, codes=np.random.default_rng(0).standard_normal((8, 2))),
            [],
            "at least 20, got 8",
        ),
        (lambda p: np.savez(p, x=np.zeros((30, 2))), [], "no array named 'codes'"),
        (
            lambda p: np.savez(p, codes=np.random.default_rng(0).standard_normal((30, 2))),
            ["--prior", "uniform"],
            r"\[0, 1\]",
        ),
        (lambda p: p.write_text("not npz"), [], "not a readable .npz"),
        (  # "TEST" / "TRAIN" were silently ignored: every code, training ones too, was tested
            lambda p: np.savez(
                p,
                codes=np.random.default_rng(0).standard_normal((60, 2)),
                split=np.array(["TRAIN", "TEST"] * 30),
            ),
            [],
            "split entries must be 'train', 'test' or 'all', got 'TEST', 'TRAIN'",
        ),
    ],
)
def test_evaluate_bad_codes_exit_2(tmp_path: Path, make, args: list[str], message: str) -> None:
    path = tmp_path / "bad.npz"
    make(path)
    code, out, err = _invoke("evaluate", "--codes", str(path), *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err


def test_evaluate_usage_errors(tiny_run: Path, tmp_path: Path) -> None:
    code, _, err = _invoke("evaluate")
    assert code == 2 and "either a run folder or --codes" in err
    code, _, err = _invoke("evaluate", str(tiny_run), "--prior", "uniform")
    assert code == 2 and "gaussian prior" in err
    code, _, err = _invoke("evaluate", str(tmp_path))
    assert code == 2 and "not a dimgen run folder" in err
    code, _, err = _invoke("evaluate", str(tiny_run), "--alpha", "2")
    assert code == 2 and "alpha" in err


def test_evaluate_uniform_run_folder(tmp_path: Path) -> None:
    from dimgen.config import EncoderConfig
    from dimgen.infomax.trainer import train_encoder

    run = tmp_path / "u"
    cfg = EncoderConfig(prior="uniform", eps=0.1, epochs=1, critic="separable", eval_batches=2)
    train_encoder(cfg, run)
    code, out, err = _invoke("evaluate", str(run), "--json", "--no-plots", "--no-probes")
    assert code == 0, err
    res = json.loads(out)
    assert res["prior"] == "uniform" and res["prior_match"]["ks_reference"] == "U[0,1]"
    assert res["probes"] is None and res["silhouette"] is not None  # labels, probes skipped
    assert any("Phi^-1" in note for note in res["notes"])
    assert res["training"]["noise"] == "eps = 0.1"
    assert not (run / "qq.png").exists()


def test_help_shows_the_library_defaults() -> None:
    """The CLI states defaults in its help but never applies its own: they must agree."""
    import inspect

    from dimgen.diagnostics import EvalConfig
    from dimgen.infomax.sweep import run_sweep

    text = " ".join(_invoke("evaluate", "--help")[1].split())
    cfg = EvalConfig()
    for opt, value in (
        ("--alpha", cfg.alpha),
        ("--seed", cfg.seed),
        ("--subsample", cfg.subsample),
        ("--projections", cfg.n_projections),
        ("--n-subsamples", cfg.n_subsamples),
    ):
        assert f"[default: {value}]" in text.split(opt, 1)[1].split("--", 1)[0], opt
    text = " ".join(_invoke("sweep", "--help")[1].split())
    runs = inspect.signature(run_sweep).parameters["runs"].default
    assert f"[default: {runs}]" in text.split("--runs", 1)[1].split("--", 1)[0]
    assert f"[default: {cfg.alpha}]" in text.split("--alpha", 1)[1].split("--", 1)[0]


def test_evaluate_minimal_run_folder(make_encoder_run) -> None:
    """A run folder with only codes, metrics and run.json (no config.yaml, no report.md)."""
    from dimgen.diagnostics.runs import evaluate_run

    codes = np.random.default_rng(2).standard_normal((600, 2))
    run = make_encoder_run(codes, bound=0.25)
    ev = evaluate_run(run, plots=False)
    assert ev.n == 300 and ev.tested_on.startswith("held-out")  # the last half is held out
    assert ev.passes and ev.training is not None and ev.training.kl_upper_bound_nats == 0.25
    assert ev.probes is not None and ev.probes.knn_acc < 0.3  # labels = row % 10: no signal
    report = (run / "report.md").read_text()
    assert report.startswith("# dimgen evaluate") and "| 0.250 |" in report  # the KL bound


def test_codes_files_marked_all_are_evaluated_whole(tmp_path: Path) -> None:
    """dimgen's own codes files (`encode --encoder ... --data npz:...`, flows) mark every row
    ``all``: they are evaluated as one sample, not refused as a misspelt split."""
    x = np.random.default_rng(1).standard_normal((300, 2))
    np.savez(tmp_path / "c.npz", codes=x, split=np.array(["all"] * 300))
    code, out, err = _invoke(
        "evaluate", "--codes", str(tmp_path / "c.npz"), "--json", "--no-probes"
    )
    assert code == 0, err
    res = __import__("json").loads(out)
    assert res["n"] == 300 and res["tested_on"] == "all codes" and res["passes"]
