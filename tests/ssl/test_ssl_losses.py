"""SimCLR / VICReg / DIM objectives against the authors' formulas, computed independently here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dimgen.errors import ConfigError, DataError
from dimgen.ssl.losses import (
    InfoMaxLoss,
    NTXentLoss,
    VICRegLoss,
    covariance_loss,
    invariance_loss,
    nt_xent,
    variance_loss,
)


def _pair(b: int = 5, d: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(
        b, d, generator=g, dtype=torch.float64
    )


def _nt_xent_by_hand(a: np.ndarray, b: np.ndarray, t: float) -> float:
    """SimCLR eq. (1), an explicit loop over the 2B anchors."""
    z = np.concatenate([a, b])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(a)
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        denom = sum(math.exp(z[i] @ z[k] / t) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(z[i] @ z[pos] / t) / denom)
    return total / (2 * n)


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_nt_xent_matches_the_hand_computed_formula(t: float) -> None:
    a, b = _pair()
    ref = _nt_xent_by_hand(a.numpy(), b.numpy(), t)
    assert nt_xent(a, b, t).item() == pytest.approx(ref, rel=1e-10)


def test_nt_xent_known_values() -> None:
    # Identical, mutually orthogonal views: positives have similarity 1, negatives 0 except the
    # anchor's own view pair. For B = 2, d = 2 with e1, e2: loss = log(e^(1/t) + 2) - 1/t.
    e = torch.eye(2, dtype=torch.float64)
    t = 0.5
    assert nt_xent(e, e, t).item() == pytest.approx(math.log(math.exp(1 / t) + 2) - 1 / t)


def _vicreg_reference(a: np.ndarray, b: np.ndarray) -> float:
    """The authors' reference (facebookresearch/vicreg main_vicreg.py), re-derived in numpy."""
    n, d = a.shape
    repr_loss = np.mean((a - b) ** 2)
    a, b = a - a.mean(0), b - b.mean(0)
    std_a = np.sqrt(a.var(0, ddof=1) + 1e-4)
    std_b = np.sqrt(b.var(0, ddof=1) + 1e-4)
    std_loss = np.mean(np.maximum(0, 1 - std_a)) / 2 + np.mean(np.maximum(0, 1 - std_b)) / 2
    cov_a, cov_b = a.T @ a / (n - 1), b.T @ b / (n - 1)
    off = lambda c: (c**2).sum() - (np.diag(c) ** 2).sum()  # noqa: E731
    cov_loss = off(cov_a) / d + off(cov_b) / d
    return 25 * repr_loss + 25 * std_loss + 1 * cov_loss


def test_vicreg_terms_by_their_definitions() -> None:
    a, b = _pair(6, 3)
    an, bn = a.numpy(), b.numpy()
    assert invariance_loss(a, b).item() == pytest.approx(np.mean((an - bn) ** 2))
    std = np.sqrt(an.var(0, ddof=1) + 1e-4)
    assert variance_loss(a).item() == pytest.approx(np.mean(np.maximum(0, 1 - std)))
    c = np.cov(an, rowvar=False)
    assert covariance_loss(a).item() == pytest.approx(((c**2).sum() - (np.diag(c) ** 2).sum()) / 3)
    # variance: a spread-out batch (std 10 everywhere) costs nothing; a collapsed one costs ~1
    assert variance_loss(10 * torch.randn(1000, 4)).item() == 0.0
    assert variance_loss(torch.zeros(8, 4)).item() == pytest.approx(1 - math.sqrt(1e-4))
    # covariance: independent coordinates ~ 0; a duplicated coordinate is penalised
    x = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1))
    assert covariance_loss(x).item() < 1e-3
    assert covariance_loss(torch.cat([x[:, :1], x[:, :1]], 1)).item() > 0.9


def test_vicreg_loss_matches_the_authors_reference() -> None:
    a, b = _pair(7, 5, seed=3)
    ref = _vicreg_reference(a.numpy(), b.numpy())
    assert VICRegLoss(5, sigma=0.0)(a, b).item() == pytest.approx(ref, rel=1e-10)


def test_against_lightly_where_installed() -> None:
    lightly_loss = pytest.importorskip("lightly.loss")
    a, b = _pair(8, 6, seed=4)
    a32, b32 = a.float(), b.float()
    ref = lightly_loss.VICRegLoss()(a32, b32).item()
    assert VICRegLoss(6)(a32, b32).item() == pytest.approx(ref, rel=1e-4)
    ref = lightly_loss.NTXentLoss(temperature=0.5)(a32, b32).item()
    assert NTXentLoss(6, temperature=0.5)(a32, b32).item() == pytest.approx(ref, rel=1e-4)


