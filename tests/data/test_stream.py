"""Folders that don't fit in memory: bounded decoding, the memory refusal, and ``stream=1``
(seeded per-epoch order, disjoint shards, bit-exact resume, the mode in run.json)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from dimgen.cli import cli
from PIL import Image

from dimgen.config import EncoderConfig
from dimgen.data import load_data
from dimgen.data.folder import FolderSpec, decode_image, parse_folder_source, read_folder
from dimgen.data.stream import StreamBatches, load_stream
from dimgen.errors import DataError
from dimgen.infomax.trainer import train_encoder


def make_folder(root: Path, n_per_class: int = 12, size: tuple[int, int] = (20, 14)) -> Path:
    """Two classes of random RGB JPEGs of ``size`` (w, h)."""
    rng = np.random.default_rng(0)
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(n_per_class):
            px = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(px).save(root / f"c{c}" / f"{i:03d}.jpg", quality=90)
    return root


def test_large_jpeg_is_decoded_near_the_target_size(tmp_path: Path, monkeypatch) -> None:
    import torchvision.transforms.functional as tf

    big = tmp_path / "big.jpg"
    grad = np.linspace(0, 255, 1600, dtype=np.float32)
    px = np.stack([np.broadcast_to(grad, (1200, 1600))] * 3, -1).astype(np.uint8)
    Image.fromarray(px).save(big, quality=85)
    seen: list[tuple[int, int]] = []
    real = tf.resize

    def spy(img, *args, **kwargs):
        seen.append(img.size)
        return real(img, *args, **kwargs)

    monkeypatch.setattr(tf, "resize", spy)
    out = decode_image(big, 16, "rgb")
    assert out.shape == (3, 16, 16) and out.dtype == np.uint8
    # draft decodes at 1/8 scale (200 x 150), not 1600 x 1200; still >= the side on both axes
    assert seen == [(200, 150)]
    # the gradient, resized to 21 x 16 and centre-cropped: columns 2..17 of 21, (c + 0.5) / 21
    assert abs(int(out[0, 8, 0]) - 30) <= 4 and abs(int(out[0, 8, 15]) - 212) <= 4

    # the in-memory reader decodes the same way, one image at a time
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        (flat / f"{i}.jpg").write_bytes(big.read_bytes())
    seen.clear()
    x, y, _ = read_folder(FolderSpec(flat, side=16))
    assert x.shape == (3, 3, 16, 16) and y is None and seen == [(200, 150)] * 3
    assert np.array_equal(x[0], out)


def test_folder_too_big_for_memory_is_refused_in_one_line(tmp_path: Path, monkeypatch) -> None:
    import dimgen.data.folder as folder

    root = make_folder(tmp_path / "imgs", n_per_class=3)
    # 6 images x 3 x 64 x 64 = 73,728 bytes as uint8, five times that with the float32 copy
    monkeypatch.setattr(folder, "available_memory", lambda: 300_000)
    with pytest.raises(DataError, match=r"stream it instead: folder:.*,side=64,stream=1") as e:
        load_data(f"folder:{root},side=64")
    assert "6 images at 3x64x64" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setattr(folder, "available_memory", lambda: 400_000)  # fits: read as before
    assert load_data(f"folder:{root},side=64").x_train.shape[1:] == (3, 64, 64)

    monkeypatch.setattr(folder, "available_memory", lambda: 300_000)
    res = CliRunner().invoke(
        cli, ["encode", "--data", f"folder:{root},side=64", "--epochs", "1", "--quiet",
              "--out", str(tmp_path / "run")],
    )  # fmt: skip
    assert res.exit_code == 2 and "stream=1" in res.output and not (tmp_path / "run").exists()
    assert len(res.output.strip().splitlines()) == 1


def test_stream_options_are_parsed() -> None:
    spec = parse_folder_source("folder:/a,side=8,stream=1,workers=3")
    assert (spec.stream, spec.workers, spec.side) == (True, 3, 8)
    assert parse_folder_source("folder:/a").stream is False
    for bad, msg in (("stream=2", "stream must be 0 or 1"), ("workers=-1", "workers must lie")):
        with pytest.raises(DataError, match=msg):
            parse_folder_source(f"folder:/a,{bad}")


def test_streamed_epochs_follow_the_seeded_order(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    source = f"folder:{root},side=8,stream=1,workers=2"
    st = load_stream(source, test_fraction=0.25, seed=5)
    mem = load_data(f"folder:{root},side=8", test_fraction=0.25, seed=5)
    assert len(st.x_train) == len(mem.x_train) == 18 and np.array_equal(st.y_train, mem.y_train)
    x_mem = torch.from_numpy(mem.x_train)
    loader = StreamBatches(st.x_train, batch_size=4, generator=torch.Generator().manual_seed(7))
    ref = torch.Generator().manual_seed(7)
    orders = []
    for _ in range(2):
        perm = torch.randperm(18, generator=ref)
        batches = [b for (b,) in loader]
        assert len(batches) == len(loader) == 4  # 18 // 4; the partial batch is dropped
        # the batches are the seeded permutation's images, in its order, bit for bit
        assert torch.equal(torch.cat(batches), x_mem[perm[:16]])
        orders.append(perm[:16].tolist())
    assert orders[0] != orders[1]  # a new order every epoch
    # indexing a streamed split decodes the same pixels as the in-memory reader
    assert torch.equal(st.x_test[:], torch.from_numpy(mem.x_test))
    assert torch.equal(st.x_train[torch.tensor([3, 0])], x_mem[[3, 0]])


def test_two_ranks_read_disjoint_shards_covering_the_batches(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    st = load_stream(f"folder:{root},side=8,stream=1,workers=0", 0.25, 5)

    def lists(shard: tuple[int, int]) -> list[list[int]]:
        gen = torch.Generator().manual_seed(3)
        return StreamBatches(st.x_train, batch_size=6, generator=gen, shard=shard).order()

    one, r0, r1 = lists((0, 1)), lists((0, 2)), lists((1, 2))
    assert len(one) == len(r0) == len(r1) == 3
    for b, b0, b1 in zip(one, r0, r1, strict=True):
        assert len(b0) == len(b1) == 3 and not set(b0) & set(b1)
        assert b0 + b1 == b  # together the single-process batch, in order
    with pytest.raises(ValueError, match="does not divide"):
        StreamBatches(st.x_train, batch_size=5, shard=(0, 2))


class _Stop(Exception):
    pass


def test_streamed_encode_resumes_bit_exact_and_matches_in_memory(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    base = dict(epochs=6, batch_size=8, dim=2, seed=2, checkpoint_every=2, deterministic=True)
    stream = EncoderConfig(data=f"folder:{root},side=8,stream=1,workers=2", **base)
    whole = train_encoder(stream, tmp_path / "whole")

    def stop(done: int, _values: dict[str, float]) -> None:
        if done == 3:  # after the checkpoint of epoch 2, inside the next window
            raise _Stop

    with pytest.raises(_Stop):
        train_encoder(stream, tmp_path / "cut", on_scalars=stop)
    assert (tmp_path / "cut" / "checkpoint.safetensors").exists()
    resumed = train_encoder(stream, tmp_path / "cut", resume=True)
    assert resumed.history == whole.history and len(whole.history) == 6
    assert np.array_equal(resumed.codes, whole.codes)
    assert resumed.metrics["mi_lower_bound_nats"] == whole.metrics["mi_lower_bound_nats"]

    # streamed and in-memory runs see the same batches: the same numbers, bit for bit
    memory = EncoderConfig(data=f"folder:{root},side=8", **base)
    mem = train_encoder(memory, tmp_path / "mem")
    assert mem.history == whole.history and np.array_equal(mem.codes, whole.codes)

    # run.json says which path ran
    rec = {p: json.loads((tmp_path / p / "run.json").read_text()) for p in ("whole", "mem")}
    assert rec["whole"]["data_mode"] == {"mode": "stream", "workers": 2}
    assert rec["mem"]["data_mode"] == {"mode": "memory"}
    assert rec["whole"]["data_digest"]["files"] == 24


def test_a_stream_folder_read_in_memory_says_how_to_stream_it(tmp_path: Path, monkeypatch):
    import dimgen.data.folder as folder

    root = make_folder(tmp_path / "imgs", n_per_class=3)
    monkeypatch.setattr(folder, "available_memory", lambda: 1000)
    text = "load_data reads folders in memory (every dimgen command streams them; in Python "
    with pytest.raises(DataError, match=re.escape(text + "use dimgen.data.stream.load_stream)")):
        load_data(f"folder:{root},side=64,stream=1")


def test_two_processes_stream_their_shards_as_in_memory(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "imgs")
    common = ["--devices", "2", "--epochs", "2", "--seed", "4", "--quiet",
              "--set", "batch_size=8", "--set", "dim=2", "--set", "deterministic=true"]  # fmt: skip
    for name, data in (("s", f"folder:{root},side=8,stream=1,workers=1"),
                       ("m", f"folder:{root},side=8")):  # fmt: skip
        res = CliRunner().invoke(
            cli, ["encode", "--data", data, *common, "--out", str(tmp_path / name)]
        )
        assert res.exit_code == 0, res.output
    s, m = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("s", "m"))
    assert s["processes"] == 2 and s["history"] == m["history"]
    assert s["mi_lower_bound_nats"] == m["mi_lower_bound_nats"]
    codes = [np.load(tmp_path / n / "codes.npz")["codes"] for n in ("s", "m")]
    assert np.array_equal(*codes)
    assert json.loads((tmp_path / "s" / "run.json").read_text())["data_mode"]["mode"] == "stream"


@pytest.mark.slow  # ~18 s: three CLI processes with DataLoader workers
def test_streamed_encode_killed_with_sigkill_resumes_bit_exact(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    root = make_folder(tmp_path / "imgs")
    args = ["encode", "--data", f"folder:{root},side=8,stream=1,workers=2", "--epochs", "60",
            "--set", "checkpoint_every=3", "--set", "batch_size=8", "--set", "dim=2",
            "--set", "deterministic=true", "--seed", "3", "--quiet"]  # fmt: skip
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "dimgen.cli", *args, "--out", str(killed)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while not (killed / "checkpoint.safetensors").exists() and time.time() < deadline:
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.02)
    time.sleep(0.2)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)  # the DataLoader workers are orphaned mid-epoch
    proc.wait()
    assert not (killed / "run.json").exists()
    # the orphaned workers hold the run folder's lock until they see the trainer gone (torch
    # checks every 5 s); resuming meanwhile says the folder is in use, then succeeds
    deadline = time.time() + 30
    while True:
        res = CliRunner().invoke(cli, ["encode", "--resume", str(killed), "--quiet"])
        if "is in use" not in res.output or time.time() > deadline:
            break
        time.sleep(0.5)
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, [*args, "--out", str(whole)])
    assert res.exit_code == 0, res.output
    a, b = (np.load(p / "codes.npz")["codes"] for p in (killed, whole))
    assert np.array_equal(a, b)
    assert (killed / "log.csv").read_text() == (whole / "log.csv").read_text()
