"""Issue 10: no weights file is ever unpickled, hostile structure and damaged files are refused
with one line (exit 2), written files follow the umask, and a failed write names its file."""

from __future__ import annotations

import errno
import gzip
import json
import os
import pickle
import stat
import struct
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from dimgen.cli import cli

from dimgen import fidelity as fd
from dimgen.config import EncoderConfig, load_config
from dimgen.data import load_data
from dimgen.errors import ConfigError, DataError, RunFolderError, WriteError
from dimgen.io import MAX_DEPTH, load_weights, read_run, save_weights, write_json, write_run


class _Evil:
    """Unpickling this object creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _one_line_exit_2(res) -> str:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


@pytest.fixture(scope="module")
def inception_state() -> dict[str, torch.Tensor]:
    """A randomly initialised torch-fidelity InceptionV3 state dict (no download, no pickle)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fi

    with (
        mock.patch.object(fi, "load_state_dict_from_url", lambda *a, **k: None),
        mock.patch.object(fi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None),
    ):
        model = fi.FeatureExtractorInceptionV3("tmp", ["2048"])
    return {k: v.clone() for k, v in model.state_dict().items()}


def _payloads(tmp: Path, marker: Path, state: dict[str, torch.Tensor]) -> list[Path]:
    """Pickles that would touch ``marker``: bare, inside a dict, hidden among real Inception weights."""
    bare = tmp / "bare.pth"
    bare.write_bytes(pickle.dumps(_Evil(marker)))
    in_dict = tmp / "in-dict.pth"
    torch.save({"fc.weight": _Evil(marker)}, in_dict)
    hidden = tmp / "hidden.pth"
    torch.save({**state, "extra": _Evil(marker)}, hidden)
    return [bare, in_dict, hidden]


# ---------------------------------------------------------------------------------------------
# 1. weights are never unpickled


