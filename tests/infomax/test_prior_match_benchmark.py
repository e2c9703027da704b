"""benchmarks/prior_match.py: the n = 2,000 reading is a median over random subsamples."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location(
        "prior_match", ROOT / "benchmarks" / "prior_match.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_p_2000_passes_gaussian_codes_and_rejects_light_tails() -> None:
    pm = _module()
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4000, 2))
    p, share = pm._p_2000(z, "gaussian")
    assert p > 0.05 and share >= 0.8  # calibrated: a true N(0, I) sample passes nearly always
    light = np.tanh(z) / np.tanh(z).std(0)  # unit variance, tails cut off (as on MNIST)
    p, share = pm._p_2000(light, "gaussian")
    assert p < 1e-6 and share == 0.0


def test_overrides_parse_numbers_and_names() -> None:
    pm = _module()
    assert pm._overrides("sigma=0.3, dim=8,view_norm=renorm") == {
        "sigma": 0.3,
        "dim": 8,
        "view_norm": "renorm",
    }
    assert pm._overrides("") == {}


def test_the_parts_name_which_test_fails() -> None:
    """Correlated but Gaussian-marginal codes fail the covariance part and pass the mean part."""
    pm = _module()
    rng = np.random.default_rng(1)
    z = rng.standard_normal((4000, 2))
    corr = np.stack([z[:, 0], 0.6 * z[:, 0] + 0.8 * z[:, 1]], 1)  # N(0, 1) marginals, rho 0.6
    parts: dict[str, float] = {}
    pm._p_2000(corr, "gaussian", parts)
    assert set(parts) == {"p_ks", "p_proj", "p_mean", "p_cov"}
    assert parts["p_cov"] < 1e-10 and parts["p_mean"] > 0.05 and parts["p_ks"] > 0.01
