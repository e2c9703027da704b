"""Uniform codes that can reach capacity: the squashes, the grid metrics, and old runs.

The synthetic task has a known optimum: K = 1/(2 eps) + 1 equally likely clusters (one-hot
inputs), which an MLP encoder can map exactly onto the grid {0, 2 eps, ..., 1} where the
capacity log K is attained (Butakov et al., uniform matching). A squash that can reach the grid
gets there; the normal CDF of batch-normed outputs (``phi``) cannot.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dimgen.config import EncoderConfig, from_dict, load_run_config
from dimgen.data import Dataset
from dimgen.errors import ConfigError
from dimgen.infomax.channel import UniformChannel, axis_channel_mi, grid_fraction, grid_points
from dimgen.infomax.tokenizer import Tokenizer
from dimgen.infomax.trainer import train_encoder
from dimgen.io import load_weights, save_weights

EPS = 0.1  # K = 6 grid points {0, 0.2, ..., 1}, capacity log 6 = 1.792 nats (d = 1)
#: Tolerance on the held-out InfoNCE bound: at batch B it cannot exceed about
#: log(B / (1 + (B - 1) / K)) = 1.753 nats here (0.04 below capacity), plus finite training.
MI_TOL = 0.2
#: Tolerance on the exact channel MI of the held-out codes (no critic involved): measured here,
#: sigmoid 1.745 and clamp 1.770 of 1.792 nats after 60 epochs; phi 1.643.
MI_CH_TOL = 0.1


def _clusters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    k = len(grid_points(EPS))
    y = np.random.default_rng(seed).integers(0, k, n)
    return np.eye(k, dtype=np.float32)[y], y


def _train(squash: str, out: Path | None = None):
    x_tr, y_tr = _clusters(1024, 0)
    x_te, y_te = _clusters(1024, 1)
    cfg = EncoderConfig(prior="uniform", dim=1, eps=EPS, squash=squash, epochs=60,
                        batch_size=128, lr=5e-3, critic_hidden=32, encoder="mlp",
                        encoder_hidden=64, aug_noise=0.1, eval_batches=40)  # fmt: skip
    return train_encoder(cfg, out, data=Dataset("clusters", x_tr, y_tr, x_te, y_te))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("squash")
    return {s: _train(s, root / s) for s in ("phi", "sigmoid")}


def test_new_squash_reaches_capacity_on_the_grid(trained: dict) -> None:
    run = trained["sigmoid"]
    cap = run.metrics["capacity_nats"]
    assert cap == pytest.approx(math.log(6))
    codes = run.codes[run.split == "test"]
    assert grid_fraction(codes, EPS)[0] >= 0.95
    assert axis_channel_mi(codes, EPS)[0] >= cap - MI_CH_TOL
    assert run.metrics["mi_lower_bound_nats"] >= cap - MI_TOL


def test_phi_squash_cannot_reach_the_grid(trained: dict) -> None:
    phi, new = trained["phi"], trained["sigmoid"]
    codes = phi.codes[phi.split == "test"]
    # Phi(batch-norm) keeps E[Phi^-1(u)^2] = 1: the outer clusters stay off 0 and 1
    assert grid_fraction(codes, EPS)[0] <= 0.8
    assert axis_channel_mi(codes, EPS)[0] <= phi.metrics["capacity_nats"] - MI_CH_TOL
    assert phi.metrics["mi_lower_bound_nats"] < new.metrics["mi_lower_bound_nats"]


def test_tokens_name_the_clusters_and_round_trip(trained: dict) -> None:
    run = trained["sigmoid"]
    tok = Tokenizer.from_pretrained(run.path)
    assert tok.channel.squash_name == "sigmoid"
    x, y = _clusters(600, 2)
    ids = tok.tokens(x)[:, 0].numpy()
    # one token per cluster, all K tokens used: the grid carries the full log K nats
    assert len(np.unique(ids)) == tok.grid_size == 6
    for c in range(6):
        _, counts = np.unique(ids[y == c], return_counts=True)
        assert counts.max() / counts.sum() >= 0.95
    grid = tok.from_tokens(tok.tokens(x))
    assert torch.equal(tok.quantize(grid), tok.tokens(x))  # tokens -> grid codes -> tokens
    assert float((grid - tok.encode(x)).abs().quantile(0.95)) <= EPS / 2


def test_old_run_without_squash_loads_as_phi(trained: dict, tmp_path: Path) -> None:
    """A run folder written before the squash field existed (metadata and config without it)."""
    src = trained["phi"].path
    old = tmp_path / "old"
    old.mkdir()
    for f in src.iterdir():
        (old / f.name).write_bytes(f.read_bytes())
    tensors, meta = load_weights(old / "encoder.safetensors")
    del meta["spec"]["squash"]
    save_weights(old / "encoder.safetensors", tensors, meta)
    cfg = yaml.safe_load((old / "config.yaml").read_text())
    del cfg["squash"], cfg["split_seed"]
    cfg["seed"] = 7
    (old / "config.yaml").write_text(yaml.safe_dump(cfg))
    rec = json.loads((old / "run.json").read_text())
    del rec["artefacts"]  # such runs also predate the artefact digests
    (old / "run.json").write_text(json.dumps(rec))
    tok = Tokenizer.from_pretrained(old)
    assert tok.channel.squash_name == "phi"
    x, _ = _clusters(50, 3)
    assert torch.equal(tok.encode(x), Tokenizer.from_pretrained(src).encode(x))
    run_cfg = load_run_config(old / "config.yaml")
    assert (run_cfg.squash, run_cfg.split_seed, run_cfg.seed) == ("phi", 7, 7)
    # a foreign squash in the metadata is refused before anything is built
    meta["spec"]["squash"] = "tanh"
    save_weights(old / "encoder.safetensors", tensors, meta)
    with pytest.raises(Exception, match="squash 'tanh'"):
        Tokenizer.from_pretrained(old)
    assert json.loads((src / "metrics.json").read_text())["steps"] == 60 * (1024 // 128)


@pytest.mark.parametrize("squash", ["sigmoid", "clamp"])
def test_bounded_squashes_start_near_phi_and_can_saturate(squash: str) -> None:
    torch.manual_seed(0)
    ch = UniformChannel(3, EPS, squash).train()
    s = torch.randn(20000, 3)
    u = ch.normalise(s).detach()
    assert u.min() >= 0 and u.max() <= 1
    assert u.mean(0).numpy() == pytest.approx([0.5] * 3, abs=0.01)
    if squash == "sigmoid":  # the logistic approximation of Phi (Haley 1952): within 0.0095
        phi = UniformChannel(3, EPS, "phi").train().normalise(s)
        assert float((u - phi).abs().max()) <= 0.0095
    with torch.no_grad():
        ch.gain.mul_(50.0)  # a large gain pushes codes onto {0, 1}: the grid's end points
    u = ch.normalise(s).detach()
    assert float(((u <= EPS / 2) | (u >= 1 - EPS / 2)).float().mean()) >= 0.9
    assert {n for n, _ in ch.named_parameters()} == {"gain", "offset"}


def test_phi_squash_has_no_parameters_and_unknown_squash_is_refused() -> None:
    assert list(UniformChannel(2, EPS, "phi").parameters()) == []
    with pytest.raises(ConfigError, match="squash must be one of"):
        UniformChannel(2, EPS, "tanh")
    with pytest.raises(ConfigError, match="squash must be one of"):
        from_dict(EncoderConfig, {"prior": "uniform", "squash": "softmax"})
    with pytest.raises(ConfigError, match="squash"):
        from_dict(EncoderConfig, {"squash": 3})


def test_grid_metrics_against_closed_forms() -> None:
    for eps in (0.25, 0.1, 0.05):
        g = grid_points(eps)
        codes = np.tile(g, 50)[:, None]
        assert axis_channel_mi(codes, eps)[0] == pytest.approx(math.log(len(g)))
        assert grid_fraction(codes, eps)[0] == 1.0
    # continuous uniform codes: h(U + Z) = eps, so I = eps - log(2 eps) (0.943 at eps = 0.25)
    u = np.random.default_rng(0).uniform(size=(200_000, 2))
    assert axis_channel_mi(u, 0.25) == pytest.approx([0.25 - math.log(0.5)] * 2, abs=0.01)
    assert grid_fraction(u, 0.25) == pytest.approx([0.5, 0.5], abs=0.01)
    for bad in (np.zeros((0, 2)), np.full((3, 2), np.nan), np.zeros(3)):
        with pytest.raises(ValueError):
            grid_fraction(bad, 0.1)
    with pytest.raises(ConfigError):
        axis_channel_mi(u, 0.0)
