"""Tokenizer: encoding, prior samples, and discrete tokens on the uniform grid."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dimgen.errors import ConfigError, DataError, RunFolderError
from dimgen.infomax.channel import make_channel
from dimgen.infomax.encoders import build_encoder
from dimgen.infomax.tokenizer import Tokenizer


def _tok(prior: str = "uniform", eps: float = 0.1, dim: int = 2) -> Tokenizer:
    """An untrained tokenizer: enough for the grid arithmetic, which depends only on eps."""
    spec = {"encoder": "mlp", "in_shape": [1, 8, 8], "dim": dim, "encoder_hidden": 16,
            "prior": prior, "sigma": 0.2, "eps": eps}  # fmt: skip
    enc = build_encoder("mlp", (1, 8, 8), dim, 16)
    return Tokenizer(enc, make_channel(prior, dim, 0.2, eps), spec)


@pytest.mark.parametrize(
    ("eps", "k", "last"),
    [(0.1, 6, 1.0), (0.25, 3, 1.0), (0.5, 2, 1.0), (0.125, 5, 1.0), (1 / 6, 4, 1.0),
     (0.05, 11, 1.0), (0.15, 4, 0.9), (0.3, 2, 0.6)],
)  # fmt: skip
def test_grid_size_and_points(eps: float, k: int, last: float) -> None:
    tok = _tok(eps=eps)
    assert tok.grid_size == k
    assert tok.grid_step == pytest.approx(2 * eps)
    pts = tok.from_tokens(np.arange(k)[:, None].repeat(2, 1))[:, 0].numpy()
    assert pts[0] == 0.0
    assert pts[-1] == pytest.approx(last, abs=1e-7)
    np.testing.assert_allclose(np.diff(pts), 2 * eps, atol=1e-6)  # evenly spaced by 2 eps
    if math.isclose(last, 1.0):
        assert pts[-1] == np.float32(1.0)  # exactly 1 at the top of a whole grid


@settings(max_examples=60, deadline=None)
@given(
    eps=st.sampled_from([0.05, 0.1, 0.125, 0.15, 1 / 6, 0.2, 0.25, 0.3, 0.5]),
    dim=st.integers(1, 4),
    data=st.data(),
)
def test_tokens_round_trip_exactly_on_grid_points(
    eps: float, dim: int, data: st.DataObject
) -> None:
    tok = _tok(eps=eps, dim=dim)
    k = tok.grid_size
    ids = np.array(data.draw(st.lists(st.lists(st.integers(0, k - 1), min_size=dim, max_size=dim),
                                      min_size=1, max_size=20)), dtype=np.int64)  # fmt: skip
    grid = tok.from_tokens(ids)
    assert grid.dtype == torch.float32
    back = tok.quantize(grid)
    assert back.dtype == torch.int64
    assert torch.equal(back, torch.from_numpy(ids))  # ids -> codes -> ids, exactly
    assert torch.equal(tok.from_tokens(back), grid)  # grid points are fixed points, bit for bit


def test_quantize_picks_the_nearest_point_and_clips() -> None:
    tok = _tok(eps=0.1)  # grid 0, .2, .4, .6, .8, 1
    codes = torch.tensor([[0.09, 0.11], [0.51, 0.49], [-0.3, 1.7], [0.99, 0.0]])
    assert tok.quantize(codes).tolist() == [[0, 1], [3, 2], [0, 5], [5, 0]]
    tok = _tok(eps=0.15)  # grid 0, .3, .6, .9: codes above .9 clip to the last token
    assert tok.quantize(torch.tensor([[0.97, 0.44]])).tolist() == [[3, 1]]


def test_bad_tokens_and_codes() -> None:
    tok = _tok(eps=0.1)
    with pytest.raises(DataError, match=r"\[0, 5\]"):
        tok.from_tokens(np.array([[0, 6]]))
    with pytest.raises(DataError, match="integers"):
        tok.from_tokens(np.array([[0.0, 1.0]]))
    with pytest.raises(DataError, match=r"\(n, 2\)"):
        tok.from_tokens(np.array([[0, 1, 2]]))
    with pytest.raises(DataError, match=r"\(n, 2\)"):
        tok.quantize(np.zeros((3, 5)))
    with pytest.raises(DataError, match="NaN"):
        tok.quantize(np.array([[np.nan, 0.0]]))


def test_tokens_need_a_uniform_prior(digits_run: Path) -> None:
    tok = Tokenizer.from_pretrained(digits_run)
    assert tok.prior_name == "gaussian"
    for call in (lambda: tok.tokens(np.zeros((2, 8, 8))), lambda: tok.grid_size,
                 lambda: tok.from_tokens(np.zeros((1, 2), np.int64))):  # fmt: skip
        with pytest.raises(ConfigError, match="uniform"):
            call()


def test_tokens_of_a_trained_uniform_encoder(digits_uniform_run: Path) -> None:
    from sklearn.datasets import load_digits

    tok = Tokenizer.from_pretrained(digits_uniform_run)
    x = load_digits().images / 16.0  # (N, 8, 8) grey images
    ids = tok.tokens(x)
    codes = tok.encode(x)
    assert ids.shape == (len(x), 2) and ids.dtype == torch.int64
    assert int(ids.min()) >= 0 and int(ids.max()) <= tok.grid_size - 1 == 5
    assert torch.equal(ids, tok.quantize(codes))
    # The nearest grid point is at most eps away on every axis.
    assert float((tok.from_tokens(ids) - codes).abs().max()) <= 0.1 + 1e-6
    # Uniform codes use the whole grid: every token value occurs on both axes.
    for axis in range(2):
        assert len(torch.unique(ids[:, axis])) == 6


def test_encode_accepts_common_layouts(digits_run: Path) -> None:
    from sklearn.datasets import load_digits

    tok = Tokenizer.from_pretrained(digits_run)
    x = (load_digits().images[:10] / 16.0).astype(np.float32)
    ref = tok.encode(x[:, None])  # (N, 1, 8, 8)
    assert ref.shape == (10, 2)
    torch.testing.assert_close(tok.encode(x), ref)  # (N, 8, 8)
    torch.testing.assert_close(tok.encode(x.reshape(10, 64)), ref)  # flattened
    torch.testing.assert_close(tok.encode(torch.from_numpy(x)), ref)
    torch.testing.assert_close(tok.encode(x[0]), ref[:1])  # one (8, 8) image
    torch.testing.assert_close(
        tok.encode((x * 255).round().astype(np.uint8)), ref, atol=0.05, rtol=0
    )
    with pytest.raises(DataError, match="expects"):
        tok.encode(np.zeros((3, 28, 28)))


def test_sample_prior_shapes_and_seeds(digits_run: Path, digits_uniform_run: Path) -> None:
    for run in (digits_run, digits_uniform_run):
        tok = Tokenizer.from_pretrained(run)
        a, b, c = (
            tok.sample_prior(500, seed=1),
            tok.sample_prior(500, seed=1),
            tok.sample_prior(500, seed=2),
        )
        assert a.shape == (500, tok.dim) == (500, 2)
        assert torch.equal(a, b) and not torch.equal(a, c)
        if tok.prior_name == "uniform":
            assert float(a.min()) >= 0 and float(a.max()) <= 1
        else:
            assert abs(float(a.mean())) < 0.15 and abs(float(a.std()) - 1) < 0.1
        with pytest.raises(DataError, match="n must be >= 1"):
            tok.sample_prior(0)


def test_from_weights_matches_and_wrong_folder(digits_run: Path, tmp_path: Path) -> None:
    shutil.copy(digits_run / "encoder.safetensors", tmp_path / "enc.safetensors")
    x = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    a = Tokenizer.from_pretrained(digits_run).encode(x)
    b = Tokenizer.from_weights(tmp_path / "enc.safetensors").encode(x)
    assert torch.equal(a, b)
    with pytest.raises(RunFolderError, match="not a dimgen run folder"):
        Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(RunFolderError, match="not a dimgen encoder"):
        Tokenizer.from_weights(digits_run / "critic.safetensors")


def test_example_tokenizer_generator_runs(digits_run: Path) -> None:
    """examples/tokenizer_generator.py: a plain-torch generator driven by the Tokenizer's codes."""
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "examples" / "tokenizer_generator.py"
    assert len(script.read_text().splitlines()) < 60
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, str(script), str(digits_run)], capture_output=True,
                         text=True, timeout=600, env=env)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    consistency = float(res.stdout.split("conditional consistency ")[1].split("%")[0])
    assert consistency > 30  # chance is 10%
