"""Batched augmentations: the paper's pixel noise and the (non-paper) random affine warp."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dimgen.config import EncoderConfig, replace
from dimgen.errors import ConfigError
from dimgen.infomax.augment import GaussianPixelNoise, RandomAffine, build_augmentation


def _blob(
    n: int, side: int = 28, at: tuple[float, float] = (13.5, 13.5), r: float = 2.0
) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    img = torch.exp(-((yy - at[0]) ** 2 + (xx - at[1]) ** 2) / (2 * r**2)).float()
    return img.expand(n, 1, side, side).clone()


def _centre_of_mass(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 2) centre of mass (row, column) in pixels."""
    side = x.shape[-1]
    grid = torch.arange(side, dtype=x.dtype)
    m = x.sum((1, 2, 3))
    rows = (x.sum((1, 3)) * grid).sum(1) / m
    cols = (x.sum((1, 2)) * grid).sum(1) / m
    return torch.stack([rows, cols], 1)


def test_zero_parameters_are_the_identity() -> None:
    x = torch.rand(4, 1, 28, 28)
    aug = RandomAffine()
    assert aug.identity
    assert aug(x) is x


def test_shifts_move_the_centre_of_mass_by_at_most_shift_times_side() -> None:
    torch.manual_seed(0)
    x = _blob(512)
    y = RandomAffine(shift=0.1)(x)
    delta = _centre_of_mass(y) - _centre_of_mass(x)
    limit = 0.1 * 28
    assert delta.abs().max() <= limit + 0.05  # bilinear sampling: sub-pixel slack
    # uniform on [-2.8, 2.8]: the spread covers most of the range, and is centred
    assert delta.abs().max() > 0.8 * limit
    assert abs(float(delta.mean())) < 0.3
    assert float(delta.std()) == pytest.approx(limit / math.sqrt(3), rel=0.15)
    # a shift keeps the blob's mass (it stays well inside the image)
    assert torch.allclose(y.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=1e-3)


def test_rotations_keep_the_centre_and_move_an_off_centre_blob_on_a_circle() -> None:
    torch.manual_seed(0)
    centred = _blob(64)
    y = RandomAffine(rotate=30)(centred)
    assert torch.allclose(_centre_of_mass(y), _centre_of_mass(centred), atol=0.05)
    off = _blob(256, at=(13.5, 21.5))  # 8 pixels right of the rotation centre
    c = _centre_of_mass(RandomAffine(rotate=30)(off)) - 13.5
    radius = c.norm(dim=1)
    assert torch.allclose(radius, torch.full_like(radius, c.norm(dim=1).mean()), atol=0.1)
    angles = torch.rad2deg(torch.atan2(c[:, 0], c[:, 1]))
    assert angles.abs().max() <= 30.5 and angles.abs().max() > 25


def test_zoom_scales_the_spread_of_a_blob_within_bounds() -> None:
    torch.manual_seed(0)
    x = _blob(256, r=3.0)
    y = RandomAffine(scale=0.2)(x)
    ratio = (y.sum((1, 2, 3)) / x.sum((1, 2, 3))).sqrt()  # mass ~ zoom^2 for a 2-D blob
    assert ratio.min() >= 0.8 - 0.02 and ratio.max() <= 1.2 + 0.02
    assert ratio.max() - ratio.min() > 0.3


def test_each_image_gets_its_own_warp_and_the_theta_bounds_hold() -> None:
    torch.manual_seed(0)
    aug = RandomAffine(shift=0.1, rotate=15, scale=0.1)
    y = aug(_blob(8))
    assert not torch.allclose(y[0], y[1])
    theta = aug.theta(10_000, torch.device("cpu"), torch.float32)
    assert theta.shape == (10_000, 2, 3)
    lin = theta[:, :, :2]
    zoom = 1 / lin.det().sqrt()  # det = 1 / zoom^2
    assert zoom.min() >= 0.9 - 1e-5 and zoom.max() <= 1.1 + 1e-5
    assert theta[:, :, 2].abs().max() <= 0.2 + 1e-6  # 2 * shift in normalised coordinates


def test_affine_rejects_non_images_and_bad_parameters() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        RandomAffine(shift=0.1)(torch.zeros(4, 64))
    for kwargs in ({"shift": 0.5}, {"rotate": -1.0}, {"scale": float("nan")}):
        with pytest.raises(ValueError):
            RandomAffine(**kwargs)


def test_build_augmentation_is_the_papers_pixel_noise_without_affine() -> None:
    aug = build_augmentation(0.3, (1, 28, 28))
    assert isinstance(aug, GaussianPixelNoise) and aug.std == 0.3
    seq = build_augmentation(0.3, (1, 28, 28), shift=0.1, rotate=10)
    assert isinstance(seq, nn.Sequential)
    assert isinstance(seq[0], RandomAffine) and isinstance(seq[1], GaussianPixelNoise)
    assert seq.state_dict() == {}  # nothing for checkpoints: old runs still load
    with pytest.raises(ConfigError, match="C x H x W"):
        build_augmentation(0.3, (64,), shift=0.1)
    with pytest.raises(ConfigError, match="shift"):
        build_augmentation(0.3, (1, 28, 28), shift=0.7)


@pytest.mark.parametrize(
    "key, value",
    [("aug_shift", 0.5), ("aug_shift", -0.1), ("aug_scale", float("inf")), ("aug_rotate", 181.0)],
)
def test_config_rejects_out_of_range_affine_fields(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=key):
        replace(EncoderConfig(), **{key: value})


def test_training_with_the_affine_augmentation_learns_on_digits() -> None:
    from dimgen.infomax.trainer import train_encoder

    cfg = EncoderConfig(epochs=15, seed=0, aug_shift=0.1, aug_rotate=10, checkpoint_every=0)
    run = train_encoder(cfg)
    m = run.metrics
    assert m["mi_lower_bound_nats"] > 1.0  # far above 0: the codes carry information
    assert m["kl_upper_bound_nats"] == pytest.approx(m["capacity_nats"] - m["mi_lower_bound_nats"])
    assert m["knn_acc"] > 2 * m["chance_acc"]