@pytest.mark.parametrize("cls", [NTXentLoss, VICRegLoss])
def test_sigma_zero_is_the_plain_loss_and_sigma_adds_the_channel(cls: type) -> None:
    a, b = _pair(16, 4, seed=5)
    a, b = a.float(), b.float()
    plain = nt_xent(a, b, 0.5) if cls is NTXentLoss else VICRegLoss(4)(a, b)
    assert cls(4, sigma=0.0).channel is None
    assert cls(4, sigma=0.0)(a, b).item() == plain.item()
    # sigma > 0: ONE batch-norm map for both views (view a's statistics, no affine), then the
    # given noise: the loss on those codes
    loss = cls(4, sigma=0.3).train()
    # noise from its own generator: with the global RNG the test depended on the tests run
    # before it (about 1 draw in 70 puts the two maps' losses within 1e-3 of each other)
    g = torch.Generator().manual_seed(0)
    na, nb = 0.3 * torch.randn(16, 4, generator=g), 0.3 * torch.randn(16, 4, generator=g)
    mu, sd = a.mean(0), torch.sqrt(a.var(0, unbiased=False) + 1e-5)
    want = cls(4, sigma=0.0)((a - mu) / sd + na, (b - mu) / sd + nb)
    per_view = cls(4, sigma=0.0)((a - mu) / sd + na, (b - b.mean(0)) / b.std(0) + nb)
    assert want.item() != pytest.approx(per_view.item(), rel=1e-3)  # the map matters here
    assert loss(a, b, noise=(na, nb)).item() == pytest.approx(want.item(), rel=1e-5)
    assert loss(a, b).item() != loss(a, b).item()  # fresh noise on every call


@pytest.mark.parametrize("cls", [NTXentLoss, VICRegLoss, InfoMaxLoss])
def test_gradients_reach_the_encoder_through_the_channel(cls: type) -> None:
    torch.manual_seed(0)
    enc = torch.nn.Linear(6, 4)
    x = torch.randn(12, 6)
    loss = cls(4, sigma=0.5)(enc(x), enc(x + 0.1 * torch.randn_like(x)))
    loss.backward()
    assert enc.weight.grad is not None and enc.weight.grad.abs().sum() > 0
    assert torch.isfinite(enc.weight.grad).all()


def test_bad_input_is_named() -> None:
    with pytest.raises(ConfigError, match="sigma"):
        NTXentLoss(4, sigma=-0.1)
    with pytest.raises(ConfigError, match="temperature"):
        NTXentLoss(4, temperature=0.0)
    with pytest.raises(ConfigError, match="cov_weight"):
        VICRegLoss(4, cov_weight=float("nan"))
    with pytest.raises(DataError, match="same shape"):
        VICRegLoss(4)(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(DataError, match=r"\(batch, 4\)"):
        NTXentLoss(4)(torch.zeros(3, 5), torch.zeros(3, 5))


def _infonce_by_hand(a: np.ndarray, b: np.ndarray, noise: np.ndarray, loss: InfoMaxLoss) -> float:
    """Minus InfoNCE (van den Oord et al. 2018) with an explicit loop, from the critic's weights:
    c = one batch-norm map for both views, view a's statistics (biased variance, eps 1e-5),
    s_ij = <g(c_b_i), h(c_a_j + n_j)> / sqrt(k), bound = mean_i [s_ii - log (1/B) sum_j exp s_ij]."""
    std = lambda z: (z - a.mean(0)) / np.sqrt(a.var(0) + 1e-5)  # noqa: E731
    ca, cb = std(a) + noise, std(b)
    crit = loss.objective.critic
    w = {k: v.detach().double().numpy() for k, v in crit.state_dict().items()}

    def mlp(x: np.ndarray, p: str) -> np.ndarray:
        h = np.maximum(x @ w[f"{p}.0.weight"].T + w[f"{p}.0.bias"], 0)
        return h @ w[f"{p}.2.weight"].T + w[f"{p}.2.bias"]

    g, h = mlp(cb, "g"), mlp(ca, "h")
    n, k = len(a), g.shape[1]
    total = 0.0
    for i in range(n):
        s = [float(g[i] @ h[j]) / math.sqrt(k) for j in range(n)]
        total += s[i] - math.log(sum(math.exp(v) for v in s) / n)
    return -total / n


@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_infomax_loss_is_minus_the_hand_computed_infonce(sigma: float) -> None:
    torch.manual_seed(0)
    a, b = _pair(6, 4, seed=3)
    loss = InfoMaxLoss(4, sigma=sigma, critic="separable", hidden=8).double().train()
    noise = sigma * torch.randn(6, 4, dtype=torch.float64)
    want = _infonce_by_hand(a.numpy(), b.numpy(), noise.numpy(), loss)
    got = loss(a, b, noise=(noise, torch.zeros_like(noise))).item()
    assert got == pytest.approx(want, rel=1e-9)
    assert got >= -math.log(6) - 1e-12  # InfoNCE never exceeds log B
    if sigma == 0:
        assert loss(a, b).item() == pytest.approx(want, rel=1e-9)  # no noise drawn at all
        assert math.isinf(loss.channel.capacity())
    else:
        assert loss(a, b).item() != loss(a, b).item()  # fresh channel noise on every call
        assert loss.channel.capacity() == pytest.approx(2 * math.log1p(1 / sigma**2))


def test_infomax_loss_reaches_its_critic_and_refuses_bad_input() -> None:
    torch.manual_seed(0)
    loss = InfoMaxLoss(4, sigma=0.2)  # the paper's concatenation MLP critic
    loss(torch.randn(8, 4), torch.randn(8, 4)).backward()
    grads = [p.grad for p in loss.parameters()]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    with pytest.raises(ConfigError, match="sigma"):
        InfoMaxLoss(4, sigma=-1.0)
    with pytest.raises(ConfigError, match="critic"):
        InfoMaxLoss(4, critic="bilinear")
    with pytest.raises(DataError, match=r"\(batch, 4\)"):
        loss(torch.zeros(3, 5), torch.zeros(3, 5))
