"""No silent phases: after training, every evaluation phase announces itself (what, how far,
how long) unless progress is off (``--quiet``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dimgen.config import EncoderConfig
from dimgen.infomax.trainer import train_encoder


@pytest.mark.parametrize("progress", [True, False])
def test_encoder_evaluation_phases_are_announced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    progress: bool,
) -> None:  # fmt: skip
    monkeypatch.setenv("DIMGEN_SMOKE", "1")  # 3 epochs: the phases are what is tested
    train_encoder(EncoderConfig(epochs=3), tmp_path / "r", progress=progress)
    err = capsys.readouterr().err
    phases = [line for line in err.splitlines() if line.startswith("encode: [")]
    if not progress:
        assert phases == []
        return
    for i in range(1, 5):
        started = [p for p in phases if p.startswith(f"encode: [{i}/4] ") and p.endswith("...")]
        ended = [p for p in phases if p.startswith(f"encode: [{i}/4] ") and " done (" in p]
        assert len(started) == 1 and len(ended) == 1, (i, phases)
    assert [p.split("]")[0] for p in phases] == [
        f"encode: [{i}/4" for i in (1, 1, 2, 2, 3, 3, 4, 4)
    ]


def test_gan_announces_its_classifier_and_evaluation_phases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference classifier (minutes on MNIST the first time) and the evaluation are not silent."""
    from dimgen.gan import GANConfig, train_gan

    monkeypatch.setenv("DIMGEN_SMOKE", "1")
    monkeypatch.setenv("DIMGEN_CACHE", str(tmp_path / "cache"))  # a cold cache: it trains
    train_encoder(EncoderConfig(epochs=2), tmp_path / "enc")
    capsys.readouterr()
    cfg = GANConfig(
        encoder_run=str(tmp_path / "enc"), steps=4, classifier_epochs=1, eval_samples=100
    )
    train_gan(cfg, tmp_path / "gan", progress=True)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train-gan: ")]
    classifier = [line for line in err if "reference classifier" in line]
    assert len(classifier) == 2 and classifier[1].split(" done (")[1].endswith(" s)")
    for i in (1, 2):
        assert sum(line.startswith(f"train-gan: [{i}/2] ") for line in err) == 2, err
