"""Discrete tokens of uniform codes: usage and perplexity, the vocabulary in metrics, report and
export, and the ``steps`` squash that anneals codes onto the grid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dimgen.errors import ConfigError, DataError, DimgenError
from dimgen.infomax.channel import (
    UniformChannel,
    grid_fraction,
    grid_points,
    make_channel,
    token_ids,
    token_usage,
)
from dimgen.infomax.encoders import build_encoder
from dimgen.infomax.tokenizer import Tokenizer


def _tok(prior: str = "uniform", eps: float = 0.1, dim: int = 2) -> Tokenizer:
    spec = {"encoder": "mlp", "in_shape": [1, 8, 8], "dim": dim, "encoder_hidden": 16,
            "prior": prior, "sigma": 0.2, "eps": eps}  # fmt: skip
    return Tokenizer(build_encoder("mlp", (1, 8, 8), dim, 16), make_channel(prior, dim, 0.2, eps),
                     spec)  # fmt: skip


@pytest.mark.parametrize("k", [2, 3, 6, 11])
def test_perplexity_of_uniform_use_is_k_and_of_one_token_is_1(k: int) -> None:
    ids = np.stack([np.arange(k).repeat(7), np.zeros(7 * k, dtype=np.int64)], 1)  # (7k, 2)
    u = token_usage(ids, k)
    assert u["histogram"][0] == [7] * k and u["histogram"][1] == [7 * k] + [0] * (k - 1)
    assert u["perplexity"][0] == pytest.approx(k) and u["perplexity"][1] == pytest.approx(1.0)
    assert u["entropy_ratio"] == pytest.approx([1.0, 0.0], abs=1e-12)
    assert u["perplexity_mean"] == pytest.approx((k + 1) / 2)
    assert u["used"] == [k, 1]
    # two tokens at 3:1 -> entropy -(3/4 log 3/4 + 1/4 log 1/4)
    u = token_usage(np.array([[0], [0], [0], [1]]), k)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert u["entropy_nats"][0] == pytest.approx(h) and u["perplexity"][0] == pytest.approx(
        math.exp(h)
    )


def test_token_usage_refuses_bad_ids() -> None:
    for ids, match in [(np.array([[0, 6]]), r"\[0, 5\]"), (np.array([[-1, 0]]), r"\[0, 5\]"),
                       (np.array([[0.0, 1.0]]), "integers"), (np.zeros((0, 2), int), "n >= 1"),
                       (np.array([1, 2]), r"\(n, d\)")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            token_usage(ids, 6)
    with pytest.raises(ValueError, match="k >= 2"):
        token_usage(np.zeros((2, 2), int), 1)


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.15, 0.25, 0.5])
def test_token_ids_round_trip_to_grid_values(eps: float) -> None:
    g = grid_points(eps)
    k = len(g)
    ids = np.stack([np.arange(k), np.arange(k)[::-1]], 1)
    tok = _tok(eps=eps)
    codes = tok.from_tokens(ids).numpy()
    np.testing.assert_allclose(codes, g[ids], atol=1e-6)  # ids -> the grid's values
    assert np.array_equal(token_ids(codes, eps), ids)  # and back, exactly
    assert np.array_equal(tok.quantize(codes).numpy(), ids)  # the Tokenizer agrees
    # codes off the grid by less than eps go to their nearest point; outside [0, 1] are clipped
    jitter = np.random.default_rng(0).uniform(-0.9 * eps, 0.9 * eps, codes.shape)
    assert np.array_equal(token_ids(np.clip(codes + jitter, g[0] - 0.5, None), eps), ids)


def test_tokenizer_vocabulary_and_usage() -> None:
    tok = _tok(eps=0.1, dim=3)
    v = tok.vocabulary
    assert v["grid_size"] == 6 and v["axes"] == 3 and v["grid_step"] == pytest.approx(0.2)
    assert v["bits_per_image"] == pytest.approx(3 * math.log2(6))  # log2 of 6^3 codes
    ids = np.tile(np.arange(6)[:, None], (5, 3))
    u = tok.token_usage(ids)
    assert u["perplexity"] == pytest.approx([6.0, 6.0, 6.0])
    assert u["perplexity_mean"] == pytest.approx(6.0)
    with pytest.raises(DataError, match=r"\[0, 5\]"):
        tok.token_usage(np.full((2, 3), 6))
    with pytest.raises(DataError, match=r"\(n, 3\)"):
        tok.token_usage(np.zeros((2, 2), np.int64))


def test_gaussian_tokenizer_refuses_every_token_call() -> None:
    tok = _tok(prior="gaussian")
    calls = {"tokens": lambda: tok.tokens(np.zeros((2, 8, 8))), "vocabulary": lambda: tok.vocabulary,
             "token_usage": lambda: tok.token_usage(np.zeros((2, 2), np.int64)),
             "quantize": lambda: tok.quantize(np.zeros((2, 2))),
             "from_tokens": lambda: tok.from_tokens(np.zeros((2, 2), np.int64))}  # fmt: skip
    for name, call in calls.items():
        with pytest.raises(DimgenError, match=r"uniform-prior encoder.*gaussian") as info:
            call()
        assert "\n" not in str(info.value), name


def test_steps_squash_puts_codes_on_the_grid_as_the_temperature_rises() -> None:
    ch = UniformChannel(2, 0.1, "steps", temperature=1.0).eval().requires_grad_(False)
    ch.calibrate([torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))])
    x = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1))
    near = []
    for t in (1.0, 8.0, 64.0):
        ch.set_temperature(t)
        c = ch.normalise(x)
        assert float(c.min()) >= 0 and float(c.max()) <= 1
        near.append(float(grid_fraction(c, 0.1).mean()))
    assert near[0] < 0.6 < near[1] < 0.9 < near[2]  # ~ 1/2 (a ramp), ~ 1 - 2.2 / T
    assert token_usage(token_ids(c, 0.1), 6)["used"] == [6, 6]  # every grid point reached
    # the temperature is part of the state, so a loaded channel codes alike
    other = UniformChannel(2, 0.1, "steps")
    other.load_state_dict(ch.state_dict())
    assert float(other.temperature) == 64.0
    assert torch.equal(other.eval().normalise(x), c)
    with pytest.raises(ConfigError, match="only steps"):
        UniformChannel(2, 0.1, "sigmoid").set_temperature(2.0)
    with pytest.raises(ConfigError, match="> 0"):
        ch.set_temperature(float("nan"))


def test_squash_temperature_is_annealed_geometrically() -> None:
    from dimgen.config import EncoderConfig
    from dimgen.infomax.trainer import squash_temperature

    cfg = EncoderConfig(prior="uniform", squash="steps", squash_temp_start=1.0, squash_temp=16.0)
    temps = [squash_temperature(cfg, e, 5) for e in range(5)]
    assert temps == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0])
    assert squash_temperature(cfg, 0, 1) == 16.0  # a one-epoch run trains at the final value


def test_uniform_run_reports_its_tokens(digits_uniform_run: Path, tmp_path: Path) -> None:
    from dimgen.infomax.hub import export_config
    from dimgen.io import read_run

    m = json.loads((digits_uniform_run / "metrics.json").read_text())
    t = m["tokens"]
    assert t["grid_size"] == 6 and t["axes"] == 2
    assert t["bits_per_image"] == pytest.approx(2 * math.log2(6))
    assert sum(t["histogram"][0]) == m["n_test"] and len(t["histogram"][1]) == 6
    assert all(1.0 <= p <= 6.0 for p in t["perplexity"])
    # the same numbers from the run's held-out codes through the Tokenizer
    codes = np.load(digits_uniform_run / "codes.npz")
    test = codes["split"] == "test"
    tok = Tokenizer.from_pretrained(digits_uniform_run)
    u = tok.token_usage(tok.quantize(codes["codes"][test]))
    assert u["perplexity"] == pytest.approx(t["perplexity"], rel=1e-6)
    assert "perplexity" in (digits_uniform_run / "report.md").read_text()
    run_dir, rec = read_run(digits_uniform_run, "encoder")
    vocab = export_config(run_dir, rec)["vocabulary"]
    assert vocab["grid_size"] == 6 and vocab["bits_per_image"] == pytest.approx(2 * math.log2(6))
    tok.save_pretrained(tmp_path / "export")
    card = (tmp_path / "export" / "README.md").read_text()
    assert "K = 6 grid points per axis x d = 2 axes = 5.17 bits per image" in card


def test_gaussian_run_has_no_tokens(digits_run: Path) -> None:
    m = json.loads((digits_run / "metrics.json").read_text())
    assert "tokens" not in m


def test_steps_run_keeps_its_final_temperature(tmp_path: Path) -> None:
    from dimgen.config import EncoderConfig
    from dimgen.data import load_data
    from dimgen.infomax.trainer import train_encoder

    cfg = EncoderConfig(prior="uniform", eps=0.25, squash="steps", squash_temp=20.0, epochs=3,
                        max_train=400, curve_every=0)  # fmt: skip
    run = train_encoder(cfg, tmp_path / "run", progress=False)
    tok = Tokenizer.from_pretrained(tmp_path / "run")
    assert float(tok.channel.temperature) == pytest.approx(20.0)  # the last epoch's T, saved
    assert tok.spec["squash"] == "steps"
    x_train = load_data("digits", None, cfg.test_fraction, cfg.split_seed).x_train
    # the loaded tokenizer codes the training images exactly as the run did
    np.testing.assert_allclose(tok.encode(x_train[:20]).numpy(), run.codes[:20], atol=1e-5)
