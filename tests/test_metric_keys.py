"""One key for the KL certificate in every run kind's metrics.json, old runs still read, and
smoke runs (DIMGEN_SMOKE) capped and marked as such by the harness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dimgen.errors import DataError
from dimgen.metric_keys import KL_BOUND, kl_upper_bound


def test_chance_is_the_training_majority_scored_on_held_out_labels() -> None:
    from dimgen.diagnostics.probes import chance_accuracy

    y_train = np.array([0, 1, 1, 2, 2, 2])
    assert chance_accuracy(y_train, np.array([2, 2, 0, 1])) == 0.5  # majority 2, not 1/4 or 3/6
    assert chance_accuracy(np.array([3, 1]), np.array([1, 3, 3])) == pytest.approx(1 / 3)  # tie
    with pytest.raises(DataError):
        chance_accuracy(np.array([]), np.array([1]))


def test_kl_upper_bound_reads_current_and_old_keys() -> None:
    assert kl_upper_bound({"kl_upper_bound_nats": 0.5}) == 0.5
    assert kl_upper_bound({"kl_bound_carried_nats": 0.25}) == 0.25  # a flow run before the rename
    assert kl_upper_bound({"kl_upper_bound_nats": 0.5, "kl_bound_carried_nats": 9.0}) == 0.5
    assert kl_upper_bound({"capacity_nats": 3.0}) is None


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_every_run_kind_names_the_kl_bound_alike(digits_run: Path, tmp_path: Path) -> None:
    from dimgen.flows.runs import flow_report, transform_codes
    from dimgen.gan import GANConfig, train_gan

    enc = _metrics(digits_run)
    bound = enc[KL_BOUND]
    assert bound == pytest.approx(enc["capacity_nats"] - enc["mi_lower_bound_nats"])
    transform_codes(digits_run, "laplace", out=tmp_path / "flow")
    gan_cfg = GANConfig(encoder_run=str(digits_run), steps=4, log_every=2, classifier_epochs=1,
                        eval_samples=1000)  # fmt: skip
    train_gan(gan_cfg, tmp_path / "gan")  # a GAN run only to read its metrics
    for kind in ("flow", "gan"):
        m = _metrics(tmp_path / kind)
        assert m[KL_BOUND] == pytest.approx(bound), kind
        assert not any("kl_bound" in k for k in m if k != "kl_bound_applies_to"), kind
    # one "chance": the encoder report, `dimgen evaluate` and the GAN report agree
    from dimgen.diagnostics.runs import evaluate_run

    ev = evaluate_run(digits_run, write=False, plots=False)
    assert ev.probes is not None
    assert ev.probes.chance_acc == pytest.approx(enc["chance_acc"])
    assert _metrics(tmp_path / "gan")["chance_consistency"] == pytest.approx(
        100 * enc["chance_acc"]
    )
    # a flow run written before the rename still reports
    old = _metrics(tmp_path / "flow")
    old["kl_bound_carried_nats"] = old.pop(KL_BOUND)
    assert f"| carried bound | {bound:.4f} |" in flow_report(old)


def test_smoke_runs_are_capped_and_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dimgen.config import EncoderConfig
    from dimgen.infomax.trainer import train_encoder

    monkeypatch.setenv("DIMGEN_SMOKE", "1")
    run = train_encoder(EncoderConfig(epochs=50, eval_batches=20), tmp_path / "enc")
    m = _metrics(tmp_path / "enc")
    assert m["epochs"] == 3 and len(run.history) == 3
    assert m["steps"] == 3 * m["steps_per_epoch"]
    assert m["smoke"]["configured"] == 50 and m["smoke"]["trained"] == 3
    assert json.loads((tmp_path / "enc" / "run.json").read_text())["smoke"]["unit"] == "epoch"
    assert (tmp_path / "enc" / "report.md").read_text().startswith("> **Smoke run**")
    monkeypatch.setenv("DIMGEN_SMOKE", "0")
    train_encoder(EncoderConfig(epochs=4), tmp_path / "full")
    full = _metrics(tmp_path / "full")
    assert full["epochs"] == 4 and "smoke" not in full
    assert "smoke" not in json.loads((tmp_path / "full" / "run.json").read_text())
