"""The tokens preset meets issue 27's three targets on digits (seed 0; 80 CPU s, so slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dimgen.config import load_config
from dimgen.infomax.channel import grid_fraction, token_ids, token_usage
from dimgen.infomax.trainer import train_encoder

PRESET = Path(__file__).resolve().parents[2] / "configs" / "digits-tokens.yaml"


@pytest.mark.slow
def test_tokens_preset_codes_use_the_grid_and_reach_75_percent_of_capacity() -> None:
    cfg = load_config(PRESET)
    run = train_encoder(cfg, progress=False)
    test = run.codes[run.split == "test"]
    assert (grid_fraction(test, cfg.eps) >= 0.9).all()
    usage = token_usage(token_ids(test, cfg.eps), 3)  # grid {0, 0.5, 1} at eps 0.25
    assert min(usage["entropy_ratio"]) >= 0.95, usage
    assert run.metrics["mi_lower_bound_nats"] >= 0.75 * run.metrics["capacity_nats"]
