"""The MNIST CPU presets (configs/mnist-cpu.yaml, configs/mnist-gan-cpu.yaml) and their smoke runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from dimgen.cli import cli

from dimgen.config import EncoderConfig, load_config
from dimgen.gan import GANConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_encoder_preset_loads_and_is_the_d2_gaussian_cpu_set_up() -> None:
    cfg = load_config(CONFIGS / "mnist-cpu.yaml", EncoderConfig)
    assert (cfg.data, cfg.prior, cfg.dim, cfg.encoder) == ("mnist", "gaussian", 2, "conv")
    assert cfg.sigma == 0.1 and cfg.threads == 1 and not cfg.amp
    # ~20 minutes at ~0.21 CPU-s per step (docs/mnist.md): 60,000 / batch steps per epoch
    steps = cfg.epochs * (60_000 // cfg.batch_size)
    assert 3000 <= steps <= 6000
    # it says that it departs from the paper where it does
    text = (CONFIGS / "mnist-cpu.yaml").read_text()
    if cfg.aug_shift or cfg.aug_rotate or cfg.aug_scale:
        assert "not in the paper" in text.lower()


def test_prior_preset_is_the_cpu_preset_plus_whitening_and_sigreg() -> None:
    """configs/mnist-prior-cpu.yaml departs from mnist-cpu.yaml in the two measured terms only."""
    from dimgen.config import replace

    base = load_config(CONFIGS / "mnist-cpu.yaml", EncoderConfig)
    prior = load_config(CONFIGS / "mnist-prior-cpu.yaml", EncoderConfig)
    assert prior == replace(base, whiten=True, sigreg=5.0)


def test_d8_preset_is_the_prior_preset_at_d8_with_capacity_under_log_batch() -> None:
    """configs/mnist-d8-cpu.yaml: the prior preset at d = 8, sigma raised so the capacity
    d/2 log(1 + 1/sigma^2) stays below what InfoNCE can certify (log B), SIGReg at 50."""
    from dimgen.config import replace

    prior = load_config(CONFIGS / "mnist-prior-cpu.yaml", EncoderConfig)
    d8 = load_config(CONFIGS / "mnist-d8-cpu.yaml", EncoderConfig)
    assert d8 == replace(prior, dim=8, sigma=0.76, sigreg=50.0)
    capacity = d8.dim / 2 * math.log(1 + 1 / d8.sigma**2)
    assert 3.5 < capacity < math.log(d8.batch_size)


def test_gan_preset_loads_for_a_cpu() -> None:
    cfg = load_config(CONFIGS / "mnist-gan-cpu.yaml", GANConfig)
    assert cfg.arch == "mlp" and cfg.threads == 1 and cfg.device == "auto"
    assert cfg.steps >= 1000 and cfg.eval_samples > 0 and cfg.classifier_epochs > 0


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def mnist_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,024 training and 512 test images of genuine MNIST as an npz source (fast smoke runs)."""
    import numpy as np

    from dimgen.data import load_data
    from dimgen.io import save_npz

    ds = load_data("mnist", None)
    assert ds.y_train is not None and ds.y_test is not None
    path = tmp_path_factory.mktemp("mnist") / "mnist-subset.npz"
    save_npz(path, x=np.concatenate([ds.x_train[:1024], ds.x_test[:512]]),
             y=np.concatenate([ds.y_train[:1024], ds.y_test[:512]]),
             split=np.array(["train"] * 1024 + ["test"] * 512))  # fmt: skip
    return path


@pytest.mark.mnist
def test_cpu_presets_smoke_encode_then_gan(tmp_path: Path, mnist_subset: Path) -> None:
    """One short epoch of each preset on real MNIST images, through the CLI a user would type."""
    enc = tmp_path / "enc"
    _invoke(["encode", "--config", str(CONFIGS / "mnist-cpu.yaml"), "--out", str(enc), "--quiet",
             "--data", f"npz:{mnist_subset}", "--device", "cpu", "--epochs", "1",
             "--set", "eval_batches=2"])  # fmt: skip
    m = json.loads((enc / "metrics.json").read_text())
    assert m["n_train"] == 1024 and m["n_test"] == 512 and m["epochs"] == 1
    assert m["capacity_nats"] == pytest.approx(0.5 * 2 * math.log1p(1 / 0.01))  # sigma 0.1
    assert m["kl_upper_bound_nats"] == pytest.approx(m["capacity_nats"] - m["mi_lower_bound_nats"])
    assert 0.0 < m["mi_lower_bound_nats"] < m["capacity_nats"]  # 8 steps already learn something
    assert m["knn_acc"] > m["chance_acc"]  # held-out codes keep some label information
    gan = tmp_path / "gan"
    _invoke(["train-gan", str(enc), "--config", str(CONFIGS / "mnist-gan-cpu.yaml"), "--quiet",
             "--out", str(gan), "--device", "cpu", "--steps", "4", "--set", "eval_samples=100",
             "--set", "classifier_epochs=1", "--set", "sample_every=0",
             "--set", "checkpoint_every=0", "--set", "log_every=2"])  # fmt: skip
    g = json.loads((gan / "metrics.json").read_text())
    assert g["steps"] == 4
    assert 0.0 <= g["class_tv_unconditional"] <= 1.0
    assert 0.0 <= g["conditional_consistency"] <= 100.0


@pytest.mark.mnist
def test_prior_preset_smoke_encode_has_uncorrelated_training_codes(
    tmp_path: Path, mnist_subset: Path
) -> None:
    """One short epoch of configs/mnist-prior-cpu.yaml on real MNIST, as a user would type it."""
    import numpy as np

    enc = tmp_path / "enc"
    _invoke(["encode", "--config", str(CONFIGS / "mnist-prior-cpu.yaml"), "--out", str(enc),
             "--quiet", "--data", f"npz:{mnist_subset}", "--device", "cpu", "--epochs", "1",
             "--set", "eval_batches=2"])  # fmt: skip
    m = json.loads((enc / "metrics.json").read_text())
    assert 0.0 < m["mi_lower_bound_nats"] < m["capacity_nats"] and m["knn_acc"] > m["chance_acc"]
    z = np.load(enc / "codes.npz")
    train = z["codes"][z["split"] == "train"].astype(np.float64)
    # whitened: covariance I up to the regulariser (eps 1e-5 on nearly collinear 1-epoch outputs)
    np.testing.assert_allclose(np.cov(train.T, bias=True), np.eye(2), atol=5e-3)
