"""The diffusers adapter: conditioning shapes, the null code, guidance, schedulers, missing extra."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel, UNet2DModel

from dimgen.errors import ConfigError, DataError
from dimgen.integrations.diffusers import (
    CodeConditionedUNet,
    CodeEmbedding,
    CodeTokens,
    build_unet,
    code_conditioned_unet,
    make_scheduler,
    require_diffusers,
    sample_with_scheduler,
)


def _net(code_dim: int = 3, prior: str = "gaussian", seed: int = 0) -> CodeConditionedUNet:
    torch.manual_seed(seed)
    unet = build_unet((1, 8, 8), (8, 16), 1, 8)
    net = CodeConditionedUNet(unet, CodeEmbedding(code_dim, 32, prior))
    with torch.no_grad():  # a non-zero null code, so "null" and "code 0" differ
        net.embedding.null_code.copy_(torch.randn(code_dim))
    return net.eval()


@pytest.mark.parametrize("prior", ["gaussian", "uniform"])
def test_embedding_shapes_and_null_code(prior: str) -> None:
    torch.manual_seed(0)
    emb = CodeEmbedding(5, 12, prior)
    with torch.no_grad():
        emb.null_code.copy_(torch.randn(5))
    codes = torch.randn(7, 5) if prior == "gaussian" else torch.rand(7, 5)
    out = emb(codes)
    assert out.shape == (7, 12)
    null = emb(None, batch_size=4)
    assert null.shape == (4, 12) and torch.equal(null[0], null[3])
    drop = torch.tensor([True, False, True, False, False, False, True])
    mixed = emb(codes, drop)
    assert torch.allclose(mixed[drop], null[:1].expand(3, -1), atol=1e-6)
    assert torch.allclose(mixed[~drop], out[~drop], atol=1e-6)
    assert not torch.allclose(out[0], null[0])  # a code is not the null code


def test_uniform_codes_are_standardised_to_unit_variance() -> None:
    """U[0, 1] codes enter as (c - 1/2) sqrt(12): the uniform embedding of c equals the Gaussian
    one (same weights) of the standardised c, so the projection sees zero-mean, unit-variance
    inputs under either prior."""
    g, u = CodeEmbedding(4, 8, "gaussian"), CodeEmbedding(4, 8, "uniform")
    u.load_state_dict(g.state_dict())
    c = torch.rand(6, 4)
    assert torch.allclose(u(c), g((c - 0.5) * math.sqrt(12.0)), atol=1e-6)
    z = (torch.rand(200_000, 1) - u.shift) * u.scale
    assert abs(float(z.var()) - 1.0) < 0.02


@pytest.mark.parametrize("prior", ["gaussian", "uniform"])
def test_unet_output_shape_and_guidance(prior: str) -> None:
    net = _net(3, prior)
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([0, 10, 500, 999])
    c = torch.randn(4, 3) if prior == "gaussian" else torch.rand(4, 3)
    with torch.no_grad():
        cond, null = net(x, t, c), net(x, t, None)
        assert cond.shape == null.shape == (4, 1, 8, 8)
        assert not torch.allclose(cond, null)
        assert torch.equal(net.guided(x, t, c, 1.0), cond)
        assert torch.equal(net.guided(x, t, c, 0.0), null)
        # s = 2: one batched call equals eps_null + 2 (eps_c - eps_null) (Ho & Salimans eq. 6)
        assert torch.allclose(net.guided(x, t, c, 2.0), null + 2.0 * (cond - null), atol=1e-5)


def test_bad_input_is_named() -> None:
    net = _net(3)
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(DataError, match=r"shape \(n, 3\)"):
        net(x, 5, torch.randn(2, 4))
    with pytest.raises(DataError, match="NaN"):
        net(x, 5, torch.tensor([[0.0, float("nan"), 0.0]] * 2))
    with pytest.raises(DataError, match="2 samples"):
        net(x, 5, torch.randn(3, 3))
    with pytest.raises(ConfigError, match="identity"):
        plain = UNet2DModel(sample_size=8, block_out_channels=(8, 16), norm_num_groups=8,
                            down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)  # fmt: skip
        CodeConditionedUNet(plain, CodeEmbedding(3, 32))
    with pytest.raises(ConfigError, match="time embedding is 32"):
        CodeConditionedUNet(build_unet((1, 8, 8), (8, 16), 1, 8), CodeEmbedding(3, 64))
    with pytest.raises(DataError, match="halved"):
        build_unet((1, 6, 6), (8, 16, 32), 1, 8)
    with pytest.raises(ConfigError, match="multiple of norm_num_groups"):
        build_unet((1, 8, 8), (12, 16), 1, 8)
    with pytest.raises(ConfigError, match="scheduler"):
        make_scheduler("euler")


@pytest.mark.parametrize("kind", ["ddim", "ddpm"])
def test_sampling_is_seed_deterministic(kind: str) -> None:
    net, c = _net(3), torch.randn(3, 3)

    def run(seed: int) -> torch.Tensor:
        return sample_with_scheduler(net, make_scheduler(kind), c, num_inference_steps=4,
                                     guidance_scale=1.5, generator=torch.Generator().manual_seed(seed))  # fmt: skip

    a, b, other = run(0), run(0), run(1)
    assert a.shape == (3, 1, 8, 8) and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.allclose(a, other)


def test_users_own_diffusers_scheduler_and_loop() -> None:
    """The adapter drops into a hand-written diffusers loop with the user's own scheduler."""
    net, c = _net(3), torch.randn(2, 3)
    sched = DDIMScheduler(num_train_timesteps=100, beta_schedule="linear")
    g = torch.Generator().manual_seed(3)
    ours = sample_with_scheduler(
        net, sched, c, num_inference_steps=5, guidance_scale=2.0, generator=g
    )
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    sched.set_timesteps(5)
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(net.guided(x, t, c, 2.0), t, x).prev_sample
    assert torch.allclose(ours, x, atol=1e-6)
    # null-code (unconditional) sampling from the same network
    null = sample_with_scheduler(net, DDPMScheduler(num_train_timesteps=100), None, n=2,
                                 num_inference_steps=3)  # fmt: skip
    assert null.shape == (2, 1, 8, 8)


