"""benchmarks/prior_match.py: the n = 2,000 reading is a median over random subsamples."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dimgen.errors import ConfigError

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


def test_a_setting_without_equals_is_refused_not_the_preset() -> None:
    """``--setting epochs`` trained the preset (100 epochs) under the name "epochs"."""
    with pytest.raises(ConfigError, match="expects KEY=VALUE items, got 'epochs'"):
        _module()._overrides("sigma=0.3,epochs")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--setting", "epochs"], "got 'epochs'"),
        (["--base", "epochs=1", "--out", "{file}/rows.json"], "cannot write --out"),
        (["--config"], "requires an argument"),
        (["--config", "{file}/none.yaml"], "does not exist"),
        (["--no-such-option"], "No such option"),
    ],
)
def test_bad_options_are_one_line_and_exit_2_before_any_training(
    tmp_path: Path, args: list[str], words: str
) -> None:
    """An --out under a file failed with a traceback after all the training."""
    (tmp_path / "file").write_text("x")
    args = [a.replace("{file}", str(tmp_path / "file")) for a in args]
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "prior_match.py"), *args],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and words in res.stderr
    assert res.stdout == ""  # nothing trained, no row printed
