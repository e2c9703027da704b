"""Generator and discriminator networks for the code-conditional GAN (Appendix D).

G(noise, code) -> image in [0, 1]; D(image, code) -> one real score per sample. Two families:

- ``mlp``: fully connected, for tiny images or vectors (8x8 digits);
- ``dcgan``: convolutional (Radford et al., 2016) for square images whose side is a multiple of 4
  (1x28x28 MNIST, 3x32x32 CIFAR).

The discriminator is conditioned on the continuous code through a learned embedding e(c), either by
*projection* (Miyato & Koyama, 2018): D(x, c) = w^T h(x) + <h(x), e(c)>, or by *concatenation*:
D(x, c) = head([h(x), e(c)]). Spectral norm on every discriminator layer keeps it 1-Lipschitz-ish,
which is what makes the hinge loss stable without a gradient penalty.

References:
    Mirza & Osindero, "Conditional Generative Adversarial Nets", 2014.
    Miyato et al., "Spectral Normalization for Generative Adversarial Networks", ICLR 2018.
    Miyato & Koyama, "cGANs with Projection Discriminator", ICLR 2018.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError

if TYPE_CHECKING:
    from .config import GANConfig

__all__ = [
    "CodeEmbedding",
    "ConditionalHead",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "build_discriminator",
    "build_generator",
    "ema_update",
    "gan_spec",
    "resolve_arch",
]


def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(module) if enabled else module


def resolve_arch(arch: str, shape: Sequence[int]) -> str:
    """``auto`` -> ``dcgan`` for square C x H x W images with H % 4 == 0 and H >= 16, else ``mlp``."""
    shape = tuple(int(v) for v in shape)
    if arch == "auto":
        ok = len(shape) == 3 and shape[1] == shape[2] and shape[1] % 4 == 0 and shape[1] >= 16
        return "dcgan" if ok else "mlp"
    if arch == "dcgan" and not (
        len(shape) == 3 and shape[1] == shape[2] and shape[1] % 4 == 0 and shape[1] >= 8
    ):
        raise ConfigError(
            f"the dcgan architecture needs square C x H x W images with H a multiple of 4, got {shape}"
        )
    if arch not in ("mlp", "dcgan"):
        raise ConfigError(f"unknown GAN architecture {arch!r} (expected auto, mlp or dcgan)")
    return arch


class CodeEmbedding(nn.Module):
    """A small MLP embedding of the continuous code: (B, d) -> (B, out)."""

    def __init__(self, code_dim: int, out: int, sn: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _sn(nn.Linear(code_dim, out), sn), nn.LeakyReLU(0.2), _sn(nn.Linear(out, out), sn)
        )

    def forward(self, c: Tensor) -> Tensor:
        """(B, d) codes -> (B, out) embeddings."""
        return self.net(c)


class ConditionalHead(nn.Module):
    """Turns image features h (B, F) and codes c (B, d) into scores (B,), by projection or concat."""

    def __init__(self, features: int, code_dim: int, conditioning: str, sn: bool = True) -> None:
        super().__init__()
        if conditioning not in ("projection", "concat"):
            raise ConfigError(
                f"conditioning must be 'projection' or 'concat', got {conditioning!r}"
            )
        self.conditioning = conditioning
        if conditioning == "projection":
            self.embed = CodeEmbedding(code_dim, features, sn)
            self.linear = _sn(nn.Linear(features, 1), sn)
        else:
            emb = min(features, 128)
            self.embed = CodeEmbedding(code_dim, emb, sn)
            self.linear = nn.Sequential(
                _sn(nn.Linear(features + emb, features), sn),
                nn.LeakyReLU(0.2),
                _sn(nn.Linear(features, 1), sn),
            )

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        """(B, F), (B, d) -> (B,) scores."""
        e = self.embed(c)  # (B, F) or (B, emb)
        if self.conditioning == "projection":
            return self.linear(h).squeeze(1) + (h * e).sum(1)
        return self.linear(torch.cat([h, e], 1)).squeeze(1)


class MLPGenerator(nn.Module):
    """G(z, c): [z, e(c)] -> two hidden layers -> sigmoid pixels, reshaped to ``out_shape``."""

    def __init__(
        self,
        out_shape: Sequence[int],
        code_dim: int,
        noise_dim: int = 32,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        self.out_shape = tuple(int(v) for v in out_shape)
        self.code_dim, self.noise_dim = code_dim, noise_dim
        emb = min(hidden, 128)
        self.embed = CodeEmbedding(code_dim, emb)
        self.net = nn.Sequential(
            nn.Linear(noise_dim + emb, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, math.prod(self.out_shape)),
        )  # fmt: skip

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        """(B, noise_dim), (B, d) -> (B, *out_shape) in [0, 1]."""
        h = self.net(torch.cat([z, self.embed(c)], 1))  # (B, prod(out_shape))
        return torch.sigmoid(h).view(-1, *self.out_shape)


class MLPDiscriminator(nn.Module):
    """D(x, c): flatten -> two spectral-normed hidden layers h(x) -> conditional head."""

    def __init__(
        self,
        in_shape: Sequence[int],
        code_dim: int,
        hidden: int = 256,
        conditioning: str = "projection",
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(v) for v in in_shape)
        sn = spectral_norm
        self.features = nn.Sequential(
            nn.Flatten(),
            _sn(nn.Linear(math.prod(self.in_shape), hidden), sn), nn.LeakyReLU(0.2),
            _sn(nn.Linear(hidden, hidden), sn), nn.LeakyReLU(0.2),
        )  # fmt: skip
        self.head = ConditionalHead(hidden, code_dim, conditioning, sn)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """(B, *in_shape), (B, d) -> (B,) scores."""
        return self.head(self.features(x), c)


class DCGANGenerator(nn.Module):
    """G(z, c): [z, e(c)] -> (4w, H/4, H/4) -> two stride-2 transposed convs -> (C, H, H) in [0, 1]."""

    def __init__(
        self,
        out_shape: Sequence[int],
        code_dim: int,
        noise_dim: int = 64,
        width: int = 64,
    ) -> None:
        super().__init__()
        c, h, w = (int(v) for v in out_shape)
        self.out_shape = (c, h, w)
        self.code_dim, self.noise_dim = code_dim, noise_dim
        self.s0 = h // 4
        emb = 128
        self.embed = CodeEmbedding(code_dim, emb)
        self.fc = nn.Sequential(
            nn.Linear(noise_dim + emb, 4 * width * self.s0 * self.s0),
            nn.BatchNorm1d(4 * width * self.s0 * self.s0),
            nn.ReLU(),
        )
        self.width = width
        self.up = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, c, 3, padding=1),
        )  # fmt: skip

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        """(B, noise_dim), (B, d) -> (B, C, H, W) in [0, 1]."""
        h = self.fc(torch.cat([z, self.embed(c)], 1))
        h = h.view(-1, 4 * self.width, self.s0, self.s0)  # (B, 4w, H/4, W/4)
        return torch.sigmoid(self.up(h))  # (B, C, H, W)


class DCGANDiscriminator(nn.Module):
    """D(x, c): strided spectral-normed convs -> global sum pool h(x) (B, 4w) -> conditional head."""

    def __init__(
        self,
        in_shape: Sequence[int],
        code_dim: int,
        width: int = 64,
        conditioning: str = "projection",
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        c, _, _ = (int(v) for v in in_shape)
        self.in_shape = tuple(int(v) for v in in_shape)
        sn = spectral_norm
        act = nn.LeakyReLU(0.1)
        self.features = nn.Sequential(
            _sn(nn.Conv2d(c, width, 3, 1, 1), sn), act,
            _sn(nn.Conv2d(width, 2 * width, 4, 2, 1), sn), act,          # (2w, H/2, W/2)
            _sn(nn.Conv2d(2 * width, 2 * width, 3, 1, 1), sn), act,
            _sn(nn.Conv2d(2 * width, 4 * width, 4, 2, 1), sn), act,      # (4w, H/4, W/4)
            _sn(nn.Conv2d(4 * width, 4 * width, 3, 1, 1), sn), act,
        )  # fmt: skip
        self.head = ConditionalHead(4 * width, code_dim, conditioning, sn)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """(B, C, H, W), (B, d) -> (B,) scores."""
        h = self.features(x).sum((2, 3))  # (B, 4w): global sum pooling, as in SNGAN
        return self.head(h, c)


def build_generator(spec: dict[str, Any]) -> nn.Module:
    """Generator from a spec dict (``arch``, ``shape``, ``code_dim``, ``noise_dim``, ``g_width``)."""
    if spec["arch"] == "dcgan":
        return DCGANGenerator(spec["shape"], spec["code_dim"], spec["noise_dim"], spec["g_width"])
    return MLPGenerator(spec["shape"], spec["code_dim"], spec["noise_dim"], spec["g_width"])


def build_discriminator(spec: dict[str, Any]) -> nn.Module:
    """Discriminator from a spec dict (``arch``, ``shape``, ``code_dim``, ``d_width``, ...)."""
    args = (spec["shape"], spec["code_dim"], spec["d_width"], spec["conditioning"])
    if spec["arch"] == "dcgan":
        return DCGANDiscriminator(*args, spectral_norm=spec["spectral_norm"])
    return MLPDiscriminator(*args, spectral_norm=spec["spectral_norm"])


def gan_spec(cfg: GANConfig, shape: tuple[int, ...], code_dim: int) -> dict[str, Any]:
    """Everything needed to rebuild G and D (stored in the weights' metadata)."""
    return {
        "arch": resolve_arch(cfg.arch, shape),
        "shape": list(shape),
        "code_dim": code_dim,
        "noise_dim": cfg.noise_dim,
        "g_width": cfg.g_width,
        "d_width": cfg.d_width,
        "conditioning": cfg.conditioning,
        "spectral_norm": cfg.spectral_norm,
    }


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers (BN statistics) copied."""
    for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(p.detach(), 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(b)
