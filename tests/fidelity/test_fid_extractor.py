"""One FID feature extractor per data set: trained once, cached, reused across runs and seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from dimgen.cli import cli

from dimgen.data import load_data
from dimgen.errors import RunFolderError
from dimgen.fidelity import load_classifier
from dimgen.fidelity.extractor import cache_dir, data_fingerprint, reference_extractor


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DIMGEN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_trained_once_then_reused_whatever_the_split(cache: Path) -> None:
    a = load_data("digits", seed=0)
    b = load_data("digits", seed=7, test_fraction=0.3)  # another split of the same images
    xa, ya = a.split("all")
    xb, yb = b.split("all")
    assert data_fingerprint(xa, ya) == data_fingerprint(xb, yb)
    first = reference_extractor(xa, ya, "digits", epochs=3)
    assert first.trained and first.path.parent == cache_dir() == cache
    assert first.accuracy >= 0.85  # held-out accuracy of the reference split, recorded
    _, meta = load_classifier(first.path)
    assert meta["accuracy"] == pytest.approx(first.accuracy) and meta["seed"] == 0
    again = reference_extractor(xb, yb, "digits", epochs=3)
    assert not again.trained
    assert (again.path, again.sha256) == (first.path, first.sha256)
    # Other training settings or other data: another extractor.
    other = reference_extractor(xa, ya, "digits", epochs=2)
    assert other.trained and other.path != first.path
    flipped = reference_extractor(xa[:, :, ::-1].copy(), ya, "digits", epochs=3)
    assert flipped.trained and flipped.sha256 != first.sha256
    # A damaged cache entry is trained again (bit-identical: fixed seed), not trusted.
    first.path.write_bytes(b"not safetensors")
    repaired = reference_extractor(xa, ya, "digits", epochs=3)
    assert repaired.trained and repaired.sha256 == first.sha256


def test_explicit_path_is_used_or_written(cache: Path, tmp_path: Path) -> None:
    x, y = load_data("digits").split("all")
    path = tmp_path / "mine.safetensors"
    made = reference_extractor(x, y, "digits", epochs=1, path=path)
    assert made.trained and made.path == path and not cache.exists()
    used = reference_extractor(x, y, "digits", epochs=5, path=path)  # exists: used as given
    assert not used.trained and used.sha256 == made.sha256
    with pytest.raises(RunFolderError, match=r"not .*\(1, 4, 4\)"):
        reference_extractor(x[:, :, :4, :4].copy(), y, "digits", epochs=1, path=path)
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(RunFolderError):
        reference_extractor(x, y, "digits", epochs=1, path=path)


def _gan(enc: Path, out: Path, seed: int, *extra: str):
    return CliRunner().invoke(cli, [
        "train-gan", str(enc), "--out", str(out), "--steps", "10", "--quiet", "--seed", str(seed),
        "--set", "classifier_epochs=2", "--set", "eval_samples=60", "--set", "sample_every=0",
        *extra,
    ])  # fmt: skip


def test_two_gan_seeds_share_one_extractor(digits_run: Path, cache: Path, tmp_path: Path) -> None:
    for seed in (1, 2):
        res = _gan(digits_run, tmp_path / f"g{seed}", seed)
        assert res.exit_code == 0, res.output
    m1, m2 = (json.loads((tmp_path / f"g{s}" / "metrics.json").read_text()) for s in (1, 2))
    assert m1["fid_extractor_sha256"] == m2["fid_extractor_sha256"]
    assert m1["fid_extractor_accuracy"] == m2["fid_extractor_accuracy"] > 0.5
    assert len(list(cache.glob("fid-extractor-digits-*.safetensors"))) == 1
    # The run folder keeps a copy of exactly that file (evaluate-gan uses it).
    import hashlib

    copy = (tmp_path / "g1" / "classifier.safetensors").read_bytes()
    assert hashlib.sha256(copy).hexdigest() == m1["fid_extractor_sha256"]
    assert np.isfinite(m1["fid_dimgen_classifier_conditional"])
    # --fid-extractor PATH: a file for other images is refused before training, in one line.
    wrong = tmp_path / "wrong.safetensors"
    x, y = load_data("digits").split("all")
    reference_extractor(x[:, :, :4, :4].copy(), y, "digits", epochs=1, path=wrong)
    res = _gan(digits_run, tmp_path / "g3", 3, "--fid-extractor", str(wrong))
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "wrong.safetensors: a classifier for images (1, 4, 4)" in res.output
    assert not (tmp_path / "g3").exists()