def test_inception_weights_load_safely_from_pth_and_safetensors(
    inception_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    from safetensors.torch import save_file
    from torch_fidelity.utils import create_feature_extractor

    torch.save(inception_state, tmp_path / "w.pth")
    save_file(inception_state, str(tmp_path / "w.safetensors"))
    for path in (tmp_path / "w.pth", tmp_path / "w.safetensors"):
        assert fd.find_inception_weights(path) == path
        name = fd.register_inception_extractor()
        ext = create_feature_extractor(name, ["2048"], cuda=False,
                                       feature_extractor_weights_path=str(path))  # fmt: skip
        assert torch.equal(ext.fc.weight, inception_state["fc.weight"])
        assert torch.equal(ext.Mixed_7c.branch_pool.conv.weight,
                           inception_state["Mixed_7c.branch_pool.conv.weight"])  # fmt: skip
    # a plain tensor dict that is not InceptionV3
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="not torch-fidelity's InceptionV3"):
        fd.find_inception_weights(tmp_path / "other.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ConfigError, match="not a plain tensor file"):
        fd.find_inception_weights(tmp_path / "empty.pth")


def test_pickle_payloads_never_run_through_the_library(
    inception_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    marker = tmp_path / "PWNED"
    x = np.random.default_rng(0).random((8, 1, 8, 8)).astype(np.float32)
    for path in _payloads(tmp_path, marker, inception_state):
        with pytest.raises(ConfigError, match="refused without unpickling"):
            fd.find_inception_weights(path)
        # the library entry point that hands the file to torch-fidelity
        with pytest.raises(ConfigError, match="refused without unpickling"):
            fd.fidelity_metrics(x, x, None, "x", inception_weights=path)
    assert not marker.exists()


def test_pickle_payloads_never_run_through_the_cli_flag_or_the_hub_cache(
    digits_gan_run: Path,
    inception_state: dict[str, torch.Tensor],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = tmp_path / "PWNED"
    for path in _payloads(tmp_path, marker, inception_state):
        res = CliRunner().invoke(
            cli, ["evaluate-gan", str(digits_gan_run), "--inception-weights", str(path), "-n", "20"]
        )
        assert "refused without unpickling" in _one_line_exit_2(res)
    # the same file planted where torch-fidelity looks by default (torch hub's cache)
    home = tmp_path / "torch-home"
    cache = home / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(pickle.dumps(_Evil(marker)))
    monkeypatch.setenv("TORCH_HOME", str(home))
    res = CliRunner().invoke(cli, ["evaluate-gan", str(digits_gan_run), "-n", "20"])
    line = _one_line_exit_2(res)
    assert str(cache) in line and "refused without unpickling" in line
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# 3. a split suffix that a command would ignore is refused


def test_split_suffix_is_refused_where_it_would_be_ignored(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not honour the ':test' suffix"):
        load_data("digits:test")
    res = CliRunner().invoke(
        cli, ["encode", "--data", "digits:test", "--out", str(tmp_path / "r"), "--set", "epochs=1"]
    )
    assert "does not honour the ':test' suffix" in _one_line_exit_2(res)
    assert not (tmp_path / "r" / "run.json").exists()


# ---------------------------------------------------------------------------------------------
# 6. labels and damaged MNIST files


@pytest.mark.parametrize(
    "y,match",
    [
        (np.r_[np.zeros(10, np.int64), -np.ones(10, np.int64)], "10 label.s. are negative"),
        (np.r_[np.zeros(19, np.int64), 10**12], "label 1000000000000 is larger"),
    ],
)
def test_negative_and_huge_labels_are_refused_at_load_time(
    tmp_path: Path, y: np.ndarray, match: str
) -> None:
    x = np.random.default_rng(0).random((20, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(DataError, match=match):
        load_data(f"npz:{tmp_path / 'd.npz'}")
    with pytest.raises(DataError, match=match):  # the API entry point that counts classes
        fd.train_classifier(x[:, None], y, epochs=1)
    res = CliRunner().invoke(
        cli, ["encode", "--data", f"npz:{tmp_path / 'd.npz'}", "--out", str(tmp_path / "r")]
    )
    assert _one_line_exit_2(res)


def _idx(shape: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, 8, len(shape)]) + b"".join(struct.pack(">I", s) for s in shape) + payload


@pytest.mark.parametrize(
    "damage,match",
    [
        ("truncated-gz", "damaged or truncated"),
        ("header-too-large", r"header says shape \(60000, 28, 28\)"),
        ("bad-magic", "bad magic number"),
    ],
)
def test_damaged_mnist_files_name_the_file(tmp_path: Path, damage: str, match: str) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    n_tr, n_te = 12, 6
    files = {
        "train-images-idx3-ubyte": _idx((n_tr, 28, 28), bytes(n_tr * 784)),
        "train-labels-idx1-ubyte": _idx((n_tr,), bytes(n_tr)),
        "t10k-images-idx3-ubyte": _idx((n_te, 28, 28), bytes(n_te * 784)),
        "t10k-labels-idx1-ubyte": _idx((n_te,), bytes(n_te)),
    }
    for stem, blob in files.items():
        (raw / f"{stem}.gz").write_bytes(gzip.compress(blob))
    assert load_data("mnist", str(tmp_path)).x_train.shape == (n_tr, 1, 28, 28)  # intact: loads
    bad = raw / "train-images-idx3-ubyte.gz"
    if damage == "truncated-gz":
        bad.write_bytes(bad.read_bytes()[:-20])
    elif damage == "header-too-large":
        bad.write_bytes(gzip.compress(_idx((60000, 28, 28), bytes(n_tr * 784))))
    else:
        bad.write_bytes(gzip.compress(b"\x00\x00\x0d\x03" + files["train-images-idx3-ubyte"][4:]))
    with pytest.raises(DataError, match=match) as err:
        load_data("mnist", str(tmp_path))
    assert str(bad) in str(err.value)


# ---------------------------------------------------------------------------------------------
# 7. hostile structure: depth, size, aliases


def _deep_json(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def test_deeply_nested_json_is_refused_in_every_metadata_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(_deep_json(100_000))
    with pytest.raises(RunFolderError, match=f"nested 100000 levels deep .at most {MAX_DEPTH}."):
        read_run(run, "encoder")
    res = CliRunner().invoke(cli, ["evaluate", str(run)])
    assert "nested" in _one_line_exit_2(res)
    # metrics.json of a complete run
    write_run(run, "encoder", spec={})
    (run / "metrics.json").write_text("[" * 50_000 + "]" * 50_000)
    res = CliRunner().invoke(cli, ["evaluate", str(run)])
    assert "metrics.json is nested 50000 levels deep" in _one_line_exit_2(res)
    # safetensors metadata (the JSON inside a weights file)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "w.safetensors"),
              metadata={"dimgen": _deep_json(20_000)})  # fmt: skip
    with pytest.raises(RunFolderError, match="dimgen metadata is nested 20000 levels deep"):
        load_weights(tmp_path / "w.safetensors")
    # a deep string is data, not structure: brackets inside strings are not counted
    save_weights(tmp_path / "ok.safetensors", {"w": torch.zeros(2)}, {"note": "[" * 5000})
    assert load_weights(tmp_path / "ok.safetensors")[1]["note"] == "[" * 5000


@pytest.mark.parametrize(
    "text,match",
    [
        ("epochs: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested more than"),
        ("epochs:\n" + "".join("  " * i + "- \n" for i in range(1, 200)), "nested more than"),
        (
            'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
            + "".join(
                f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
                for p, c in zip("abcdefgh", "bcdefghi", strict=True)
            )
            + "epochs: *i\n",
            "anchors / aliases",
        ),
    ],
    ids=["deep-flow", "deep-block", "billion-laughs"],
)
def test_hostile_yaml_configs_are_refused(tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(cfg, EncoderConfig)
    res = CliRunner().invoke(cli, ["encode", "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert match.split()[0] in _one_line_exit_2(res)
    assert not (tmp_path / "r").exists()


def test_set_values_are_parsed_with_the_same_bounds(tmp_path: Path) -> None:
    deep = "[" * 50_000 + "]" * 50_000
    res = CliRunner().invoke(
        cli, ["encode", "--set", f"epochs={deep}", "--out", str(tmp_path / "r")]
    )
    assert "nested more than" in _one_line_exit_2(res)


# ---------------------------------------------------------------------------------------------
# 8. file modes and failed writes


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        save_weights(tmp_path / "w.safetensors", {"w": torch.zeros(2)}, {})
    finally:
        os.umask(old)
    for name in ("m.json", "w.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


def test_full_disk_and_read_only_folder_name_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "run" / "metrics.json"
    write_json(target, {"old": True})
    real_write = Path.write_text

    def full(self: Path, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(WriteError, match=f"could not write {target} .No space left on device."):
        write_json(target, {"new": True})
    monkeypatch.setattr(Path, "write_text", real_write)
    assert json.loads(target.read_text()) == {"old": True}  # the older file is intact
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]  # no temp left

    import safetensors.torch

    def full_st(*a, **k):
        raise safetensors.SafetensorError("Error while serializing: No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full_st)
    with pytest.raises(WriteError, match=r"could not write .*w.safetensors .*No space left"):
        save_weights(tmp_path / "run" / "w.safetensors", {"w": torch.zeros(2)}, {})
    monkeypatch.undo()

    if os.geteuid() != 0:  # root ignores folder permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            with pytest.raises(WriteError, match=f"could not write {ro / 'x.json'}"):
                write_json(ro / "x.json", {})
        finally:
            ro.chmod(0o755)


def test_full_disk_in_the_cli_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    codes = np.random.default_rng(0).standard_normal((300, 2)).astype(np.float32)
    np.savez(tmp_path / "c.npz", codes=codes)
    import dimgen.io as dio

    real = dio.tempfile.mkstemp

    def full(*a, **k):
        if "evaluation.json" in str(k.get("prefix", "")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*a, **k)

    monkeypatch.setattr(dio.tempfile, "mkstemp", full)
    res = CliRunner().invoke(cli, ["evaluate", "--codes", str(tmp_path / "c.npz"), "--no-plots",
                                   "--no-probes", "--out", str(tmp_path / "ev"), "--quiet"])  # fmt: skip
    line = _one_line_exit_2(res)
    assert "evaluation.json" in line and "No space left on device" in line


# ---------------------------------------------------------------------------------------------
# 5. what is exact and what is approximate


def test_report_says_which_p_values_are_approximate() -> None:
    import dimgen
    from dimgen.diagnostics.runs import evaluation_markdown

    codes = np.random.default_rng(0).standard_normal((400, 2))
    text = evaluation_markdown(dimgen.evaluate(codes, probes=False), images=False)
    assert "Every p-value is exact" not in text and "exact null" not in text
    assert "exact up to Monte Carlo error down to about 1e-3, approximate below" in text


def test_disk_full_at_a_checkpoint_leaves_a_resumable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while writing the second checkpoint: one line naming it; --resume then finishes
    with exactly the numbers of an uninterrupted run."""
    import safetensors.torch

    args = ["--epochs", "6", "--set", "checkpoint_every=2", "--set", "deterministic=true",
            "--quiet"]  # fmt: skip
    real, calls = safetensors.torch.save_file, []

    def fail_second(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise safetensors.SafetensorError("Error while serializing: No space left on device")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", fail_second)
    full = tmp_path / "full"
    res = CliRunner().invoke(cli, ["encode", *args, "--out", str(full)])
    line = _one_line_exit_2(res)
    assert f"could not write {full / 'checkpoint.safetensors'}" in line and "No space" in line
    assert not (full / "run.json").exists() and (full / "checkpoint.safetensors").is_file()
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    res = CliRunner().invoke(cli, ["encode", "--resume", str(full), "--quiet"])
    assert res.exit_code == 0, res.output
    whole = tmp_path / "whole"
    assert CliRunner().invoke(cli, ["encode", *args, "--out", str(whole)]).exit_code == 0
    a, b = np.load(full / "codes.npz"), np.load(whole / "codes.npz")
    assert np.array_equal(a["codes"], b["codes"])
