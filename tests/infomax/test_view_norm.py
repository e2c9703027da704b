"""One normalisation map for both views (EncoderConfig.view_norm) and the per-epoch certificate."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dimgen.config import EncoderConfig
from dimgen.errors import ConfigError
from dimgen.infomax.channel import GaussianChannel, UniformChannel
from dimgen.infomax.trainer import build_model, train_encoder


def _views(seed: int = 0, b: int = 64, d: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h = 2.0 + 3.0 * torch.randn(b, d, generator=g, dtype=torch.float64)
    # the augmented view: a narrower, shifted cloud, as the issue measured on MNIST
    return h, 0.8 * h + 0.5 + 0.1 * torch.randn(b, d, generator=g, dtype=torch.float64)


def test_shared_maps_both_views_with_the_clean_views_batch_statistics() -> None:
    h, h_aug = _views()
    ch = GaussianChannel(3, 0.1).double().train()
    c, c_aug = ch.normalise_views(h, h_aug, "shared")
    mu, sd = h.mean(0), torch.sqrt(h.var(0, unbiased=False) + ch.norm.eps)
    torch.testing.assert_close(c, (h - mu) / sd)
    torch.testing.assert_close(c_aug, (h_aug - mu) / sd)
    # the paper's constraint holds on every batch for the view that carries the noise
    torch.testing.assert_close(
        (c**2).mean(0), torch.ones(3, dtype=torch.float64), atol=1e-4, rtol=0
    )
    # the augmented cloud keeps its narrower scale: per-view statistics would hide it
    assert float((c_aug**2).mean()) < 0.8
    _, c_aug_pv = GaussianChannel(3, 0.1).double().train().normalise_views(h, h_aug, "per-view")
    assert float((c_aug_pv**2).mean()) == pytest.approx(1.0, abs=1e-3)
    # running statistics: updated once, from the clean view, exactly as BatchNorm1d(h) does
    bn = torch.nn.BatchNorm1d(3, affine=False).double().train()
    bn(h)
    torch.testing.assert_close(ch.norm.running_mean, bn.running_mean)
    torch.testing.assert_close(ch.norm.running_var, bn.running_var)
    assert int(ch.norm.num_batches_tracked) == 1


def test_renorm_has_the_running_maps_value_and_the_batch_maps_gradient() -> None:
    h, h_aug = _views(1)
    ch = GaussianChannel(3, 0.1).double().train()
    ch.norm.running_mean.fill_(1.5)
    ch.norm.running_var.fill_(4.0)
    h.requires_grad_(True)
    c, c_aug = ch.normalise_views(h, h_aug, "renorm")
    sd = math.sqrt(4.0 + ch.norm.eps)
    torch.testing.assert_close(c, (h - 1.5) / sd)
    torch.testing.assert_close(c_aug, (h_aug - 1.5) / sd)
    # value of the running map, gradient of the batch map: the sum of standardised clean codes
    # does not depend on h through the batch statistics' centring -> gradient 0, unlike (h-1.5)/sd
    (g,) = torch.autograd.grad(c.sum(), h)
    assert float(g.abs().max()) < 1e-8
    assert float(ch.norm.running_mean[0]) != 1.5  # tracked after the map was taken


@pytest.mark.parametrize("channel", [GaussianChannel(2, 0.2), UniformChannel(2, 0.1, "sigmoid")])
def test_evaluation_uses_the_running_map_for_both_views(channel) -> None:
    h, h_aug = _views(2, d=2)
    ch = channel.double().eval()
    c, c_aug = ch.normalise_views(h, h_aug, "shared")
    torch.testing.assert_close(c, ch.normalise(h))
    torch.testing.assert_close(c_aug, ch.normalise(h_aug))


@pytest.mark.parametrize("view_norm", ["shared", "per-view"])
def test_training_bound_is_the_certified_bound_on_the_same_batch(view_norm: str) -> None:
    """With one map, the quantity training climbs is the quantity the certificate reports."""
    cfg = EncoderConfig(dim=2, sigma=0.3, view_norm=view_norm)
    torch.manual_seed(0)
    model = build_model(cfg, (8, 8)).double()
    x = torch.rand(96, 8, 8, dtype=torch.float64)
    x_aug = 0.7 * x + 0.1 * torch.rand(96, 8, 8, dtype=torch.float64)  # a narrower view
    noise = 0.3 * torch.randn(96, 2, dtype=torch.float64)
    train_value = float(model.train()(x, x_aug, noise).detach())
    model.channel.calibrate([model.encoder(x).detach()])  # fixed statistics of this batch
    certified = float(model.eval()(x, x_aug, noise))
    if view_norm == "shared":
        assert train_value == pytest.approx(certified, abs=1e-9)
    else:
        assert abs(train_value - certified) > 1e-3


def test_unknown_view_norm_is_one_config_error() -> None:
    from dimgen.config import validate

    with pytest.raises(ConfigError, match="view_norm"):
        validate(EncoderConfig(view_norm="both"))
    with pytest.raises(ConfigError, match=r"sigreg .* needs prior gaussian"):
        validate(EncoderConfig(prior="uniform", sigreg=1.0))


def _log(path: Path) -> list[dict[str, float]]:
    with (path / "log.csv").open() as fh:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]


def test_every_epoch_logs_the_certified_curve(tmp_path: Path) -> None:
    run = train_encoder(EncoderConfig(epochs=12, seed=0), tmp_path / "r")
    rows = _log(tmp_path / "r")
    assert [r["epoch"] for r in rows] == list(range(1, 13))
    cap = run.metrics["capacity_nats"]
    for r in rows:
        assert r["kl_bound"] == pytest.approx(cap - r["certified_mi"], abs=1e-9)
        assert 0.0 <= r["knn5"] <= 1.0 and r["prior_ratio"] > 0
    # the curve climbs on digits, and its end agrees with the final certificate
    assert rows[-1]["certified_mi"] > rows[0]["certified_mi"] + 0.5
    assert rows[-1]["certified_mi"] == pytest.approx(run.metrics["mi_lower_bound_nats"], abs=0.15)
    assert rows[-1]["knn5"] == pytest.approx(run.metrics["knn_acc"], abs=0.05)
    # the training bound (batch statistics) stays near the certified one with one shared map
    assert abs(rows[-1]["bound"] - rows[-1]["certified_mi"]) < 0.2
    assert (tmp_path / "r" / "curves.png").stat().st_size > 0


def test_curve_every_zero_turns_the_curve_off_and_changes_no_weight(tmp_path: Path) -> None:
    on = train_encoder(EncoderConfig(epochs=3, seed=0, curve_every=1), tmp_path / "on")
    off = train_encoder(EncoderConfig(epochs=3, seed=0, curve_every=0), tmp_path / "off")
    assert "certified_mi" not in _log(tmp_path / "off")[0]
    # the evaluation restores the statistics and the RNG: training is unchanged, bit for bit
    for (k, a), b in zip(
        on.model.state_dict().items(), off.model.state_dict().values(), strict=True
    ):
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(a, b), k
    np.testing.assert_array_equal(on.codes, off.codes)


def test_the_report_and_metrics_carry_the_curve(tmp_path: Path) -> None:
    import json

    train_encoder(EncoderConfig(epochs=5, seed=0), tmp_path / "r")
    curve = json.loads((tmp_path / "r" / "metrics.json").read_text())["curve"]
    assert [c["epoch"] for c in curve] == [1, 2, 3, 4, 5]
    logged = _log(tmp_path / "r")  # pytest >= 9's approx compares no list of dicts
    assert len(curve) == len(logged) and all(
        c == pytest.approx(row) for c, row in zip(curve, logged, strict=True)
    )
    report = (tmp_path / "r" / "report.md").read_text()
    assert "## The certificate over training" in report
    assert f"| 5 | {curve[-1]['bound']:.3f} | {curve[-1]['certified_mi']:.3f} |" in report