def test_missing_diffusers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(ConfigError, match=r"pip install 'dimgen\[diffusers\]'"):
        require_diffusers()
    with pytest.raises(ConfigError, match=r"dimgen\[diffusers\]"):
        build_unet((1, 8, 8))


# --- cross-attention tokens (UNet2DConditionModel) -------------------------------------------


def _token_net(code_dim: int = 3, prior: str = "gaussian", seed: int = 0) -> CodeConditionedUNet:
    torch.manual_seed(seed)
    unet = build_unet((1, 8, 8), (8, 16), 1, 8, cross_attention_dim=16, attention_heads=2)
    net = CodeConditionedUNet(unet, CodeTokens(code_dim, 16, prior))
    with torch.no_grad():
        net.embedding.null_code.copy_(torch.randn(code_dim))
    return net.eval()


@pytest.mark.parametrize("prior", ["gaussian", "uniform"])
def test_tokens_shapes_null_code_and_standardisation(prior: str) -> None:
    """(n, d) codes -> (n, d, D) tokens: one per coordinate, the null code where dropped, and
    uniform codes standardised exactly as for the embedding."""
    torch.manual_seed(0)
    tok = CodeTokens(5, 12, prior)
    with torch.no_grad():
        tok.null_code.copy_(torch.randn(5))
    codes = torch.randn(7, 5) if prior == "gaussian" else torch.rand(7, 5)
    out = tok(codes)
    assert out.shape == (7, 5, 12)
    null = tok(None, batch_size=4)
    assert null.shape == (4, 5, 12) and torch.allclose(null[0], null[3], atol=1e-6)
    drop = torch.tensor([True, False, True, False, False, False, True])
    mixed = tok(codes, drop)
    assert torch.allclose(mixed[drop], null[:1].expand(3, -1, -1), atol=1e-6)
    assert torch.allclose(mixed[~drop], out[~drop], atol=1e-6)
    # token i depends on coordinate i only
    moved = codes.clone()
    moved[:, 2] = moved[:, 2] * 0.5 + 0.1
    diff = (tok(moved) - out).abs().amax(dim=(0, 2))
    assert diff[2] > 1e-4 and torch.all(diff[[0, 1, 3, 4]] == 0)
    g = CodeTokens(5, 12, "gaussian")
    g.load_state_dict(tok.state_dict())
    shift, scale = (0.5, math.sqrt(12.0)) if prior == "uniform" else (0.0, 1.0)
    assert torch.allclose(tok(codes), g((codes - shift) * scale), atol=1e-6)


