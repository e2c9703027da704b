"""The train/test split has its own seed: --seed changes the initialisation, not the split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from dimgen.cli import cli

from dimgen.config import EncoderConfig
from dimgen.infomax.trainer import train_encoder


@pytest.fixture(scope="module")
def indexed_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 rows whose label is their row index: a run's held-out labels name its test rows."""
    path = tmp_path_factory.mktemp("npz") / "indexed.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.uniform(size=(200, 6)).astype(np.float32), y=np.arange(200))
    return path


def _test_rows(run_dir: Path) -> set[int]:
    with np.load(run_dir / "codes.npz") as f:
        return set(f["labels"][f["split"] == "test"].tolist())


def _encode(tmp: Path, name: str, npz: Path, *sets: str) -> Path:
    out = tmp / name
    args = ["encode", "--data", f"npz:{npz}", "--out", str(out), "--quiet",
            "--set", "epochs=2", "--set", "critic=separable", "--set", "batch_size=48",
            "--set", "eval_batches=1", *[a for s in sets for a in ("--set", s)]]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.filterwarnings("ignore:The number of unique classes")
def test_runs_with_different_seeds_share_the_split(indexed_npz: Path, tmp_path: Path) -> None:
    a = _encode(tmp_path, "a", indexed_npz, "seed=0")
    b = _encode(tmp_path, "b", indexed_npz, "seed=1")
    c = _encode(tmp_path, "c", indexed_npz, "seed=0", "split_seed=5")
    assert len(_test_rows(a)) == 40  # test_fraction 0.2 of 200 rows
    assert _test_rows(a) == _test_rows(b)  # same split seed (the default): same test rows
    assert _test_rows(a) != _test_rows(c)  # another split seed: another split
    with np.load(a / "codes.npz") as fa, np.load(b / "codes.npz") as fb:
        assert not np.array_equal(fa["codes"], fb["codes"])  # the seed still changes the model
    ma, mc = (json.loads((r / "metrics.json").read_text()) for r in (a, c))
    assert (ma["seed"], ma["split_seed"]) == (0, 0) and (mc["seed"], mc["split_seed"]) == (0, 5)
    # an epoch is floor(n_train / batch) steps: 160 training rows, batch 48 -> 3 steps
    assert (ma["steps_per_epoch"], ma["steps"]) == (160 // 48, 2 * (160 // 48))


def test_split_seed_is_validated_and_recorded_in_the_config(tmp_path: Path) -> None:
    from dimgen.config import from_dict
    from dimgen.errors import ConfigError

    with pytest.raises(ConfigError, match="split_seed"):
        from_dict(EncoderConfig, {"split_seed": 0.5})
    run = train_encoder(EncoderConfig(epochs=1, split_seed=3, seed=2, critic="separable",
                                      eval_batches=1), tmp_path / "r")  # fmt: skip
    text = (tmp_path / "r" / "config.yaml").read_text()
    assert "split_seed: 3" in text and "seed: 2" in text
    assert run.metrics["n_train"] + run.metrics["n_test"] == 1797  # all digits, one split
