"""Data sources: digits, npz variants and their errors, MNIST from the shared folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dimgen.data import TensorBatches, load_data, parse_source
from dimgen.errors import DataError


def test_digits_split_is_disjoint_and_scaled() -> None:
    ds = load_data("digits")
    assert ds.shape == (1, 8, 8)
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert ds.x_train.min() >= 0.0 and ds.x_train.max() <= 1.0
    train_rows = {r.tobytes() for r in ds.x_train}
    overlap = sum(r.tobytes() in train_rows for r in ds.x_test)
    assert overlap < 5  # digits has a handful of duplicate images, no shared indices
    assert len(ds.x_test) == round(0.2 * 1797)


def test_npz_channels_last_uint8_and_labels(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(50, 12, 12, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(50) % 3)
    ds = load_data(f"npz:{tmp_path / 'd.npz'}")
    assert ds.shape == (3, 12, 12)
    assert ds.x_train.dtype == np.float32 and ds.x_train.max() <= 1.0
    assert ds.y_train is not None and len(ds.y_train) == len(ds.x_train)


def test_npz_with_explicit_split(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((10, 4)).astype(np.float32)
    split = np.array(["train"] * 7 + ["test"] * 3)
    np.savez(tmp_path / "d.npz", x=x, split=split)
    ds = load_data(f"npz:{tmp_path / 'd.npz'}")
    assert np.array_equal(ds.x_test, x[7:])


@pytest.mark.parametrize(
    "arrays,match",
    [
        ({"z": np.zeros((5, 3))}, "no array named 'x'"),
        ({"x": np.zeros((5, 3)), "y": np.zeros(4, dtype=int)}, "y has 4 entries"),
        ({"x": np.zeros((5, 3)), "y": np.zeros(5)}, "integer labels"),
        ({"x": np.zeros((5, 2, 2, 2, 2))}, "must be"),
    ],
)
def test_bad_npz_is_refused(tmp_path: Path, arrays: dict, match: str) -> None:
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=match):
        load_data(f"npz:{tmp_path / 'd.npz'}")


def test_nan_rows_are_reported(tmp_path: Path) -> None:
    x = np.zeros((20, 3), dtype=np.float32)
    x[4, 1] = np.nan
    x[11, 0] = np.inf
    np.savez(tmp_path / "d.npz", x=x)
    with pytest.raises(DataError, match=r"2 row\(s\).*rows 4, 11"):
        load_data(f"npz:{tmp_path / 'd.npz'}")


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_data(f"npz:{tmp_path / 'nope.npz'}")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable"):
        load_data(f"npz:{tmp_path / 'bad.npz'}")


def test_unknown_sources_and_missing_root(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="unknown data source"):
        parse_source("imagenet")
    with pytest.raises(DataError, match="unknown split"):
        parse_source("mnist:val")
    monkeypatch.delenv("DIMGEN_DATA", raising=False)
    with pytest.raises(DataError, match="no data root"):
        load_data("mnist")


def test_tensor_batches_cover_each_sample_once() -> None:
    x = torch.arange(10)
    batches = list(TensorBatches(x, batch_size=3, generator=torch.Generator().manual_seed(0)))
    assert len(batches) == 3
    seen = torch.cat([b[0] for b in batches])
    assert len(set(seen.tolist())) == 9


@pytest.mark.mnist
def test_genuine_mnist_from_shared_folder() -> None:
    ds = load_data("mnist", os.environ["DIMGEN_DATA"])
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.mean() == pytest.approx(0.1307, abs=1e-3)
    assert np.bincount(ds.y_test).tolist()[:3] == [980, 1135, 1032]
