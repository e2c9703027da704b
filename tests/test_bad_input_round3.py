"""Issue 22, bad input round 3: exported models are untrusted input, exports are written whole,
image folders follow one scale rule, and nothing fails after training that could be checked
before it. Each test fails on the code before the fix."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from dimgen.cli import cli
from safetensors import safe_open
from safetensors.torch import save_file
from sklearn.datasets import load_digits

from dimgen.errors import ConfigError, DataError, RunFolderError
from dimgen.infomax.tokenizer import Tokenizer
from dimgen.io import folder_lock, load_spec_module, save_weights


def _one_line_exit_2(res) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "internal error" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output
    return res.output


def _export(run: Path, out: Path) -> Path:
    res = CliRunner().invoke(cli, ["export", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def _tamper(file: Path, change) -> str:
    """Rewrite a safetensors file with ``change(tensors)`` applied, metadata kept; returns the
    name of the first floating tensor (the one changed by the callers below)."""
    with safe_open(str(file), framework="pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[name] = change(tensors[name])
    save_file(tensors, str(file), metadata=meta)
    return name


# --- exported models and every weights loader --------------------------------------------------


def _nan(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[0] = float("nan")
    return t


def _inf(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[-1] = float("inf")
    return t


@pytest.mark.parametrize("change", [_nan, _inf], ids=["nan", "inf"])
def test_export_with_non_finite_weights_is_refused_naming_the_tensor(
    digits_run: Path, tmp_path: Path, change
) -> None:
    out = _export(digits_run, tmp_path / "export")
    name = _tamper(out / "model.safetensors", change)
    # keep the digest consistent: an attacker rewrites config.json too
    cfg = json.loads((out / "config.json").read_text())
    cfg.pop("model_sha256", None)
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunFolderError, match=f"tensor {name} holds 1 NaN or inf"):
        Tokenizer.from_pretrained(out)


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, torch.int64])
def test_integer_or_bool_weights_are_refused_naming_tensor_and_dtype(
    digits_run: Path, tmp_path: Path, dtype: torch.dtype
) -> None:
    file = tmp_path / "encoder.safetensors"
    shutil.copyfile(digits_run / "encoder.safetensors", file)
    name = _tamper(file, lambda t: (t * 100).to(dtype))  # right shape, wrong dtype
    dname = str(dtype).replace("torch.", "")
    with pytest.raises(RunFolderError, match=f"tensor {name} has dtype {dname}"):
        Tokenizer.from_weights(file)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64, torch.bfloat16])
def test_other_float_dtypes_are_cast(digits_run: Path, tmp_path: Path, dtype) -> None:
    file = tmp_path / "encoder.safetensors"
    shutil.copyfile(digits_run / "encoder.safetensors", file)
    _tamper(file, lambda t: t.to(dtype))
    x = load_digits().images[:100] / 16.0
    a, b = Tokenizer.from_weights(file).encode(x), Tokenizer.from_pretrained(digits_run).encode(x)
    assert b.dtype == torch.float32 and torch.isfinite(a).all()
    assert (a - b).abs().max() < (0.2 if dtype == torch.bfloat16 else 0.05)


def test_the_shared_loader_guards_gan_diffusion_classifier_and_flow_files(tmp_path: Path) -> None:
    """load_spec_module (GAN generator, diffusion net), the classifier and flow loaders go
    through io.load_model_weights: the same refusals for each."""
    from dimgen.fidelity import Classifier, load_classifier, save_classifier
    from dimgen.flows.prior import _load_flow

    def build(spec):
        return torch.nn.Sequential(torch.nn.Linear(spec["n"], 3), torch.nn.BatchNorm1d(3))

    net = build({"n": 4})
    gen = tmp_path / "generator.safetensors"
    save_weights(gen, net.state_dict(), {"kind": "generator", "spec": {"n": 4}})
    module, _ = load_spec_module(gen, "generator", build, "a dimgen generator")
    assert torch.equal(module[0].weight, net[0].weight)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["0.weight"][1, 2] = float("nan")
    save_weights(gen, state, {"kind": "generator", "spec": {"n": 4}})
    with pytest.raises(RunFolderError, match=re.escape("tensor 0.weight holds 1 NaN")):
        load_spec_module(gen, "generator", build, "a dimgen generator")
    state = {**net.state_dict(), "1.running_var": torch.ones(3, dtype=torch.int8)}
    save_weights(gen, state, {"kind": "generator", "spec": {"n": 4}})
    with pytest.raises(RunFolderError, match=re.escape("tensor 1.running_var has dtype int8")):
        load_spec_module(gen, "generator", build, "a dimgen generator")
    state = {**net.state_dict(), "1.num_batches_tracked": torch.tensor(0.5)}  # float counter
    save_weights(gen, state, {"kind": "generator", "spec": {"n": 4}})
    with pytest.raises(RunFolderError, match="num_batches_tracked has dtype float32"):
        load_spec_module(gen, "generator", build, "a dimgen generator")

    clf_file = tmp_path / "classifier.safetensors"
    clf = Classifier((1, 8, 8), 10, 4)
    save_classifier(clf_file, clf)
    state = {k: (v * 50).to(torch.int8) if v.is_floating_point() else v
             for k, v in clf.state_dict().items()}  # fmt: skip
    save_weights(clf_file, state, {"kind": "classifier",
                                   "spec": {"in_shape": [1, 8, 8], "n_classes": 10, "width": 4}})  # fmt: skip
    with pytest.raises(RunFolderError, match="has dtype int8"):
        load_classifier(clf_file)

    pytest.importorskip("nflows")
    from dimgen.flows.backend import build_backend

    arch = {"backend": "nflows", "dim": 2, "layers": 1, "hidden": 4, "blocks": 1, "kind": "maf"}
    flow = build_backend(arch).double()
    flow_file = tmp_path / "flow.safetensors"
    state = {k: v.clone() for k, v in flow.state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key].view(-1)[0] = float("inf")
    save_weights(flow_file, state, {"kind": "flow", "arch": arch})
    with pytest.raises(RunFolderError, match=f"tensor {key} holds 1 NaN or inf"):
        _load_flow(flow_file)


def test_a_checkpoint_with_nan_weights_is_refused_on_resume(tmp_path: Path) -> None:
    from dimgen.training.checkpoint import CheckpointState, load_checkpoint, save_checkpoint

    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters())
    state = CheckpointState(modules={"net": net}, optimizers={"opt": opt})
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, state, kind="encoder", unit="epoch", done=1, history=[], config={})
    load_checkpoint(path, state, kind="encoder")  # a good one loads
    _tamper(path, _nan)
    with pytest.raises(RunFolderError, match="NaN or inf"):
        load_checkpoint(path, state, kind="encoder")


def test_export_refuses_a_run_with_non_finite_weights_before_writing(
    digits_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    _tamper(run / "encoder.safetensors", _nan)
    from dimgen.io import refresh_digests

    refresh_digests(run)
    out = tmp_path / "export"
    assert "NaN or inf" in _one_line_exit_2(
        CliRunner().invoke(cli, ["export", str(run), "--out", str(out)])
    )
    assert not out.exists()


# --- exports are written whole, under the folder lock, with the smoke marker --------------------


def test_a_full_disk_during_export_leaves_nothing_and_the_rerun_works(
    digits_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "export"
    real = Path.write_text

    def full_disk(self: Path, *args, **kwargs):
        if self.name.startswith(".README.md."):  # atomic_path's temporary card file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    res = CliRunner().invoke(cli, ["export", str(digits_run), "--out", str(out)])
    assert "No space left on device" in _one_line_exit_2(res) and "rerun" in res.output
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no temporary folder either
    with pytest.raises(RunFolderError):
        Tokenizer.from_pretrained(out)
    monkeypatch.setattr(Path, "write_text", real)
    _export(digits_run, out)  # the advised rerun
    x = load_digits().images[:20] / 16.0
    assert torch.equal(Tokenizer.from_pretrained(out).encode(x),
                       Tokenizer.from_pretrained(digits_run).encode(x))  # fmt: skip


def test_an_incomplete_or_mixed_export_is_refused_in_one_line(
    digits_run: Path, digits_uniform_run: Path, tmp_path: Path
) -> None:
    out = _export(digits_run, tmp_path / "export")
    (out / "README.md").unlink()  # what the old, non-atomic export left on a full disk
    with pytest.raises(RunFolderError, match=re.escape("incomplete export (README.md missing)")):
        Tokenizer.from_pretrained(out)
    res = CliRunner().invoke(cli, ["evaluate", str(out)])
    assert res.exit_code == 2
    out2 = _export(digits_uniform_run, tmp_path / "export2")
    shutil.copyfile(out2 / "model.safetensors", out / "model.safetensors")  # mixed folders
    (out / "README.md").write_text("card")
    with pytest.raises(RunFolderError, match=re.escape("does not match the digest in config.json")):
        Tokenizer.from_pretrained(out)


def test_a_second_export_into_a_locked_out_is_refused(digits_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    with folder_lock(out):  # what a running export (or training) holds
        res = CliRunner().invoke(cli, ["export", str(digits_run), "--out", str(out)])
        assert "in use" in _one_line_exit_2(res)
    _export(digits_run, out)
    assert "not empty" in _one_line_exit_2(
        CliRunner().invoke(cli, ["export", str(digits_run), "--out", str(out)])
    )


def test_exporting_a_smoke_run_carries_the_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dimgen.config import EncoderConfig
    from dimgen.infomax.hub import model_card
    from dimgen.infomax.trainer import train_encoder

    monkeypatch.setenv("DIMGEN_SMOKE", "1")
    run = tmp_path / "run"
    train_encoder(EncoderConfig(epochs=50, seed=0), run)
    out = _export(run, tmp_path / "export")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["smoke"]["trained"] == 3 and cfg["smoke"]["configured"] == 50
    card = (out / "README.md").read_text().split("---\n")[2].lstrip()
    assert card.startswith("> **Smoke run, not a trained model** (DIMGEN_SMOKE=1: 3 of 50 epochs)")
    assert "> **Smoke run" not in model_card({**cfg, "smoke": None})


# --- image folders: one scale rule -----------------------------------------------------------


def test_16_bit_pngs_are_scaled_by_bit_depth_not_content(tmp_path: Path) -> None:
    from PIL import Image

    from dimgen.data.folder import FolderSpec, read_folder

    Image.fromarray(np.full((8, 8), 200, np.uint16)).save(tmp_path / "a_dark.png")  # 0.3 %
    Image.fromarray(np.full((8, 8), 60000, np.uint16)).save(tmp_path / "b_bright.png")
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / "c_float.tiff")
    x, _, _ = read_folder(FolderSpec(tmp_path, side=8))
    assert x[:, 0, 0, 0].tolist() == [1, 233, 128]  # 200/65535, 60000/65535, 0.5 of 255
    Image.fromarray(np.full((8, 8), 3.0, np.float32)).save(tmp_path / "d_float.tiff")
    with pytest.raises(DataError, match=r"d_float.tiff: a float image; its values must lie in"):
        read_folder(FolderSpec(tmp_path, side=8))


# --- paths: checked before training, recorded absolute -----------------------------------------


def test_a_non_utf8_data_path_is_refused_before_training(tmp_path: Path) -> None:
    bad = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xffdir"))
    bad.mkdir()
    np.savez(bad / "d.npz", x=np.zeros((40, 1, 4, 4), np.float32))
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["encode", "--data", f"npz:{bad}/d.npz", "--out", str(out)])
    assert "bad\\xffdir/d.npz' holds bytes that are not UTF-8" in _one_line_exit_2(res)
    assert not out.exists()
    from dimgen.config import EncoderConfig
    from dimgen.infomax.trainer import train_encoder

    with pytest.raises(ConfigError, match=r"data_root: .* not UTF-8"):
        train_encoder(EncoderConfig(data_root=str(bad)))


def test_relative_data_paths_are_recorded_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from dimgen.config import EncoderConfig
    from dimgen.infomax.trainer import train_encoder

    (tmp_path / "data").mkdir()
    x = (load_digits().images[:200] / 16.0).astype(np.float32)[:, None]
    np.savez(tmp_path / "data" / "d.npz", x=x)
    monkeypatch.chdir(tmp_path)
    train_encoder(EncoderConfig(data="npz:data/d.npz", data_root="data", epochs=2), "run")
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert cfg["data"] == f"npz:{tmp_path / 'data' / 'd.npz'}"
    assert cfg["data_root"] == str(tmp_path / "data")
    from dimgen.data import absolute_source

    spec = "folder:rel,dir,side=8,mode=grey"
    assert absolute_source(spec) == f"folder:{tmp_path / 'rel,dir'},side=8,mode=grey"
    assert absolute_source("digits") == "digits"


# --- a folder source changed between encode and train-gan -----------------------------------


def test_a_folder_changed_after_encode_is_refused_by_derived_runs(tmp_path: Path) -> None:
    from PIL import Image

    from dimgen.config import EncoderConfig
    from dimgen.gan import GANConfig, train_gan
    from dimgen.infomax.trainer import train_encoder

    d = load_digits()
    root = tmp_path / "imgs"
    for k in range(2):
        (root / str(k)).mkdir(parents=True)
        for i, img in enumerate(d.images[d.target == k][:40]):
            Image.fromarray((img * 15).astype(np.uint8)).save(root / str(k) / f"{i}.png")
    source = f"folder:{root},side=8"
    enc = tmp_path / "enc"
    train_encoder(EncoderConfig(data=source, epochs=2), enc)
    assert json.loads((enc / "run.json").read_text())["data_digest"]["files"] == 80
    shutil.copyfile(root / "0" / "0.png", root / "0" / "new.png")  # one image added
    cfg = GANConfig(encoder_run=str(enc), steps=2, eval_samples=0, device="cpu")
    with pytest.raises(
        DataError, match=r"changed since the encoder run .* \(81 files now, 80 then"
    ):
        train_gan(cfg, tmp_path / "gan")
    res = CliRunner().invoke(cli, ["train-gan", str(enc), "--steps", "2",
                                   "--out", str(tmp_path / "gan")])  # fmt: skip
    assert "81 files now" in _one_line_exit_2(res)
    (root / "0" / "new.png").unlink()
    os.utime(root / "1" / "3.png", ns=(1, 1))  # same files, one touched: refused too
    with pytest.raises(DataError, match="changed since"):
        train_gan(cfg, tmp_path / "gan")


# --- YAML configs and folders that are no runs -------------------------------------------------


def test_duplicate_yaml_keys_are_refused_naming_key_and_lines(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 5\ndim: 2\nepochs: 500\n")
    res = CliRunner().invoke(cli, ["encode", "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert "key 'epochs' appears twice (lines 1 and 3)" in _one_line_exit_2(res)
    from dimgen.config import load_run_config

    cfg.write_text("model:\n  a: 1\n  a: 2\n")
    with pytest.raises(ConfigError, match=re.escape("key 'a' appears twice (lines 2 and 3)")):
        load_run_config(cfg)


def test_a_path_that_is_no_run_folder_fails_fast_without_walking_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dimgen.io import read_run

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "link").symlink_to("/nonexistent")  # unrelated link deep inside

    def no_walk(*args, **kwargs):
        raise AssertionError("read_run walked the tree before looking for run.json")

    monkeypatch.setattr(Path, "rglob", no_walk)
    with pytest.raises(RunFolderError, match=r"not a dimgen run folder \(no run.json\)"):
        read_run(tmp_path, "encoder")
    res = CliRunner().invoke(cli, ["evaluate", str(tmp_path)])
    assert "not a dimgen run folder (no run.json)" in _one_line_exit_2(res)


# --- a data-parallel worker killed ---------------------------------------------------------------


def _ddp_config(**kw):
    from dimgen.config import EncoderConfig

    return EncoderConfig(epochs=3, checkpoint_every=1, max_train=256, batch_size=64,
                         eval_batches=2, device="cpu", devices=2, **kw)  # fmt: skip


def _kill_rank_one(out: str) -> None:
    """Each spawned process: train; rank 1 SIGKILLs itself after its second epoch (as the OOM
    killer would), when the first epoch's checkpoint exists."""
    import signal

    from dimgen.infomax.trainer import train_encoder
    from dimgen.training.distributed import rank

    def die(epoch: int, _: float) -> None:
        if epoch == 1 and rank() == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    train_encoder(_ddp_config(), out, on_epoch=die)


