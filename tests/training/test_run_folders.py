"""Run folders that survive faults, concurrent writers and strangers' files (issue 16).

Each test reproduces one kind of fault: a run stopped before its first checkpoint, temporary
files of cut writes, a second writer, a mixed folder, a torn copy, crafted metadata, links and
escaping paths inside a folder, hostile npz members and codes files, and ``evaluate --json``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from dimgen.cli import cli
from test_training import CPU, Toy, ToyConfig, _Stop, _stop_at

from dimgen.data.npz import read_codes, read_npz_members
from dimgen.errors import ConfigError, DataError, RunFolderError
from dimgen.io import atomic_copy, folder_lock, read_run, save_weights, write_run
from dimgen.training import fit

ENC = ["--epochs", "4", "--set", "deterministic=true", "--seed", "5", "--quiet"]


def _temps(folder: Path) -> list[Path]:
    return list(folder.rglob(".*.tmp"))


# -- stuck folders -------------------------------------------------------------------------------


def test_stopped_before_first_checkpoint_resumes_from_start(tmp_path: Path) -> None:
    # The harness: a run stopped at step 3 of 12 (first checkpoint at 4) leaves only config.yaml.
    cut = tmp_path / "cut"
    with pytest.raises(_Stop):
        fit(Toy(ToyConfig()), CPU, cut, on_scalars=_stop_at(3))
    assert (cut / "config.yaml").is_file() and not (cut / "checkpoint.safetensors").exists()
    with pytest.raises(
        RunFolderError,
        match=r"rerun the command that wrote it \(it replaces the folder\), or `dimgen <",
    ):
        read_run(cut, "toy")
    (cut / ".checkpoint.safetensors.abc.tmp").write_bytes(b"torn")
    whole_w, whole_h = fit(Toy(ToyConfig()), CPU, tmp_path / "whole")
    w, h = fit(Toy(ToyConfig()), CPU, cut, resume=True)  # from step 0, with its config
    assert h == whole_h and all(torch.equal(w[k], whole_w[k]) for k in w)
    assert _temps(cut) == [] and read_run(cut, "toy")[1]["complete"] is True


def test_stopped_before_first_checkpoint_is_replaced_by_a_rerun(tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    with pytest.raises(_Stop):
        fit(Toy(ToyConfig()), CPU, cut, on_scalars=_stop_at(3))
    fit(Toy(ToyConfig()), CPU, cut)  # the same command again: accepted, completes
    assert read_run(cut, "toy")[1]["complete"] is True
    # but a folder with a checkpoint is never replaced: the message says --resume
    cut2 = tmp_path / "cut2"
    with pytest.raises(_Stop):
        fit(Toy(ToyConfig()), CPU, cut2, on_scalars=_stop_at(6))
    with pytest.raises(
        RunFolderError,
        match="holds an interrupted run: continue it with `dimgen <command> --resume",
    ):
        fit(Toy(ToyConfig()), CPU, cut2)


def test_encode_killed_before_first_checkpoint_then_resume_and_rerun(tmp_path: Path) -> None:
    """SIGKILL `dimgen encode` once config.yaml exists (no checkpoint: epochs < checkpoint_every)."""
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "dimgen.cli", "encode", *ENC, "--out", str(killed)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while not (killed / "config.yaml").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "run.json").exists() and not (killed / "checkpoint.safetensors").exists()
    (killed / ".codes.npz.x1.tmp").write_bytes(b"cut short")
    res = CliRunner().invoke(cli, ["encode", "--encoder", str(killed), "--data", "digits",
                                   "--out", str(tmp_path / "c.npz")])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "incomplete encoder run stopped before its first checkpoint: rerun the" in res.output
    res = CliRunner().invoke(cli, ["encode", "--resume", str(killed), "--quiet"])
    assert res.exit_code == 0, res.output
    assert _temps(killed) == []
    res = CliRunner().invoke(cli, ["encode", *ENC, "--out", str(whole)])
    assert res.exit_code == 0, res.output
    a, b = np.load(killed / "codes.npz"), np.load(whole / "codes.npz")
    assert np.array_equal(a["codes"], b["codes"])
    # a rerun of the same command replaces a stopped folder
    (whole / "run.json").unlink()
    res = CliRunner().invoke(cli, ["encode", *ENC, "--out", str(whole)])
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.load(whole / "codes.npz")["codes"], a["codes"])


# -- two writers ---------------------------------------------------------------------------------


def test_second_writer_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with folder_lock(out):  # another process writing (flock is per open file, so this counts)
        with pytest.raises(RunFolderError, match="in use: another dimgen process is writing"):
            fit(Toy(ToyConfig()), CPU, out)
        res = CliRunner().invoke(cli, ["encode", *ENC, "--out", str(out)])
        assert res.exit_code == 2 and "in use" in res.output and "Traceback" not in res.output
        assert list(out.iterdir()) == []  # the refused writer wrote nothing
    fit(Toy(ToyConfig()), CPU, out)  # the lock ends with its holder
    assert read_run(out, "toy")[1]["complete"]


def test_failed_start_leaves_no_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "new"
    res = CliRunner().invoke(cli, ["encode", "--epochs", "1", "--data", "npz:/nonexistent.npz",
                                   "--out", str(out), "--quiet"])  # fmt: skip
    assert res.exit_code == 2 and not out.exists()


def test_mixed_folder_is_detected_by_its_digests(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, seed in ((a, 0), (b, 1)):
        folder.mkdir()
        (folder / "weights.bin").write_bytes(bytes([seed]) * 100)
        (folder / "codes.txt").write_text(f"codes of run {seed}")
        write_run(folder, "toy")
    rec = json.loads((a / "run.json").read_text())
    assert set(rec["artefacts"]) == {"weights.bin", "codes.txt"}
    read_run(a, "toy")
    shutil.copyfile(b / "codes.txt", a / "codes.txt")  # interleaved final writes of two runs
    with pytest.raises(RunFolderError, match=r"codes\.txt does not match the digest"):
        read_run(a, "toy")
    (a / "codes.txt").unlink()
    with pytest.raises(RunFolderError, match="missing"):
        read_run(a, "toy")


# -- atomic copies -------------------------------------------------------------------------------


def test_copy_killed_midway_leaves_no_torn_file(tmp_path: Path, monkeypatch) -> None:
    src, dst = tmp_path / "encoder.safetensors", tmp_path / "gan" / "encoder.safetensors"
    src.write_bytes(os.urandom(1 << 16))

    def torn_copy(s: str, d: str) -> None:
        Path(d).write_bytes(Path(s).read_bytes()[:1000])
        raise KeyboardInterrupt  # the process is stopped mid-copy

    monkeypatch.setattr(shutil, "copyfile", torn_copy)
    with pytest.raises(KeyboardInterrupt):
        atomic_copy(src, dst)
    assert not dst.exists() and _temps(dst.parent) == []
    monkeypatch.undo()
    atomic_copy(src, dst)
    assert dst.read_bytes() == src.read_bytes()


# -- strangers' folders --------------------------------------------------------------------------


def test_crafted_encoder_metadata_refused_before_building(tmp_path: Path) -> None:
    from dimgen.infomax.tokenizer import Tokenizer

    def crafted(side: int) -> Path:
        spec = {"dim": 2, "prior": "gaussian", "sigma": 0.2, "eps": 0.1,
                "in_shape": [1, side, side], "encoder": "conv", "encoder_hidden": 64}  # fmt: skip
        path = tmp_path / f"encoder-{side}.safetensors"
        save_weights(path, {"encoder.x": torch.zeros(1)}, {"kind": "encoder", "spec": spec})
        return path

    # torch imports its meta kernels lazily, once per process: the first refusal is not timed
    with pytest.raises(RunFolderError, match="do not match the declared architecture"):
        Tokenizer.from_weights(crafted(8))
    path = crafted(2048)
    assert path.stat().st_size < 400
    t0 = time.perf_counter()
    with pytest.raises(RunFolderError, match="do not match the declared architecture"):
        Tokenizer.from_weights(path)
    assert time.perf_counter() - t0 < 1.0  # the 4.6 GB model is never allocated


def test_valid_encoder_still_loads(digits_run: Path) -> None:
    from dimgen.infomax.tokenizer import Tokenizer

    tok = Tokenizer.from_pretrained(digits_run)
    assert tok.encode(np.zeros((3, 1, 8, 8), dtype=np.float32)).shape == (3, 2)


def test_link_inside_a_run_folder_is_refused(digits_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    secret = tmp_path / "secret-key"
    secret.write_text("SECRET-123")
    (run / "report.md").unlink()
    (run / "report.md").symlink_to(secret)
    res = CliRunner().invoke(cli, ["evaluate", str(run), "--no-plots", "--no-probes"])
    assert res.exit_code == 2 and "symbolic link" in res.output
    assert (run / "report.md").is_symlink()
    assert not any("SECRET" in f.read_text(errors="ignore") for f in run.iterdir() if f.is_file()
                   and not f.is_symlink())  # fmt: skip


@pytest.mark.parametrize("weights", ["../elsewhere/flow.safetensors", "/tmp/flow.safetensors"])
def test_escaping_weights_path_is_refused(tmp_path: Path, weights: str) -> None:
    from dimgen.flows import load_prior

    run = tmp_path / "flow"
    run.mkdir()
    spec = {"dim": 2, "method": "rqs", "target": "gaussian", "source_prior": "gaussian",
            "weights": weights}  # fmt: skip
    write_run(run, "flow", spec=spec)
    with pytest.raises(RunFolderError, match="outside the run folder"):
        load_prior(run)


def test_dangling_link_as_out_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.symlink_to(tmp_path / "nowhere")
    res = CliRunner().invoke(cli, ["encode", "--epochs", "1", "--out", str(out), "--quiet"])
    assert res.exit_code == 2 and "symbolic link" in res.output
    assert "internal error" not in res.output and not (tmp_path / "nowhere").exists()


# -- npz files -----------------------------------------------------------------------------------


def _npy_header(shape: tuple[int, ...]) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def test_npz_bomb_and_lying_headers_are_refused_before_reading(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("codes.npy", _npy_header((100_000, 100_000)) + b"\0" * 64)
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="claims shape"):
        read_codes(bomb)
    assert time.perf_counter() - t0 < 1.0
    big = tmp_path / "big.npz"
    np.savez_compressed(big, codes=np.zeros((4096, 256)))  # 8 MB that compresses to ~10 kB
    assert big.stat().st_size < 100_000
    with pytest.raises(DataError, match="declares 8388736 bytes uncompressed, more than"):
        read_npz_members(big, ("codes",), ("codes",), max_bytes=1 << 20)


def test_only_used_npz_members_are_read(tmp_path: Path) -> None:
    path = tmp_path / "codes.npz"
    np.savez(path, codes=np.zeros((5, 2)), labels=np.arange(5))
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("unused.npy", b"not an array at all")  # would fail if decompressed and parsed
        link = zipfile.ZipInfo("split.npy")
        link.external_attr = 0o120777 << 16  # a zip symbolic-link entry
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(DataError, match="'split' is a link or folder, not an array"):
        read_codes(path)
    members = read_npz_members(path, ("codes", "labels"), ("codes",))
    assert set(members) == {"codes", "labels"}


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"codes": np.zeros((6, 2)), "labels": np.arange(4)}, "labels must be 6 integers"),
        ({"codes": np.zeros((6, 2)), "split": np.array(["train"] * 3)}, "split must be 6 strings"),
        ({"codes": np.full((6, 2), 1e200)}, "codes reach"),
        ({"codes": np.zeros((6, 0))}, "n, d >= 1"),
        ({"codes": np.array([[np.nan, 0.0]])}, "NaN or infinite"),
    ],
)
def test_one_codes_loader_refuses_bad_codes(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "codes.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        read_codes(path)


def test_flow_on_short_labels_fails_cleanly(make_encoder_run, tmp_path: Path) -> None:
    run = make_encoder_run(np.random.default_rng(0).normal(size=(40, 2)))
    np.savez(run / "codes.npz", codes=np.zeros((40, 2)), labels=np.arange(10))
    write_run(run, "encoder", spec=json.loads((run / "run.json").read_text())["spec"])
    out = tmp_path / "flow"
    res = CliRunner().invoke(cli, ["flow", str(run), "--to", "gaussian", "--out", str(out)])
    assert res.exit_code == 2 and "labels must be 40 integers" in res.output
    assert not out.exists()


def test_npz_data_without_features_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((50, 0), dtype=np.float32))
    res = CliRunner().invoke(cli, ["encode", "--data", f"npz:{path}", "--epochs", "1",
                                   "--out", str(tmp_path / "r"), "--quiet"])  # fmt: skip
    assert res.exit_code == 2 and "hold no values" in res.output
    assert not (tmp_path / "r").exists()


# -- evaluate --json -----------------------------------------------------------------------------


def test_evaluate_json_writes_nothing_and_evaluate_keeps_digests(
    digits_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    res = CliRunner().invoke(cli, ["evaluate", str(run), "--json", "--no-probes"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n"] > 0  # stdout: the JSON alone (phases go to stderr)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    res = CliRunner().invoke(cli, ["evaluate", str(run), "--no-plots", "--no-probes"])
    assert res.exit_code == 0, res.output
    assert (run / "evaluation.json").is_file()
    rec = read_run(run, "encoder")[1]  # digests follow the rewritten metrics.json / report.md
    assert "evaluation.json" in rec["artefacts"]


def test_gan_run_stores_the_absolute_data_root(
    digits_run: Path, tmp_path: Path, monkeypatch
) -> None:
    from dimgen.config import load_config
    from dimgen.gan import GANConfig, train_gan

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = GANConfig(encoder_run=str(digits_run), steps=2, data_root="data", sample_every=0,
                    classifier_epochs=0, eval_samples=0, device="cpu")  # fmt: skip
    train_gan(cfg, tmp_path / "gan")
    stored = load_config(tmp_path / "gan" / "config.yaml", GANConfig).data_root
    assert stored == str((tmp_path / "data").resolve())
    read_run(tmp_path / "gan", "gan")  # complete, digests match (encoder copy included)
    assert "encoder.safetensors" in read_run(tmp_path / "gan", "gan")[1]["artefacts"]
    from dimgen.gan import GAN

    assert GAN.from_pretrained(tmp_path / "gan").split == (0.2, 0)
    rec_path = tmp_path / "gan" / "run.json"
    for bad in ({"test_fraction": "0.2", "seed": 0}, [0.2, 0], {"test_fraction": 0.2, "seed": 1.5}):
        rec = json.loads(rec_path.read_text())
        rec["split"] = bad
        rec_path.write_text(json.dumps(rec))
        with pytest.raises(RunFolderError, match="'split' must be"):
            GAN.from_pretrained(tmp_path / "gan")


def test_tokenizer_api_type_errors_are_dimgen_errors(digits_run: Path) -> None:
    from dimgen.infomax.tokenizer import Tokenizer

    tok = Tokenizer.from_pretrained(digits_run)
    for bad in (2.5, "3", True, 0):
        with pytest.raises(DataError, match=r"n must be (an integer )?>= 1"):
            tok.sample_prior(bad)
    with pytest.raises(ConfigError, match="seed"):
        tok.sample_prior(4, seed=-1)
    with pytest.raises(DataError, match="ragged"):
        tok.encode([np.zeros((8, 8)), np.zeros((4, 4))])
    assert tok.sample_prior(np.int64(3), seed=1).shape == (3, 2)


def test_writer_in_another_process_is_refused_until_it_dies(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom dimgen.io import folder_lock\n"
         f"with folder_lock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match="in use"):
            fit(Toy(ToyConfig()), CPU, out)
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed writer leaves no stale lock
        holder.wait()
    fit(Toy(ToyConfig()), CPU, out)
    assert read_run(out, "toy")[1]["complete"]


def test_a_users_folder_is_told_from_a_run_stopped_before_its_first_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only dimgen's own leftovers make a folder replaceable: a config.yaml dimgen wrote (its
    header, or a trainer's keys), hidden ``.NAME.*.tmp`` files and ``.partial-*.tmp`` folders.
    A user's own ``config.yaml`` or ``backup.tmp`` folder is someone else's files."""
    from dimgen.config import EncoderConfig, save_config
    from dimgen.folders import CONFIG_HEADER, free_name, out_problem

    ours, users, legacy, temps, backup = (tmp_path / n for n in ("ours", "users", "legacy",
                                                                 "temps", "backup"))  # fmt: skip
    for d in (ours, users, legacy, temps, backup):
        d.mkdir()
    save_config(ToyConfig(), ours / "config.yaml")  # a harness run stopped at once
    assert (ours / "config.yaml").read_text().startswith(CONFIG_HEADER)
    (users / "config.yaml").write_text("lr: 1\n")
    (users / "data.txt").write_text("important")
    (legacy / "config.yaml").write_text("aug_noise: 0.3\nepochs: 2\n")  # before the header
    (temps / ".codes.npz.abc.tmp").write_bytes(b"torn")
    (temps / ".partial-abc_1.tmp").mkdir()
    (backup / "backup.tmp").mkdir()
    assert out_problem(ours) is None and out_problem(legacy) is None
    assert out_problem(temps) is None
    for folder in (users, backup):
        assert "not a dimgen run" in str(out_problem(folder))
    res = CliRunner().invoke(cli, ["encode", "--out", str(users)])
    assert res.exit_code == 2 and "not a dimgen run" in res.output
    assert (users / "config.yaml").read_text() == "lr: 1\n"
    save_config(EncoderConfig(), tmp_path / "c.yaml")  # the header is a comment to YAML
    from dimgen.config import load_config

    assert load_config(tmp_path / "c.yaml") == EncoderConfig()
    monkeypatch.chdir(users)  # `--out .` names a free sibling, not an error
    assert free_name(".") == tmp_path / "users-2"
