"""Critics: the split first layer equals the naive concatenated critic; chunking changes nothing."""

from __future__ import annotations

import pytest
import torch

from dimgen.infomax.critics import ConcatCritic, SeparableCritic


def _naive(critic: ConcatCritic, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    pairs = torch.cat([x[:, None, :].expand(b, b, -1), y[None, :, :].expand(b, b, -1)], dim=-1)
    return critic.pair(
        pairs.reshape(b * b, -1)[:, : x.shape[1]], pairs.reshape(b * b, -1)[:, x.shape[1] :]
    ).reshape(b, b)


def test_split_first_layer_equals_concatenation() -> None:
    torch.manual_seed(0)
    critic = ConcatCritic(3, 3, hidden=32).double()
    x, y = torch.randn(17, 3, dtype=torch.float64), torch.randn(17, 3, dtype=torch.float64)
    assert torch.allclose(critic(x, y), _naive(critic, x, y), atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 5, 16])
def test_chunked_scores_and_gradients_match(chunk: int) -> None:
    torch.manual_seed(0)
    full = ConcatCritic(2, 2, hidden=16).double()
    part = ConcatCritic(2, 2, hidden=16, chunk=chunk).double()
    part.load_state_dict(full.state_dict())
    x = torch.randn(16, 2, dtype=torch.float64, requires_grad=True)
    y = torch.randn(16, 2, dtype=torch.float64)
    s_full, s_part = full(x, y), part(x, y)
    assert torch.allclose(s_full, s_part, atol=1e-12)
    g_full = torch.autograd.grad(s_full.logsumexp(1).sum(), [x, *full.parameters()])
    g_part = torch.autograd.grad(s_part.logsumexp(1).sum(), [x, *part.parameters()])
    for a, b in zip(g_full, g_part, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_separable_critic_is_a_dot_product() -> None:
    torch.manual_seed(0)
    c = SeparableCritic(2, 2, hidden=8, out=4)
    x, y = torch.randn(5, 2), torch.randn(5, 2)
    s = c(x, y)
    assert s.shape == (5, 5)
    assert torch.allclose(s.diagonal(), c.pair(x, y), atol=1e-6)


def test_critic_shape_errors_name_the_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        ConcatCritic(2, 2)(torch.zeros(4, 3), torch.zeros(4, 2))


def _pair_inputs(r: int, c: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(r, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(c, 2, generator=g, dtype=torch.float64, requires_grad=True)
    return x, y


@pytest.mark.parametrize("chunk", [0, 3, 7])
@pytest.mark.parametrize("rows", [12, 5])
def test_fused_critic_matches_plain_autograd(chunk: int, rows: int) -> None:
    # rows < 12: one process's rows against all 12 columns (data-parallel training)
    torch.manual_seed(0)
    plain = ConcatCritic(2, 2, hidden=16, fused=False).double()
    fused = ConcatCritic(2, 2, hidden=16, chunk=chunk).double()
    fused.load_state_dict(plain.state_dict())
    x, y = _pair_inputs(rows, 12)
    w = torch.randn(rows, 12, dtype=torch.float64)  # a generic upstream gradient
    s_plain, s_fused = plain(x, y), fused(x, y)
    assert s_fused.shape == (rows, 12)
    assert torch.allclose(s_plain, s_fused, atol=1e-12)
    g_plain = torch.autograd.grad((s_plain * w).sum(), [x, y, *plain.parameters()])
    g_fused = torch.autograd.grad((s_fused * w).sum(), [x, y, *fused.parameters()])
    for a, b in zip(g_plain, g_fused, strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_fused_critic_refuses_a_second_backward() -> None:
    critic = ConcatCritic(2, 2, hidden=8).double()
    x, y = _pair_inputs(4, 4)
    loss = critic(x, y).logsumexp(1).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_fused_critic_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    plain = ConcatCritic(2, 2, hidden=32, fused=False)
    fused = ConcatCritic(2, 2, hidden=32)
    fused.load_state_dict(plain.state_dict())
    x, y = torch.randn(16, 2), torch.randn(16, 2)
    outs = []
    for critic in (plain, fused):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            s = critic(x, y)
        loss = s.float().logsumexp(1).mean()
        outs.append((s.float(), torch.autograd.grad(loss, list(critic.parameters()))))
    (s_a, g_a), (s_b, g_b) = outs
    assert torch.allclose(s_a, s_b, atol=0.05)
    for a, b in zip(g_a, g_b, strict=True):
        assert a.dtype == torch.float32 and b.dtype == torch.float32
        assert torch.allclose(a, b, atol=0.02, rtol=0.05)


@pytest.mark.parametrize("chunk", [0, 8])
def test_training_loss_curve_unchanged_by_fusion_and_chunking(chunk: int) -> None:
    """Fixed seed, 8 Adam steps of the whole objective: the fused (and chunked) critic gives the
    loss curve and weights of the unfused computation on explicit concatenated pairs."""
    from dimgen.config import EncoderConfig
    from dimgen.infomax.trainer import build_model

    cfg = EncoderConfig(critic_hidden=32, critic_chunk=chunk)
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    curves, finals = [], []
    for fast in (True, False):
        torch.manual_seed(0)
        model = build_model(cfg, (1, 8, 8)).double()
        if not fast:  # the straightforward critic: explicit B x B x 2d concatenated pairs
            model.critic.forward = lambda a, b, c=model.critic: _naive(c, a, b)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        g = torch.Generator().manual_seed(2)
        curve = []
        for _ in range(8):
            x_aug = x.double() + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)
            noise = 0.2 * torch.randn(32, 2, generator=g, dtype=torch.float64)
            bound = model(x.double(), x_aug=x_aug, noise=noise)
            opt.zero_grad()
            (-bound).backward()
            opt.step()
            curve.append(float(bound.detach()))
        curves.append(curve)
        finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert curves[0] == pytest.approx(curves[1], abs=1e-9)
    assert torch.allclose(finals[0], finals[1], atol=1e-8)


@pytest.mark.gpu
@pytest.mark.parametrize("chunk", [0, 64])
def test_fused_critic_on_cuda_matches_plain(chunk: int) -> None:
    torch.manual_seed(0)
    plain = ConcatCritic(2, 2, hidden=64, fused=False).cuda()
    fused = ConcatCritic(2, 2, hidden=64, chunk=chunk).cuda()
    fused.load_state_dict(plain.state_dict())
    x, y = torch.randn(256, 2, device="cuda"), torch.randn(256, 2, device="cuda")
    for amp in (False, True):
        outs = []
        for critic in (plain, fused):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                s = critic(x, y)
            loss = s.float().logsumexp(1).mean()
            outs.append((s.float(), torch.autograd.grad(loss, list(critic.parameters()))))
        (s_a, g_a), (s_b, g_b) = outs
        tol = 0.05 if amp else 1e-4
        assert torch.allclose(s_a, s_b, atol=tol)
        for a, b in zip(g_a, g_b, strict=True):
            assert torch.allclose(a, b, atol=tol, rtol=tol)