@pytest.mark.parametrize("prior", ["gaussian", "uniform"])
def test_token_unet_shapes_and_guidance(prior: str) -> None:
    net = _token_net(3, prior)
    assert isinstance(net.unet, UNet2DConditionModel) and net.tokens
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([0, 10, 500, 999])
    c = torch.randn(4, 3) if prior == "gaussian" else torch.rand(4, 3)
    with torch.no_grad():
        cond, null = net(x, t, c), net(x, t, None)
        assert cond.shape == null.shape == (4, 1, 8, 8)
        assert not torch.allclose(cond, null)
        assert torch.equal(net.guided(x, t, c, 0.0), null)
        assert torch.allclose(net.guided(x, t, c, 2.0), null + 2.0 * (cond - null), atol=1e-5)
    imgs = sample_with_scheduler(net, make_scheduler("ddim"), c, num_inference_steps=3,
                                 generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert imgs.shape == (4, 1, 8, 8) and torch.isfinite(imgs).all()


def _tok(prior: str = "uniform") -> SimpleNamespace:
    """The two attributes code_conditioned_unet reads from a Tokenizer."""
    return SimpleNamespace(dim=2, prior_name=prior)


def test_code_conditioned_unet_builds_either_conditioning() -> None:
    emb = code_conditioned_unet(_tok(), (1, 8, 8), block_out_channels=(8, 16))
    assert isinstance(emb.embedding, CodeEmbedding) and isinstance(emb.unet, UNet2DModel)
    tok = code_conditioned_unet(_tok(), (1, 8, 8), "tokens", token_dim=24,
                                block_out_channels=(8, 16))  # fmt: skip
    assert isinstance(tok.embedding, CodeTokens) and tok.embedding.prior == "uniform"
    assert tok.unet.config.cross_attention_dim == 24
    assert tok.embedding(torch.rand(3, 2)).shape == (3, 2, 24)
    with pytest.raises(ConfigError, match="conditioning"):
        code_conditioned_unet(_tok(), (1, 8, 8), "concat")


def test_token_bad_input_is_named() -> None:
    net = _token_net(3)
    with pytest.raises(DataError, match=r"shape \(n, 3\)"):
        net(torch.randn(2, 1, 8, 8), 5, torch.randn(2, 4))
    with pytest.raises(DataError, match="NaN"):
        net(torch.randn(2, 1, 8, 8), 5, torch.tensor([[0.0, float("inf"), 0.0]] * 2))
    with pytest.raises(ConfigError, match="cross_attention_dim is 16"):
        CodeConditionedUNet(net.unet, CodeTokens(3, 8))
    with pytest.raises(ConfigError, match="UNet2DConditionModel"):
        CodeConditionedUNet(build_unet((1, 8, 8), (8, 16), 1, 8), CodeTokens(3, 16))
    with pytest.raises(ConfigError, match="UNet2DModel"):
        CodeConditionedUNet(net.unet, CodeEmbedding(3, 32))
    with pytest.raises(ConfigError, match="attention_heads"):
        build_unet((1, 8, 8), (8, 16), 1, 8, cross_attention_dim=16, attention_heads=3)
    with pytest.raises(ConfigError, match=r"must be an integer, got 2\.5"):  # was a TypeError
        build_unet((1, 8, 8), (8, 16), 1, 8, cross_attention_dim=2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("make", [_net, _token_net])
def test_misused_forward_is_a_data_error_not_a_torch_traceback(
    make: Callable[[int], CodeConditionedUNet],
) -> None:
    """Wrong channels, a timestep per other batch, a float drop mask, a numpy array of codes and a
    NaN guidance scale are named in one DataError (they were raw RuntimeError / TypeError)."""
    net, x, c = make(3), torch.randn(2, 1, 8, 8), torch.randn(2, 3)
    with pytest.raises(DataError, match=r"sample must have shape \(n, 1, H, W\)"):
        net(torch.randn(2, 3, 8, 8), 5, c)
    with pytest.raises(DataError, match=r"sample must have shape"):
        net(torch.randn(1, 8, 8), 5, c[:1])
    with pytest.raises(DataError, match=r"timestep must be a scalar or have shape \(2,\)"):
        net(x, torch.tensor([1, 2, 3]), c)
    with pytest.raises(DataError, match="drop must be a bool tensor"):
        net(x, 5, c, torch.ones(2))
    with pytest.raises(DataError, match=r"codes must be a torch\.Tensor"):
        net(x, 5, c.numpy())
    with pytest.raises(DataError, match="guidance_scale must be finite"):
        net.guided(x, 5, c, float("nan"))
    assert net(x, torch.tensor(5), c).shape == (2, 1, 8, 8)  # a 0-d timestep is fine


def test_token_unet_attends_to_pixels_only_in_its_middle_block() -> None:
    """What the docs say: every down / up transformer block cross-attends only (its first
    attention reads the tokens, width D), while diffusers' middle block always self-attends."""
    unet = _token_net(3).unet
    firsts = {
        name: mod.attn1.to_k.in_features
        for name, mod in unet.named_modules()
        if type(mod).__name__ == "BasicTransformerBlock"
    }
    mid = {k: v for k, v in firsts.items() if k.startswith("mid_block")}
    rest = {k: v for k, v in firsts.items() if not k.startswith("mid_block")}
    assert rest and set(rest.values()) == {16}  # token_dim: cross-attention
    assert mid and set(mid.values()) == {unet.config.block_out_channels[-1]}  # self-attention


def test_tiny_token_run_loss_falls_and_uses_the_code() -> None:
    """200 Adam steps on a toy set whose image is decided by the code (x0 = 0.5 tanh(c_1) A +
    0.5 tanh(c_2) B for two fixed +-1 patterns): the epsilon loss falls by more than half, and at
    mid noise levels (t in [400, 600) of 1000) the net predicts the noise better with the true
    code's tokens than with the null code's (measured: 0.036 vs 0.046), so the cross-attention
    carries the code."""
    torch.manual_seed(1)
    n, g = 256, torch.Generator().manual_seed(1)
    codes = torch.randn(n, 2, generator=g)
    a, b = torch.ones(8, 8), torch.ones(8, 8)
    a[4:], b[:, 4:] = -1.0, -1.0
    x0 = 0.5 * torch.tanh(codes[:, :1, None]) * a + 0.5 * torch.tanh(codes[:, 1:, None]) * b
    x0 = x0[:, None]  # (n, 1, 8, 8)
    net = code_conditioned_unet(
        _tok("gaussian"),
        (1, 8, 8),
        "tokens",
        token_dim=16,
        block_out_channels=(8, 16),
        attention_heads=2,
    ).train()
    sched = make_scheduler("ddpm", 1000)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)

    def batch(k: int, lo: int = 0, hi: int = 1000) -> tuple[torch.Tensor, ...]:
        i = torch.randint(n, (k,), generator=g)
        eps = torch.randn(k, 1, 8, 8, generator=g)
        t = torch.randint(lo, hi, (k,), generator=g)
        return sched.add_noise(x0[i], eps, t), t, codes[i], eps

    losses = []
    for _ in range(200):
        x_t, t, c, eps = batch(32)
        drop = torch.rand(32, generator=g) < 0.1
        loss = torch.nn.functional.mse_loss(net(x_t, t, c, drop), eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.5 * first, (first, last)
    net.eval()
    x_t, t, c, eps = batch(512, 400, 600)
    with torch.no_grad():
        err_code = float(((net(x_t, t, c) - eps) ** 2).mean())
        err_null = float(((net(x_t, t, None) - eps) ** 2).mean())
    assert err_code < 0.92 * err_null, (err_code, err_null)
