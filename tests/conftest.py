"""Shared fixtures: quiet, single-threaded, home-free test environment and a tiny trained run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_TMP = Path(tempfile.mkdtemp(prefix="dimgen-tests-"))
os.environ.setdefault("TORCH_HOME", str(_TMP / "torch"))
os.environ.setdefault("MPLCONFIGDIR", str(_TMP / "mpl"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow_ok = os.environ.get("DIMGEN_SLOW") == "1"
    has_gpu = torch.cuda.is_available()
    data = os.environ.get("DIMGEN_DATA")
    has_mnist = bool(data) and (Path(data) / "MNIST" / "raw").is_dir()
    for item in items:
        if "slow" in item.keywords and not slow_ok:
            item.add_marker(pytest.mark.skip(reason="slow: set DIMGEN_SLOW=1 to run"))
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="gpu: no CUDA device"))
        if "mnist" in item.keywords and not has_mnist:
            item.add_marker(pytest.mark.skip(reason="mnist: DIMGEN_DATA does not hold MNIST/raw"))


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete encoder run folder on digits (d=2, Gaussian), trained briefly; shared, read-only."""
    from dimgen.config import EncoderConfig
    from dimgen.train import train_encoder

    out = tmp_path_factory.mktemp("runs") / "digits"
    train_encoder(EncoderConfig(epochs=60, seed=0), out)
    return out


@pytest.fixture(scope="session")
def digits_uniform_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete uniform-prior encoder run on digits (d=2, eps=0.1), trained briefly."""
    from dimgen.config import EncoderConfig
    from dimgen.train import train_encoder

    out = tmp_path_factory.mktemp("runs") / "digits-uniform"
    train_encoder(EncoderConfig(epochs=60, seed=0, prior="uniform", eps=0.1), out)
    return out
