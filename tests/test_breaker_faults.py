"""Faults found by a hostile newcomer: each is refused up front with one dimgen error."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

import dimgen
from dimgen.config import MAX_COUNT, EncoderConfig, validate
from dimgen.errors import ConfigError, DataError


def test_tiny_sigma_is_refused_before_training() -> None:
    # sigma = 1e-300 made the capacity infinite and crashed after training (ZeroDivisionError).
    with pytest.raises(ConfigError, match="sigma"):
        validate(EncoderConfig(sigma=1e-300), EncoderConfig)


def test_codes_beyond_any_prior_are_refused_by_evaluate() -> None:
    codes = np.random.default_rng(0).standard_normal((200, 2)) * 1e200
    with pytest.raises(DataError, match=r"reach \|x\|"):
        dimgen.evaluate(codes, prior="gaussian")


def test_counts_are_bounded(tmp_path: Path) -> None:
    from dimgen.config import check_count

    assert check_count(MAX_COUNT) == MAX_COUNT
    with pytest.raises(DataError, match="at most"):
        check_count(10**12)


def test_a_huge_mixture_is_refused() -> None:
    from dimgen.flows.targets import make_target

    with pytest.raises(ConfigError, match="at most 10,000 components"):
        make_target("mixture:100000000", 2)


def test_a_pickled_inception_file_gives_one_clean_line(tmp_path: Path) -> None:
    from dimgen.fidelity import load_inception_state

    class Payload:
        def __reduce__(self):  # pragma: no cover - never called: nothing is unpickled
            return (print, ("ran",))

    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps({"w": Payload()}))
    with pytest.raises(ConfigError) as info:
        load_inception_state(bad)
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith(")") and "pickled objects" in msg
