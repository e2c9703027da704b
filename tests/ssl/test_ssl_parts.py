"""LARS, the schedule, the batched augmentations and the CIFAR ResNet-18 of dimgen.ssl."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from dimgen.errors import ConfigError, DataError
from dimgen.ssl.augment import SSLAugment
from dimgen.ssl.lars import LARS, param_groups, warmup_cosine
from dimgen.ssl.models import SSLNet, projector, resnet18_cifar


def test_param_groups_exclude_biases_and_norm_parameters() -> None:
    net = SSLNet("simclr", 4, 16, 8)
    lars, plain = param_groups(net)
    names = {id(p): n for n, p in net.named_parameters()}
    excluded = sorted(names[id(p)] for p in plain["params"])
    assert plain["lars"] is False and plain["weight_decay"] == 0.0
    assert all(n.endswith("bias") or ".bn" in n or "downsample.1" in n or "projector.1" in n
               for n in excluded)  # fmt: skip
    assert "backbone.bn1.weight" in excluded and "projector.3.bias" in excluded
    assert all(names[id(p)].endswith("weight") and p.ndim > 1 for p in lars["params"])
    assert len(lars["params"]) + len(plain["params"]) == len(list(net.parameters()))


def test_lars_matches_the_hand_computed_update() -> None:
    w = nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w]}, {"params": [b], "lars": False, "weight_decay": 0.0}],
               lr=0.1, weight_decay=0.5, momentum=0.9, eta=0.02)  # fmt: skip
    w.grad, b.grad = torch.tensor([0.0, 1.0]), torch.tensor([2.0])
    opt.step()
    g = torch.tensor([0.0, 1.0]) + 0.5 * torch.tensor([3.0, 4.0])  # (1.5, 3): ||g|| = sqrt(11.25)
    q = 0.02 * 5.0 / math.sqrt(11.25)
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0]) - 0.1 * q * g)
    assert torch.allclose(b.detach(), torch.tensor([1.0 - 0.1 * 2.0]))  # plain SGD, no decay
    # second step: momentum buffer m = 0.9 m + q' g'
    w_before = w.detach().clone()
    w.grad, b.grad = torch.tensor([0.0, 1.0]), torch.tensor([2.0])
    opt.step()
    g2 = torch.tensor([0.0, 1.0]) + 0.5 * w_before
    q2 = 0.02 * w_before.norm() / g2.norm()
    m = 0.9 * q * g + q2 * g2
    assert torch.allclose(w.detach(), w_before - 0.1 * m)
    assert torch.allclose(b.detach(), torch.tensor([1.0 - 0.2 - 0.1 * (0.9 * 2.0 + 2.0)]))


def test_lars_refuses_bad_hyper_parameters() -> None:
    with pytest.raises(ConfigError, match="momentum"):
        LARS([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=1.0)
    with pytest.raises(ConfigError, match="lr"):
        LARS([nn.Parameter(torch.zeros(1))], lr=float("nan"))


def test_warmup_then_cosine() -> None:
    f = [warmup_cosine(s, 100, 10) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[55] == pytest.approx(0.5, abs=0.02)
    assert all(a >= b for a, b in itertools.pairwise(f[10:])) and f[-1] < 1e-3


def test_resnet18_cifar_stem_and_shapes() -> None:
    net = resnet18_cifar(64)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity) and isinstance(net.fc, nn.Identity)
    assert sum(p.numel() for p in net.parameters()) == 11_168_832  # ResNet-18 minus fc, 3x3 stem
    narrow = resnet18_cifar(8)
    assert narrow(torch.rand(2, 3, 32, 32)).shape == (2, 64)
    assert [len(projector("simclr", 64, 32, 16)), len(projector("vicreg", 64, 32, 16))] == [4, 7]
    with pytest.raises(ConfigError, match="width"):
        resnet18_cifar(0)


def test_augmentations_shapes_ranges_determinism() -> None:
    x = torch.rand(10, 3, 32, 32)
    aug = SSLAugment(32, groups=5)
    a1 = aug(x, torch.Generator().manual_seed(0))
    a2 = aug(x, torch.Generator().manual_seed(0))
    a3 = aug(x, torch.Generator().manual_seed(1))
    assert a1.shape == x.shape and a1.dtype == torch.float32
    assert a1.min() >= 0.0 and a1.max() <= 1.0
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)
    assert not torch.equal(a1, x)
    # groups draw independent parameters: the 5 chunks do not all share one crop
    assert len({tuple(c.flatten()[:4].tolist()) for c in (a1 - x).tensor_split(5)}) > 1
    state = torch.get_rng_state()
    aug(x, torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
    with pytest.raises(DataError, match=r"\(B, 3, H, W\)"):
        aug(torch.rand(2, 1, 32, 32))