@pytest.mark.slow
def test_a_killed_worker_is_named_in_one_line_and_resume_works(tmp_path: Path) -> None:
    from dimgen.errors import WorkerKilledError
    from dimgen.infomax.trainer import train_encoder
    from dimgen.training.distributed import spawn

    out = tmp_path / "ddp"
    msg = r"^data-parallel worker rank 1 was killed by SIGKILL \(possibly out of memory"
    with pytest.raises(WorkerKilledError, match=msg):
        spawn(_kill_rank_one, 2, (str(out),), backend="gloo")
    assert (out / "checkpoint.safetensors").is_file() and not (out / "run.json").exists()
    run = train_encoder(_ddp_config(), out, resume=True)  # the advised --resume
    assert len(run.history) == 3 and (out / "run.json").is_file()


def test_a_killed_worker_message_points_at_resume_of_the_out_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dimgen.errors import WorkerKilledError
    from dimgen.training import distributed

    def killed(*args, **kwargs):
        raise WorkerKilledError("data-parallel worker rank 1 was killed by SIGKILL (possibly "
                                "out of memory); continue from the last checkpoint with --resume")  # fmt: skip

    monkeypatch.setattr(distributed, "spawn", killed)
    out = tmp_path / "ddp"
    res = CliRunner().invoke(cli, ["encode", "--devices", "2", "--epochs", "2", "--out", str(out)])
    line = _one_line_exit_2(res)
    assert "rank 1 was killed by SIGKILL" in line and line.rstrip().endswith(f"--resume {out}")


