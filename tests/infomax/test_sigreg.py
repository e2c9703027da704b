"""SIGReg: the sliced Epps-Pulley statistic against N(0, I) (dimgen.infomax.sigreg)."""

from __future__ import annotations

import math

import pytest
import torch

from dimgen.config import EncoderConfig
from dimgen.infomax.sigreg import SlicedEppsPulley, epps_pulley, prior_match_ratio
from dimgen.infomax.trainer import build_model


def test_epps_pulley_matches_its_closed_form_for_a_point_mass() -> None:
    # x = 0 everywhere: phi_n = 1, D = 2 * int_0^inf (1 - e^{-t^2/2})^2 e^{-t^2/2} dt
    #   = sqrt(2 pi) (1/2) [1 - 2/sqrt(2) + 1/sqrt(3)] * 2 = sqrt(2 pi)(1 - sqrt(2) + 1/sqrt(3))
    want = math.sqrt(2 * math.pi) * (1 - math.sqrt(2) + 1 / math.sqrt(3))
    got = float(epps_pulley(torch.zeros(10, 1, dtype=torch.float64), t_max=8.0, knots=801))
    assert got == pytest.approx(want, rel=1e-4)


def test_gaussian_samples_score_near_zero_and_others_do_not() -> None:
    g = torch.Generator().manual_seed(0)
    n = 4000
    gauss = torch.randn(n, 1, generator=g, dtype=torch.float64)
    unif = (torch.rand(n, 1, generator=g, dtype=torch.float64) - 0.5) * math.sqrt(12)  # var 1
    bimodal = torch.sign(gauss) * (1 + 0.1 * gauss.abs())
    d_g = float(epps_pulley(gauss))
    assert d_g * n < 5  # n D is the test statistic: O(1) under the null
    assert float(epps_pulley(unif)) > 5 * d_g and float(epps_pulley(bimodal)) > 20 * d_g


def test_prior_match_ratio_is_near_one_for_gaussian_codes_only() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5000, 2, generator=g)
    assert 0.3 < prior_match_ratio(z, seed=3) < 3.0
    squashed = torch.tanh(z)  # light tails, like the MNIST codes cut at radius 2.8
    assert prior_match_ratio(squashed / squashed.std(0), seed=3) > 10
    assert prior_match_ratio(z, seed=3) == prior_match_ratio(z, seed=3)  # deterministic


def test_sigreg_gradient_makes_samples_more_gaussian() -> None:
    torch.manual_seed(0)
    z = ((torch.rand(512, 2) - 0.5) * math.sqrt(12)).requires_grad_(True)
    stat = SlicedEppsPulley(2, slices=32)
    before = prior_match_ratio(z, seed=0)
    opt = torch.optim.Adam([z], lr=0.02)
    for _ in range(200):
        opt.zero_grad()
        stat(z).backward()
        opt.step()
    assert prior_match_ratio(z, seed=0) < before / 3


def test_sigreg_term_reaches_the_encoder_and_is_off_by_default() -> None:
    torch.manual_seed(0)
    x = torch.rand(32, 8, 8)
    model = build_model(EncoderConfig(dim=2, sigreg=2.0), (8, 8)).train()
    _, penalty = model(x, with_penalty=True)
    assert float(penalty.detach()) > 0
    penalty.backward()
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    plain = build_model(EncoderConfig(dim=2), (8, 8)).train()
    assert float(plain(x, with_penalty=True)[1]) == 0.0
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        SlicedEppsPulley(2)(torch.zeros(4, 3))
