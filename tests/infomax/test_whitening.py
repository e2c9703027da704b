"""Batch whitening of the codes (EncoderConfig.whiten): covariance I, not only unit variances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dimgen.config import EncoderConfig, validate
from dimgen.errors import ConfigError, RunFolderError, TrainingError
from dimgen.infomax.channel import GaussianChannel, UniformChannel
from dimgen.infomax.encoders import build_encoder
from dimgen.infomax.tokenizer import Tokenizer
from dimgen.infomax.trainer import train_encoder
from dimgen.io import save_weights


def _correlated(seed: int = 0, b: int = 256, d: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.tensor([[2.0, 0.0, 0.0], [1.5, 0.5, 0.0], [-1.0, 0.3, 0.2]], dtype=torch.float64)
    return 1.0 + torch.randn(b, d, generator=g, dtype=torch.float64) @ mix[:d, :d].T


def _cov(c: torch.Tensor) -> torch.Tensor:
    c = c - c.mean(0)
    return c.T @ c / c.shape[0]


def test_a_training_batch_is_whitened_and_keeps_the_papers_constraint() -> None:
    h = _correlated()
    eye = torch.eye(3, dtype=torch.float64)
    c = GaussianChannel(3, 0.1, whiten=True).double().train().normalise(h)
    torch.testing.assert_close(c.mean(0), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(_cov(c), eye, atol=1e-3, rtol=0)  # E f f^T = I (up to eps)
    # standardising alone leaves the correlation (0.95 between the first two outputs here)
    s = GaussianChannel(3, 0.1).double().train().normalise(h)
    assert float(_cov(s)[0, 1]) > 0.9


def test_both_views_go_through_the_clean_views_whitening_and_gradients_flow() -> None:
    h = _correlated(1).requires_grad_(True)
    h_aug = 0.8 * h.detach() + 0.3
    ch = GaussianChannel(3, 0.1, whiten=True).double().train()
    c, c_aug = ch.normalise_views(h, h_aug, "shared")
    mean, w = h.detach().mean(0), ch._whitener(_cov(h.detach()))
    torch.testing.assert_close(c_aug, (h_aug - mean) @ w.T)
    torch.testing.assert_close(c.detach(), (h.detach() - mean) @ w.T)
    (c[:, 1] * torch.arange(256.0, dtype=torch.float64)).sum().backward()
    assert (
        h.grad is not None and bool(torch.isfinite(h.grad).all()) and float(h.grad.abs().sum()) > 0
    )
    # the running statistics were updated once, from the clean view (BatchNorm's momentum 0.1)
    assert int(ch.norm.num_batches_tracked) == 1
    expected = 0.9 * torch.eye(3, dtype=torch.float64) + 0.1 * _cov(h.detach()) * 256 / 255
    torch.testing.assert_close(ch.running_cov, expected)
    with pytest.raises(ValueError, match="renorm is not defined"):
        ch.normalise_views(h, h_aug, "renorm")


@pytest.mark.parametrize("prior", ["gaussian", "uniform"])
def test_calibrated_codes_of_the_training_outputs_have_covariance_i(prior: str) -> None:
    h = _correlated(2, b=500)
    ch = (GaussianChannel(3, 0.1, whiten=True) if prior == "gaussian"
          else UniformChannel(3, 0.1, "phi", whiten=True)).double()  # fmt: skip
    ch.calibrate([h[:200], h[200:]])
    c = ch.eval().normalise(h)
    if prior == "uniform":  # phi: the whitened outputs are Phi^-1 of the codes
        c = torch.special.ndtri(c)
    torch.testing.assert_close(c.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(_cov(c), torch.eye(3, dtype=torch.float64), atol=1e-3, rtol=0)


def test_standardising_channels_keep_their_state_dict() -> None:
    """Runs written before the field existed load strictly: no new key unless whitening."""
    assert "running_cov" not in GaussianChannel(2, 0.1).state_dict()
    assert "running_cov" in GaussianChannel(2, 0.1, whiten=True).state_dict()


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"view_norm": "renorm"}, "whiten true needs view_norm"),
        ({"batch_size": 4, "dim": 4}, "batch_size > dim"),
    ],
)
def test_impossible_whitening_settings_are_one_config_error(fields: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        validate(EncoderConfig(whiten=True, **fields))


def test_a_whitened_run_has_uncorrelated_codes_and_reloads_identically(tmp_path: Path) -> None:
    cfg = EncoderConfig(dim=4, sigma=0.5, epochs=3, seed=0, whiten=True, curve_every=1)
    run = train_encoder(cfg, tmp_path / "w")
    tr = run.codes[run.split == "train"].astype(np.float64)
    np.testing.assert_allclose(np.cov(tr.T, bias=True), np.eye(4), atol=1e-3)
    plain = train_encoder(EncoderConfig(dim=4, sigma=0.5, epochs=3, seed=0), tmp_path / "s")
    c = np.corrcoef(plain.codes[plain.split == "train"].T)
    assert np.abs(c[np.triu_indices(4, 1)]).max() > 0.1  # the control is correlated
    tok = Tokenizer.from_pretrained(tmp_path / "w")  # the spec carries whiten, the weights
    assert tok.spec["whiten"] is True  # the running covariance
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        direct = run.channel.eval().normalise(run.encoder.eval()(x))
    torch.testing.assert_close(tok.encode(x), direct)


def test_a_diverged_batch_covariance_is_one_training_error_not_a_linalg_crash() -> None:
    """Outputs blown up to ~1e4 (lr 1 at d = 32 did it) make the float32 batch covariance
    indefinite: one TrainingError naming the cure, not torch's _LinAlgError (an internal error)."""
    g = torch.Generator().manual_seed(0)
    # two equal outputs of scale 1e4: cov = [[a, a], [a, a]], a = 1e8, and a + eps == a in float32
    h = 1e4 * torch.tensor([[1.0, 1.0], [-1.0, -1.0]]).repeat(32, 1)
    ch = GaussianChannel(2, 0.1, whiten=True).train()
    with pytest.raises(TrainingError, match=r"not positive-definite in float32 .*lower lr"):
        ch.normalise_views(h, h, "shared")
    with pytest.raises(TrainingError, match="non-finite outputs"):
        ch.normalise(torch.full((8, 2), float("nan")))
    # a well-conditioned batch of the same channel still whitens
    assert torch.isfinite(ch.normalise(torch.randn(64, 2, generator=g))).all()


