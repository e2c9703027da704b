"""No silent phases: after training, every evaluation phase announces itself (what, how far,
how long) unless progress is off (``--quiet``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dimgen.config import EncoderConfig
from dimgen.train import train_encoder


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
