"""The noise channel: capacity formulas, normalisation, noise statistics, priors, bad values."""

from __future__ import annotations

import math

import pytest
import torch

from dimgen.errors import ConfigError
from dimgen.infomax.channel import GaussianChannel, UniformChannel, make_channel


@pytest.mark.parametrize("dim,sigma", [(1, 1.0), (2, 0.3), (16, 0.1)])
def test_gaussian_capacity_formula(dim: int, sigma: float) -> None:
    assert GaussianChannel(dim, sigma).capacity() == pytest.approx(
        dim / 2 * math.log(1 + 1 / sigma**2)
    )


@pytest.mark.parametrize("dim,eps", [(1, 0.5), (2, 0.1), (8, 0.25)])
def test_uniform_capacity_formula(dim: int, eps: float) -> None:
    assert UniformChannel(dim, eps).capacity() == pytest.approx(dim * math.log(1 + 1 / (2 * eps)))


def test_gaussian_training_output_is_standardised_plus_noise() -> None:
    torch.manual_seed(0)
    ch = GaussianChannel(3, sigma=0.5).train()
    h = torch.randn(20000, 3) * torch.tensor([5.0, 0.1, 2.0]) + torch.tensor([3.0, -1.0, 0.0])
    clean = ch.normalise(h)
    noisy = ch(h)
    assert torch.allclose(clean.mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose((clean**2).mean(0), torch.ones(3), atol=1e-3)
    noise = noisy - ch.normalise(h)  # same batch -> same statistics
    assert noise.std(0).numpy() == pytest.approx([0.5] * 3, rel=0.03)


def test_eval_mode_has_no_noise_and_uses_calibrated_statistics() -> None:
    torch.manual_seed(0)
    ch = GaussianChannel(2, sigma=0.3)
    h = torch.randn(5000, 2) * 4 + 7
    ch.calibrate([h[:2500], h[2500:]])  # chunks are combined exactly
    ch.eval()
    c1, c2 = ch(h), ch(h)
    assert torch.equal(c1, c2)
    assert torch.allclose(c1.mean(0), torch.zeros(2), atol=1e-4)
    assert torch.allclose(c1.var(0, unbiased=False), torch.ones(2), atol=1e-3)


def test_uniform_codes_in_unit_cube_and_noise_bounded() -> None:
    torch.manual_seed(0)
    ch = UniformChannel(4, eps=0.2).train()
    h = torch.randn(10000, 4) * 3
    clean = ch.normalise(h)
    assert clean.min() >= 0 and clean.max() <= 1
    # standardised Gaussian input -> exactly uniform codes (normal CDF): mean 1/2, var 1/12
    assert clean.mean(0).numpy() == pytest.approx([0.5] * 4, abs=0.01)
    assert clean.var(0).numpy() == pytest.approx([1 / 12] * 4, abs=0.005)
    noise = ch(h) - clean
    assert noise.abs().max() <= 0.2 + 1e-6
    assert noise.var().item() == pytest.approx(0.2**2 / 3, rel=0.05)


def test_priors_are_distributions_of_the_right_shape() -> None:
    g = make_channel("gaussian", 3, sigma=0.1).prior
    u = make_channel("uniform", 3, eps=0.1).prior
    assert g.sample((5,)).shape == (5, 3) and u.sample((5,)).shape == (5, 3)
    assert g.log_prob(torch.zeros(1, 3)).item() == pytest.approx(-1.5 * math.log(2 * math.pi))
    assert u.log_prob(torch.full((1, 3), 0.5)).item() == pytest.approx(0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prior": "gaussian", "dim": 2, "sigma": 0.0},
        {"prior": "gaussian", "dim": 2, "sigma": -1.0},
        {"prior": "gaussian", "dim": 2, "sigma": float("nan")},
        {"prior": "uniform", "dim": 2, "eps": 0.0},
        {"prior": "uniform", "dim": 2, "eps": 0.6},
        {"prior": "gaussian", "dim": 0},
        {"prior": "laplace", "dim": 2},
    ],
)
def test_impossible_channels_are_refused(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        make_channel(**kwargs)
