"""Hostile input: pickles never load, non-finite data and divergence are reported, kinds are checked."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from dimgen.cli import cli

from dimgen.config import EncoderConfig
from dimgen.errors import DimgenError, RunFolderError, TrainingError
from dimgen.infomax.tokenizer import Tokenizer
from dimgen.infomax.trainer import train_encoder
from dimgen.io import FORMAT_VERSION, read_run, write_run


class _Evil:
    """Unpickling this object creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _fake_run(folder: Path, kind: str = "encoder") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_run(folder, kind, spec={})
    return folder


def test_pickled_weights_are_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    run = _fake_run(tmp_path / "run")
    payload = pickle.dumps(_Evil(marker))
    (run / "encoder.safetensors").write_bytes(payload)
    torch.save({"x": _Evil(marker)}, run / "encoder.pt")
    with pytest.raises(RunFolderError, match="not a valid safetensors"):
        Tokenizer.from_pretrained(run)
    res = CliRunner().invoke(
        cli, ["encode", "--encoder", str(run), "--data", "digits", "--out", str(tmp_path / "c.npz")]
    )
    assert res.exit_code == 2 and "not a valid safetensors" in res.output
    # a pickle disguised as data or config is refused too
    (tmp_path / "evil.npz").write_bytes(payload)
    res = CliRunner().invoke(
        cli, ["encode", "--data", f"npz:{tmp_path / 'evil.npz'}", "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 2
    (tmp_path / "evil.yaml").write_text(
        "!!python/object/apply:pathlib.Path.touch [" + json.dumps(str(marker)) + "]\n"
    )
    res = CliRunner().invoke(
        cli, ["encode", "--config", str(tmp_path / "evil.yaml"), "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 2
    assert not marker.exists()


def test_object_arrays_in_npz_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    np.savez(tmp_path / "o.npz", x=np.array([_Evil(marker)] * 5, dtype=object))
    res = CliRunner().invoke(
        cli, ["encode", "--data", f"npz:{tmp_path / 'o.npz'}", "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 2 and not marker.exists()


def test_wrong_kind_future_format_and_incomplete_runs(tmp_path: Path) -> None:
    gan = _fake_run(tmp_path / "gan", kind="gan")
    with pytest.raises(RunFolderError, match="'gan' run folder; expected encoder"):
        read_run(gan, "encoder")
    future = _fake_run(tmp_path / "future")
    rec = json.loads((future / "run.json").read_text())
    (future / "run.json").write_text(json.dumps({**rec, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(RunFolderError, match="format version"):
        read_run(future, "encoder")
    half = _fake_run(tmp_path / "half")
    (half / "run.json").write_text(json.dumps({**rec, "complete": False}))
    with pytest.raises(RunFolderError, match="incomplete"):
        read_run(half, "encoder")
    (half / "run.json").write_text("{not json")
    with pytest.raises(RunFolderError, match="corrupt"):
        read_run(half, "encoder")


def test_nan_in_data_is_reported_before_training(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((40, 8, 8)).astype(np.float32)
    x[7, 3, 3] = np.nan
    np.savez(tmp_path / "d.npz", x=x)
    res = CliRunner().invoke(
        cli, ["encode", "--data", f"npz:{tmp_path / 'd.npz'}", "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 2 and "rows 7" in res.output
    assert not (tmp_path / "r").exists()


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder: dict = {}

    def poison(epoch: int, _: float) -> None:
        if epoch == 4:  # after the checkpoint of epoch 4 (checkpoint_every=2), break the weights
            with torch.no_grad():
                for p in holder["model"].parameters():
                    p.fill_(float("nan"))

    import dimgen.infomax.trainer as tr

    real_build = tr.build_model

    def spy(*a, **k):
        holder["model"] = real_build(*a, **k)
        return holder["model"]

    tr.build_model = spy
    try:
        with pytest.raises(TrainingError, match="last good checkpoint kept"):
            train_encoder(EncoderConfig(epochs=10, checkpoint_every=2), out, on_epoch=poison)
    finally:
        tr.build_model = real_build
    from dimgen.io import load_weights

    tensors, meta = load_weights(out / "checkpoint.safetensors")
    assert meta["epoch"] == 4
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("model."))
    assert not (out / "run.json").exists()


def test_errors_are_one_family() -> None:
    assert issubclass(RunFolderError, DimgenError) and issubclass(TrainingError, DimgenError)
