"""MI lower bounds on a correlated Gaussian pair whose MI is known in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from dimgen.infomax.bounds import MIBound, dv_bound, infonce_bound, nwj_bound


def _pair(n: int, k: int, rho: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, generator=g, dtype=torch.float64)
    y = rho * x + math.sqrt(1 - rho**2) * torch.randn(n, k, generator=g, dtype=torch.float64)
    return x, y


def _log_ratio(x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """Optimal critic log p(y|x)/p(y) for all pairs: (B, B)."""
    s2 = 1 - rho**2
    diff = y[None, :, :] - rho * x[:, None, :]
    return (-0.5 * (diff**2).sum(-1) / s2 + 0.5 * (y**2).sum(-1)[None, :]) - 0.5 * x.shape[
        1
    ] * math.log(s2)


def _true_mi(k: int, rho: float) -> float:
    return -0.5 * k * math.log(1 - rho**2)


def _mean_bound(fn, k: int, rho: float, shift: float = 0.0, b: int = 256, reps: int = 40) -> float:
    vals = [float(fn(_log_ratio(*_pair(b, k, rho, s), rho) + shift)) for s in range(reps)]
    return sum(vals) / len(vals)


@pytest.mark.parametrize("k,rho", [(1, 0.5), (2, 0.8), (4, 0.9)])
def test_bounds_below_truth_and_close_with_optimal_critic(k: int, rho: float) -> None:
    true = _true_mi(k, rho)
    nce = _mean_bound(infonce_bound, k, rho)
    dv = _mean_bound(dv_bound, k, rho)
    nwj = _mean_bound(nwj_bound, k, rho, shift=1.0)  # NWJ's optimal critic is 1 + log ratio
    # InfoNCE is below the truth and close while MI << log B (= 5.5 nats here)
    assert nce <= true + 0.02
    assert nce >= true - 0.1 * true - 0.05
    # NWJ is unbiased at its optimum: its mean matches the truth within Monte Carlo error
    assert abs(nwj - true) < 0.06 + 0.05 * true
    assert dv <= true + 0.06 and dv >= true - 0.1 - 0.05 * true


def test_bounds_of_a_bad_critic_stay_below_truth() -> None:
    k, rho = 2, 0.8
    true = _true_mi(k, rho)
    for fn, shift in ((infonce_bound, 0.0), (dv_bound, 0.0), (nwj_bound, 1.0)):
        x, y = _pair(512, k, rho, 1)
        noisy_critic = 0.5 * _log_ratio(x, y, rho) + shift  # mis-scaled critic
        assert float(fn(noisy_critic)) < true


def test_gaussian_channel_mi_matches_capacity_per_coordinate() -> None:
    # Y = X + sZ with X ~ N(0,1): I = 0.5 log(1 + 1/s^2) per coordinate; rho = 1/sqrt(1+s^2)
    s, k = 0.5, 2
    rho = 1 / math.sqrt(1 + s**2)
    cap = 0.5 * k * math.log(1 + 1 / s**2)
    assert _true_mi(k, rho) == pytest.approx(cap)
    assert _mean_bound(nwj_bound, k, rho, shift=1.0) == pytest.approx(cap, abs=0.1)


def test_infonce_never_exceeds_log_batch() -> None:
    scores = torch.eye(8) * 1e4  # a perfect critic
    assert float(infonce_bound(scores)) == pytest.approx(math.log(8))


def test_module_and_shape_errors() -> None:
    assert float(MIBound("nwj")(torch.zeros(4, 4))) == pytest.approx(-math.exp(-1))
    with pytest.raises(ValueError, match="square"):
        infonce_bound(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="unknown bound"):
        MIBound("mine")


@pytest.mark.parametrize("fn", [infonce_bound, nwj_bound, dv_bound])
def test_rectangular_form_with_offset_zero_is_the_square_form(fn) -> None:
    s = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(fn(s, offset=0), fn(s), atol=1e-12)


@pytest.mark.parametrize("fn", [infonce_bound, nwj_bound])
@pytest.mark.parametrize("shards", [2, 3])
def test_row_shards_average_to_the_square_bound(fn, shards: int) -> None:
    """Data-parallel form: each process's (B/W, B) rows, positives at offset rank * B/W."""
    b = 12
    s = torch.randn(b, b, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    s = s + 3 * torch.eye(b, dtype=torch.float64)  # informative diagonal
    r = b // shards
    parts = [fn(s[k * r : (k + 1) * r], offset=k * r) for k in range(shards)]
    assert torch.allclose(torch.stack(parts).mean(), fn(s), atol=1e-12)


def test_rectangular_bounds_by_hand() -> None:
    # rows 2..3 of a 4 x 4 matrix: positives at (0, 2) and (1, 3)
    s = torch.tensor([[0.0, 1.0, 2.0, 0.5], [1.0, 0.0, -1.0, 3.0]], dtype=torch.float64)
    pos = torch.tensor([2.0, 3.0], dtype=torch.float64)
    nce = (pos - torch.logsumexp(s, 1)).mean() + math.log(4)
    assert torch.allclose(infonce_bound(s, offset=2), nce)
    neg = torch.tensor([0.0, 1.0, 0.5, 1.0, 0.0, -1.0], dtype=torch.float64)
    assert torch.allclose(nwj_bound(s, offset=2), pos.mean() - torch.exp(neg - 1).mean())
    dv = pos.mean() - (torch.logsumexp(neg, 0) - math.log(6))
    assert torch.allclose(dv_bound(s, offset=2), dv)
    assert torch.allclose(MIBound("dv")(s, offset=2), dv)


def test_rectangular_shape_errors() -> None:
    with pytest.raises(ValueError, match="positives"):
        infonce_bound(torch.zeros(3, 4), offset=2)  # row 2's positive would be column 4
    with pytest.raises(ValueError, match="positives"):
        nwj_bound(torch.zeros(2, 4), offset=-1)
    with pytest.raises(ValueError, match="square"):
        dv_bound(torch.zeros(2, 4))  # no offset: the square API stays strict