def _whitened_weights(path: Path, edit: str) -> Path:
    """An (untrained) whitened encoder's weights with one statistic edited, as a file would be."""
    spec = {"in_shape": [1, 8, 8], "encoder": "mlp", "encoder_hidden": 16, "dim": 3,
            "prior": "gaussian", "sigma": 0.2, "eps": 0.1, "squash": "sigmoid", "whiten": True}  # fmt: skip
    channel = GaussianChannel(3, 0.2, whiten=True)
    if edit == "not positive-definite":
        channel.running_cov.copy_(-torch.eye(3))
    elif edit == "not symmetric":
        channel.running_cov[0, 1] = 5.0
    elif edit == "negative variance":
        channel.norm.running_var.fill_(-1.0)
    encoder = build_encoder("mlp", (1, 8, 8), 3, 16)
    tensors = {**{f"encoder.{k}": v for k, v in encoder.state_dict().items()},
               **{f"channel.{k}": v for k, v in channel.state_dict().items()}}  # fmt: skip
    save_weights(path, tensors, {"kind": "encoder", "spec": spec})
    return path


@pytest.mark.parametrize("edit", ["not positive-definite", "not symmetric", "negative variance"])
def test_a_loaded_covariance_that_cannot_whiten_is_refused_in_one_line(
    tmp_path: Path, edit: str
) -> None:
    """Finite values are not enough: a running covariance without a Cholesky factor crashed
    encode (internal error), and an asymmetric one was silently read by its lower triangle."""
    path = _whitened_weights(tmp_path / "encoder.safetensors", edit)
    with pytest.raises(RunFolderError, match=f"{edit}; the weights are corrupt"):
        Tokenizer.from_weights(path)


def test_the_untampered_statistics_load(tmp_path: Path) -> None:
    tok = Tokenizer.from_weights(_whitened_weights(tmp_path / "encoder.safetensors", "none"))
    assert tok.encode(torch.rand(4, 1, 8, 8)).shape == (4, 3)


@pytest.mark.parametrize("mode", ["shared", "per-view"])
def test_whitening_stays_in_float32_under_bf16_autocast(mode: str) -> None:
    """``amp: true`` (bf16 autocast, e.g. configs/mnist-gaussian.yaml) ran the covariance and the
    whitening matmuls in bf16: a code variance of 0.73 instead of 1 on correlated outputs."""
    h = _correlated(3).float()
    ch = GaussianChannel(3, 0.1, whiten=True).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c, c_aug = ch.normalise_views(h, h.clone(), mode)
    assert c.dtype == torch.float32 and c_aug.dtype == torch.float32
    eye = torch.eye(3)
    torch.testing.assert_close(_cov(c), eye, atol=1e-3, rtol=0)
    torch.testing.assert_close(_cov(c_aug), eye, atol=1e-3, rtol=0)
    ch.calibrate([h])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c = ch.eval().normalise(h)
    torch.testing.assert_close(_cov(c), eye, atol=1e-3, rtol=0)
