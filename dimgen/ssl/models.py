"""The SSL networks: a CIFAR ResNet-18 backbone and the paper's projector heads.

The backbone is torchvision's ``resnet18`` with the CIFAR stem (a 3x3, stride-1 first convolution
and no max-pool, as in SimCLR's CIFAR experiments) and without its classifier: (B, 3, H, W) images
in [0, 1] -> (B, 512 * width / 64) features. ``width`` scales every stage (64: the standard
ResNet-18; smaller values give the narrow networks of CPU-scale checks).

References:
    He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (ResNet-18).
    Chen et al., SimCLR (ICML 2020), appendix B.9 (CIFAR stem); Bardes et al., VICReg (ICLR 2022),
    appendix (3-layer, 2048-d expander).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, ResNet

from ..errors import ConfigError

__all__ = ["SSLNet", "projector", "resnet18_cifar"]

#: Per-channel CIFAR-10 mean and std used to standardise [0, 1] images inside the backbone.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class _ResNet18(ResNet):
    """torchvision's ResNet-18; stage widths ``width, 2 width, 4 width, 8 width`` (64: standard).

    torchvision hard-codes 64 base channels for BasicBlock networks, so for another width the
    stem and the four stages are rebuilt with torchvision's own ``_make_layer`` (keeping
    PyTorch's default initialisation: the CPU-scale table in README.md was measured so).
    """

    def __init__(self, width: int) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2])
        if width == 64:
            return
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(BasicBlock, width, 2)
        self.layer2 = self._make_layer(BasicBlock, 2 * width, 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, 4 * width, 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, 8 * width, 2, stride=2)


def resnet18_cifar(width: int = 64, in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem (3x3 stride-1 conv1, no max-pool), no ``fc``.

    Returns a module mapping (B, C, H, W) -> (B, 8 * width). Raises :class:`ConfigError` for
    ``width < 1``.
    """
    if width < 1:
        raise ConfigError(f"width must be >= 1, got {width}")
    net = _ResNet18(width)
    net.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return net


def projector(method: str, in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """The projector head: (B, in_dim) -> (B, out_dim).

    ``simclr`` and ``dim``: Linear-BN-ReLU-Linear (2 layers; the paper: hidden 2048, output 256).
    ``vicreg``: (Linear-BN-ReLU) x 2 - Linear (3 layers; the paper: 2048-2048-2048).
    """
    if min(in_dim, hidden, out_dim) < 1:
        raise ConfigError(f"projector sizes must be >= 1, got {in_dim}, {hidden}, {out_dim}")

    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Linear(i, o, bias=False), nn.BatchNorm1d(o), nn.ReLU(inplace=True)]

    if method in ("simclr", "dim"):
        return nn.Sequential(*block(in_dim, hidden), nn.Linear(hidden, out_dim))
    if method == "vicreg":
        return nn.Sequential(*block(in_dim, hidden), *block(hidden, hidden),
                             nn.Linear(hidden, out_dim))  # fmt: skip
    raise ConfigError(f"unknown method {method!r} (expected simclr, vicreg or dim)")


class SSLNet(nn.Module):
    """Backbone + projector. ``features(x)`` (B, F) for probes; ``forward(x)`` (B, d) embeddings.

    Images are expected in [0, 1]; they are standardised with the CIFAR statistics inside.
    """

    def __init__(self, method: str, width: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.backbone = resnet18_cifar(width)
        self.feature_dim = 8 * width
        self.projector = projector(method, self.feature_dim, hidden, out_dim)
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1), persistent=False)

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 8 * width) backbone features."""
        return self.backbone((x - self.mean) / self.std)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, out_dim) projector embeddings (before the channel)."""
        return self.projector(self.features(x))
