"""Critics: the split first layer equals the naive concatenated critic; chunking changes nothing."""

from __future__ import annotations

import pytest
import torch

from dimgen.critics import ConcatCritic, SeparableCritic


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