# --- ten more hostile inputs on export, folders and data-parallel runs -------------------------


def test_hostile_export_inputs(digits_run: Path, tmp_path: Path) -> None:
    from dimgen.io import refresh_digests

    # a run whose metrics hold null (NaN is stored as null): the card says n/a (was TypeError)
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.update(mi_lower_bound_stderr=None, knn_acc=None)
    (run / "metrics.json").write_text(json.dumps(metrics))
    refresh_digests(run)
    card = (_export(run, tmp_path / "e1") / "README.md").read_text()
    assert "± n/a nats" in card and "accuracy of held-out codes: n/a" in card
    # an export's config.json that is not an object: refused (was loaded)
    out = _export(digits_run, tmp_path / "e2")
    (out / "config.json").write_text("[1, 2]")
    with pytest.raises(RunFolderError, match=r"config\.json is corrupt"):
        Tokenizer.from_pretrained(out)
    # a file of an export folder, as run folders allow (was "no run.json")
    out = _export(digits_run, tmp_path / "e3")
    assert Tokenizer.from_pretrained(out / "model.safetensors").dim == 2
    # an export given where a run folder is expected: says what it is
    res = CliRunner().invoke(cli, ["evaluate", str(out)])
    assert "is a dimgen export (config.json, model.safetensors), not a run folder" in (
        _one_line_exit_2(res)
    )
    res = CliRunner().invoke(cli, ["export", str(out), "--out", str(tmp_path / "e4")])
    assert "is a dimgen export" in _one_line_exit_2(res)
    # a dangling symbolic link as --out, an empty existing --out (accepted)
    (tmp_path / "dl").symlink_to(tmp_path / "nowhere")
    res = CliRunner().invoke(cli, ["export", str(digits_run), "--out", str(tmp_path / "dl")])
    assert "symbolic link" in _one_line_exit_2(res)
    (tmp_path / "empty").mkdir()
    assert sorted(os.listdir(_export(digits_run, tmp_path / "empty"))) == [
        "README.md", "config.json", "model.safetensors"]  # fmt: skip


