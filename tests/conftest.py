"""Shared fixtures: quiet, single-threaded, home-free test environment and a tiny trained run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_TMP = Path(tempfile.mkdtemp(prefix="dimgen-tests-"))
os.environ.setdefault("TORCH_HOME", str(_TMP / "torch"))
os.environ.setdefault("MPLCONFIGDIR", str(_TMP / "mpl"))
os.environ["DIMGEN_CACHE"] = str(_TMP / "cache")  # FID extractors: never the user's cache
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


#: Workers when pytest-xdist is installed and no -n is given: one per core, at most 4 (each holds
#: torch and the session fixtures); a test file's tests stay on one worker (module fixtures once).
MAX_WORKERS = 4


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Spread the suite over the cores with pytest-xdist, if installed and the user chose no -n.

    Runs before xdist's own hook (later-registered tryfirst hooks are called first), so xdist
    turns ``numprocesses`` into workers as if ``-n auto --maxprocesses 4 --dist loadfile`` had been
    typed; without xdist (or with ``-n 0`` / ``-p no:xdist``) the suite runs in one process.
    """
    if not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput"):
        return
    if config.option.numprocesses is not None or config.option.dist != "no":
        return  # the user's -n / --dist wins
    config.option.numprocesses = "auto"
    config.option.maxprocesses = config.option.maxprocesses or MAX_WORKERS
    config.option.dist = "loadfile"


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
    from dimgen.infomax.trainer import train_encoder

    out = tmp_path_factory.mktemp("runs") / "digits"
    train_encoder(EncoderConfig(epochs=60, seed=0), out)
    return out


@pytest.fixture(scope="session")
def digits_uniform_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete uniform-prior encoder run on digits (d=2, eps=0.1), trained briefly."""
    from dimgen.config import EncoderConfig
    from dimgen.infomax.trainer import train_encoder

    out = tmp_path_factory.mktemp("runs") / "digits-uniform"
    train_encoder(EncoderConfig(epochs=60, seed=0, prior="uniform", eps=0.1), out)
    return out


@pytest.fixture(scope="session")
def make_encoder_run(tmp_path_factory: pytest.TempPathFactory):
    """Factory for a minimal complete encoder run folder holding given codes (no training).

    ``make_encoder_run(codes, prior="gaussian", bound=0.5, n_test=None)`` writes ``codes.npz``
    (labels = row % 10, the last ``n_test`` rows held out), ``metrics.json`` with the KL bound, and
    ``run.json``: all that the code-level commands (flows, sampling priors) read.
    """
    import numpy as np

    from dimgen.io import save_npz, write_json, write_run

    def make(codes, prior: str = "gaussian", bound: float = 0.5, n_test: int | None = None) -> Path:
        codes = np.asarray(codes, dtype=np.float32)
        n, d = codes.shape
        n_test = n // 2 if n_test is None else n_test
        out = tmp_path_factory.mktemp("enc") / "run"
        split = np.array(["train"] * (n - n_test) + ["test"] * n_test)
        save_npz(out / "codes.npz", codes=codes, labels=np.arange(n) % 10, split=split)
        cap = 2.0 * d
        write_json(out / "metrics.json", {"prior": prior, "dim": d, "capacity_nats": cap,
                                          "mi_lower_bound_nats": cap - bound,
                                          "mi_lower_bound_stderr": 0.01,
                                          "kl_upper_bound_nats": bound})  # fmt: skip
        spec = {"dim": d, "prior": prior, "sigma": 0.2, "eps": 0.1, "in_shape": [1, 8, 8],
                "encoder": "mlp", "encoder_hidden": 8}  # fmt: skip
        write_run(out, "encoder", spec=spec)
        return out

    return make


@pytest.fixture(scope="session")
def digits_gan_run(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete GAN run on the digits codes (MLP G/D, 800 steps); shared, read-only."""
    from dimgen.gan import GANConfig, train_gan

    out = tmp_path_factory.mktemp("runs") / "digits-gan"
    cfg = GANConfig(encoder_run=str(digits_run), steps=800, sample_every=400, device="cpu")
    train_gan(cfg, out)
    return out
