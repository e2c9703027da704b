"""The diffusers adapter: conditioning shapes, the null code, guidance, schedulers, missing extra."""

from __future__ import annotations

import math
import sys

import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from dimgen.errors import ConfigError, DataError
from dimgen.integrations.diffusers import (
    CodeConditionedUNet,
    CodeEmbedding,
    build_unet,
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