def test_two_real_export_processes_into_one_out(digits_run: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "from dimgen.cli import main; main()"
    cmd = [sys.executable, "-c", code, "export", str(digits_run), "--out", str(tmp_path / "o")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [(p.wait(timeout=120), p.stdout.read()) for p in procs]
    assert sorted(rc for rc, _ in outs) == [0, 2], outs
    loser = next(text for rc, text in outs if rc == 2)
    assert ("in use" in loser or "not empty" in loser) and "Traceback" not in loser
    assert sorted(os.listdir(tmp_path / "o")) == ["README.md", "config.json", "model.safetensors"]


def test_hostile_image_folders(tmp_path: Path) -> None:
    from PIL import Image

    from dimgen.data.folder import FolderSpec, read_folder

    # a 32-bit image with negative values: refused naming the file (was clipped to black)
    Image.fromarray(np.full((8, 8), -5, np.int32), "I").save(tmp_path / "neg.tiff")
    with pytest.raises(DataError, match=r"neg.tiff: a 16-bit image \(mode I\).*\[-5, -5\]"):
        read_folder(FolderSpec(tmp_path, side=8))
    (tmp_path / "neg.tiff").unlink()
    # a float image holding NaN: refused (was cast to 0 silently)
    arr = np.full((8, 8), 0.5, np.float32)
    arr[2, 2] = np.nan
    Image.fromarray(arr).save(tmp_path / "nan.tiff")
    with pytest.raises(DataError, match=r"nan\.tiff: a float image"):
        read_folder(FolderSpec(tmp_path, side=8))


def test_a_worker_stopped_by_another_signal_is_named_too() -> None:
    import signal
    from types import SimpleNamespace

    from dimgen.training.distributed import _killed_worker

    procs = [SimpleNamespace(exitcode=-signal.SIGTERM), SimpleNamespace(exitcode=-signal.SIGSEGV)]
    assert _killed_worker(procs, None) == (1, "SIGSEGV")  # SIGTERM: how survivors are stopped
    assert _killed_worker([SimpleNamespace(exitcode=1)] * 2, None) is None
    failed = SimpleNamespace(error_index=0, exit_code=-signal.SIGKILL)
    assert _killed_worker(procs, failed) == (0, "SIGKILL")


def test_resuming_on_a_changed_folder_is_refused(tmp_path: Path) -> None:
    """The same kind on resume: an interrupted encode whose folder changed would re-split."""
    import contextlib

    from PIL import Image

    from dimgen.config import EncoderConfig
    from dimgen.infomax.trainer import train_encoder

    d = load_digits()
    root = tmp_path / "imgs"
    root.mkdir()
    for i, img in enumerate(d.images[:60]):
        Image.fromarray((img * 15).astype(np.uint8)).save(root / f"{i}.png")
    cfg = EncoderConfig(data=f"folder:{root},side=8", epochs=3, checkpoint_every=1)

    class Stop(Exception):
        pass

    def stop(epoch: int, _: float) -> None:
        if epoch == 1:
            raise Stop

    out = tmp_path / "run"
    with contextlib.suppress(Stop):
        train_encoder(cfg, out, on_epoch=stop)
    assert (out / "checkpoint.safetensors").is_file()
    shutil.copyfile(root / "0.png", root / "new.png")
    res = CliRunner().invoke(cli, ["encode", "--resume", str(out)])
    assert "changed since the checkpoint" in _one_line_exit_2(res)
    (root / "new.png").unlink()
    assert len(train_encoder(cfg, out, resume=True).history) == 3  # unchanged files: resumes
