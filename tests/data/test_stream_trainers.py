"""``folder:PATH,stream=1`` in every trainer that reads images (``pretrain``, ``train-gan``,
``train-diffusion``): the streamed run trains bit for bit as the in-memory one, an interrupted
streamed run resumes bit-exact, and ``run.json`` says which path ran and records the source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dimgen.io import load_weights


class _Stop(Exception):
    pass


def make_pngs(root: Path, n_per_class: int = 16, side: int = 12, grey: bool = False) -> Path:
    """Two classes of PIL-written PNGs (``side`` + 4 pixels wide: resized on reading): a bright
    square on dark noise (class 0) or a bright bar (class 1)."""
    rng = np.random.default_rng(0)
    w = side + 4
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(n_per_class):
            px = rng.integers(0, 80, (w, w, 3), dtype=np.uint8)
            r = int(rng.integers(2, w - 6))
            if c == 0:
                px[r : r + 5, r : r + 5] = 230
            else:
                px[:, r : r + 3] = 230
            img = Image.fromarray(px)
            (img.convert("L") if grey else img).save(root / f"c{c}" / f"{i:03d}.png")
    return root


def same_weights(a: Path, b: Path) -> None:
    ta, _ = load_weights(a)
    tb, _ = load_weights(b)
    assert ta.keys() == tb.keys() and ta
    bad = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not bad, f"{len(bad)} tensors differ, e.g. {bad[:3]}"


def run_json(path: Path) -> dict:
    return json.loads((path / "run.json").read_text())


# ---------------------------------------------------------------------------------------------
# dimgen pretrain


def _pretrain_cfg(data: str, **kw: object):
    from dimgen.ssl.config import PretrainConfig

    base = dict(method="simclr", sigma=0.3, width=2, proj_hidden=16, proj_dim=8, batch_size=8,
                epochs=2, lr=0.3, warmup_epochs=0.0, aug_groups=2, image_size=12,
                test_fraction=0.25, device="cpu", threads=1, log_every=1, checkpoint_every=4,
                data=data)  # fmt: skip
    return PretrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_streamed_pretrain_equals_in_memory_and_resumes_bit_exact(tmp_path: Path) -> None:
    from dimgen.ssl.trainer import pretrain

    root = make_pngs(tmp_path / "imgs")  # 32 images: 24 to pre-train on, 3 steps an epoch
    stream = _pretrain_cfg(f"folder:{root},stream=1,workers=2")
    whole = pretrain(stream, tmp_path / "whole", progress=False)
    assert len(whole.history) == 6

    def stop(done: int, _values: dict[str, float]) -> None:
        if done == 5:  # after the checkpoint of step 4: batch 1 of the second epoch is next
            raise _Stop

    with pytest.raises(_Stop):
        pretrain(stream, tmp_path / "cut", progress=False, on_scalars=stop)
    _, meta = load_weights(tmp_path / "cut" / "checkpoint.safetensors")
    assert meta["step"] == 4
    resumed = pretrain(stream, tmp_path / "cut", progress=False, resume=True)
    assert resumed.history == whole.history
    same_weights(tmp_path / "whole" / "model.safetensors", tmp_path / "cut" / "model.safetensors")

    # the in-memory run on the same folder: the same batches, the same weights and codes
    memory = pretrain(_pretrain_cfg(f"folder:{root}"), tmp_path / "mem", progress=False)
    assert memory.history == whole.history
    same_weights(tmp_path / "whole" / "model.safetensors", tmp_path / "mem" / "model.safetensors")
    codes = [np.load(tmp_path / p / "codes.npz") for p in ("whole", "mem")]
    assert np.array_equal(codes[0]["codes"], codes[1]["codes"])
    assert np.array_equal(codes[0]["labels"], codes[1]["labels"]) and len(codes[0]["labels"]) == 8

    rec = {p: run_json(tmp_path / p) for p in ("whole", "mem")}
    assert rec["whole"]["data_mode"] == {"mode": "stream", "workers": 2}
    assert rec["mem"]["data_mode"] == {"mode": "memory"}
    assert rec["whole"]["data_digest"]["files"] == rec["mem"]["data_digest"]["files"] == 32

    # dimgen probe streams the run's folder too: the in-memory run's probe numbers
    from dimgen.ssl.probe import probe_run

    probes = [probe_run(tmp_path / p, k=3, progress=False) for p in ("whole", "mem")]
    assert probes[0] == probes[1] and probes[0]["probe_images"] == 8

    # another seed gives other numbers (the comparisons above can fail)
    other = pretrain(_pretrain_cfg(f"folder:{root},stream=1,workers=0", seed=1), progress=False)
    assert other.history != whole.history


# ---------------------------------------------------------------------------------------------
# dimgen train-gan and train-diffusion: conditioned on an encoder run over a streamed folder


@pytest.fixture(scope="module")
def stream_encoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A folder of 60 PNGs and an encoder run that streamed it (8x8 RGB, d = 2)."""
    from dimgen.config import EncoderConfig
    from dimgen.infomax.trainer import train_encoder

    tmp = tmp_path_factory.mktemp("stream-enc")
    root = make_pngs(tmp / "imgs", n_per_class=30, side=8)
    cfg = EncoderConfig(data=f"folder:{root},side=8,stream=1,workers=2", epochs=2, dim=2,
                        batch_size=8, seed=1)  # fmt: skip
    train_encoder(cfg, tmp / "enc", progress=False)
    return root, tmp / "enc"


def _derived_resumes_and_matches(train, cfg_of, names: tuple[str, ...], root: Path, enc: Path,
                                 tmp_path: Path) -> dict[str, dict]:  # fmt: skip
    """Streamed (the encoder's own ``stream=1`` source): whole, cut + resumed, and in memory.

    Returns the two runs' ``run.json`` records ("whole": streamed, "mem": in memory)."""
    stream = cfg_of(enc, data=None)  # the encoder run's data: streamed
    train(stream, tmp_path / "whole", progress=False)

    def stop(done: int, _values: dict[str, float]) -> None:
        if done == 5:  # after the checkpoint of step 4
            raise _Stop

    with pytest.raises(_Stop):
        train(stream, tmp_path / "cut", progress=False, on_scalars=stop)
    _, meta = load_weights(tmp_path / "cut" / "checkpoint.safetensors")
    assert meta["step"] == 4
    train(stream, tmp_path / "cut", progress=False, resume=True)
    train(cfg_of(enc, data=f"folder:{root},side=8"), tmp_path / "mem", progress=False)
    other = train(cfg_of(enc, data=None, seed=5), progress=False)
    for name in names:
        same_weights(tmp_path / "whole" / name, tmp_path / "cut" / name)
        same_weights(tmp_path / "whole" / name, tmp_path / "mem" / name)
    logs = [json.loads((tmp_path / p / "metrics.json").read_text()) for p in ("whole", "mem")]
    assert logs[0]["history"] == logs[1]["history"] != other.history
    rec = {p: run_json(tmp_path / p) for p in ("whole", "mem")}
    assert rec["whole"]["data_mode"] == {"mode": "stream", "workers": 2}
    assert rec["mem"]["data_mode"] == {"mode": "memory"}
    assert rec["whole"]["data_digest"] == rec["mem"]["data_digest"]
    assert rec["whole"]["data_digest"]["files"] == 60
    return rec


def test_streamed_gan_equals_in_memory_and_resumes_bit_exact(stream_encoder, tmp_path) -> None:
    from dimgen.gan import GANConfig, train_gan

    def cfg_of(enc: Path, **kw: object) -> GANConfig:
        base = dict(encoder_run=str(enc), steps=6, batch_size=8, log_every=1,
                    checkpoint_every=4, sample_every=0, eval_samples=0, device="cpu")  # fmt: skip
        return GANConfig(**{**base, **kw})  # type: ignore[arg-type]

    names = ("generator.safetensors", "generator_ema.safetensors", "discriminator.safetensors")
    rec = _derived_resumes_and_matches(train_gan, cfg_of, names, *stream_encoder, tmp_path)
    assert (
        rec["whole"]["data_mode"]["mode"] == "stream"
        and rec["mem"]["data_mode"]["mode"] == "memory"
    )


def test_streamed_diffusion_equals_in_memory_and_resumes_bit_exact(stream_encoder, tmp_path):
    pytest.importorskip("diffusers")
    from dimgen.config import from_dict
    from dimgen.diffusion import DiffusionConfig, train_diffusion

    def cfg_of(enc: Path, **kw: object) -> DiffusionConfig:
        base = {"encoder_run": str(enc), "steps": 6, "batch_size": 8, "log_every": 1,
                "checkpoint_every": 4, "sample_every": 0, "eval_samples": 0, "device": "cpu",
                "width": 8, "classifier_epochs": 0}  # fmt: skip
        return from_dict(DiffusionConfig, {**base, **{k: v for k, v in kw.items()}})

    names = ("model.safetensors", "model_ema.safetensors")
    rec = _derived_resumes_and_matches(train_diffusion, cfg_of, names, *stream_encoder, tmp_path)
    assert (
        rec["whole"]["data_mode"]["mode"] == "stream"
        and rec["mem"]["data_mode"]["mode"] == "memory"
    )


def test_streamed_gan_evaluates_as_in_memory(stream_encoder, tmp_path) -> None:
    """The evaluation (reference classifier, consistency, FID / KID, grids) of a streamed run
    decodes what it reads and gives the in-memory run's numbers."""
    from dimgen.gan import GANConfig, train_gan

    root, enc = stream_encoder
    runs = {}
    for name, data in (("s", None), ("m", f"folder:{root},side=8")):
        cfg = GANConfig(encoder_run=str(enc), data=data, steps=4, batch_size=8,
                        sample_every=0, eval_samples=10, classifier_epochs=1, device="cpu")  # fmt: skip
        runs[name] = train_gan(cfg, tmp_path / name, progress=False).metrics
    for key in ("fid_dimgen_classifier_conditional", "conditional_consistency",
                "kid_dimgen_classifier_real", "fid_extractor_sha256"):  # fmt: skip
        assert runs["s"][key] == runs["m"][key], key
    # dimgen evaluate-gan on the folders: the streamed run decodes its subsets again
    from dimgen.gan.evaluation import evaluate_run

    again = [evaluate_run(tmp_path / n, n=10, seed=1, device="cpu") for n in ("s", "m")]
    assert again[0] == again[1] and again[0]["n_eval"] == 10
    assert (tmp_path / "s" / "samples" / "conditional.png").read_bytes() == (
        tmp_path / "m" / "samples" / "conditional.png"
    ).read_bytes()


def test_two_processes_pretrain_their_streamed_shards_as_in_memory(tmp_path: Path) -> None:
    """``--devices 2``: each process decodes only its half of every global batch (StreamBatches'
    shard), and the run equals the in-memory 2-process run, bit for bit."""
    from dimgen.ssl.trainer import pretrain

    root = make_pngs(tmp_path / "imgs", n_per_class=8)  # 16 images: 12 to pre-train on
    for name, data in (("s", f"folder:{root},stream=1,workers=1"), ("m", f"folder:{root}")):
        cfg = _pretrain_cfg(data, epochs=1, checkpoint_every=0, devices=2)
        pretrain(cfg, tmp_path / name, progress=False)
    s, m = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("s", "m"))
    assert s["processes"] == 2 and s["history"] == m["history"] and len(s["history"]) == 1
    same_weights(tmp_path / "s" / "model.safetensors", tmp_path / "m" / "model.safetensors")
    assert run_json(tmp_path / "s")["data_mode"] == {"mode": "stream", "workers": 1}


def test_smoke_cap_keeps_a_stream_on_disk(tmp_path: Path, monkeypatch) -> None:
    from dimgen.data.stream import StreamedData, load_stream
    from dimgen.training import smoke

    root = make_pngs(tmp_path / "imgs", n_per_class=8)
    st = load_stream(f"folder:{root},side=8,stream=1,workers=0", 0.25, 0)
    monkeypatch.setattr(smoke, "MAX_TRAIN", 5)
    monkeypatch.setattr(smoke, "MAX_TEST", 3)
    monkeypatch.setattr(smoke, "active", lambda: True)
    capped = smoke.cap_data(st)
    assert isinstance(capped, StreamedData) and (len(capped.x_train), len(capped.x_test)) == (5, 3)
    assert np.array_equal(capped.y_train, st.y_train[:5])
    assert torch.equal(capped.x_train[:], st.x_train[:5]) and torch.equal(
        capped.x_test[:], st.x_test[:3]
    )


def test_encode_with_an_encoder_streams_a_folder_as_in_memory(stream_encoder, tmp_path) -> None:
    from click.testing import CliRunner
    from dimgen.cli import cli

    root, enc = stream_encoder
    for name, data in (("s.npz", f"folder:{root},side=8,stream=1,workers=2"),
                       ("m.npz", f"folder:{root},side=8")):  # fmt: skip
        res = CliRunner().invoke(
            cli, ["encode", "--encoder", str(enc), "--data", data, "--out", str(tmp_path / name)]
        )
        assert res.exit_code == 0, res.output
    s, m = (np.load(tmp_path / n) for n in ("s.npz", "m.npz"))
    assert s["codes"].shape == (60, 2) and np.array_equal(s["codes"], m["codes"])
    assert np.array_equal(s["labels"], m["labels"]) and np.array_equal(s["split"], m["split"])
    assert (s["split"] == "test").sum() == 12


def test_sample_from_a_streamed_folder_as_in_memory(stream_encoder, tmp_path) -> None:
    from dimgen.gan import GANConfig, train_gan
    from dimgen.gan.sampling import sample

    root, enc = stream_encoder
    cfg = GANConfig(encoder_run=str(enc), steps=2, batch_size=8, sample_every=0, eval_samples=0,
                    device="cpu")  # fmt: skip
    train_gan(cfg, tmp_path / "gan", progress=False)
    got = [sample(tmp_path / "gan", from_images=f"folder:{root},side=8{o}", n=6, seed=2,
                  progress=False)
           for o in (",stream=1,workers=0", "")]  # fmt: skip
    assert got[0].real.shape == (6, 3, 8, 8) and torch.equal(got[0].real, got[1].real)
    assert torch.equal(got[0].images, got[1].images)
    assert np.array_equal(got[0].labels, got[1].labels)


def test_two_processes_train_a_gan_on_their_streamed_rows_as_in_memory(stream_encoder, tmp_path):
    from dimgen.gan import GANConfig, train_gan

    root, enc = stream_encoder
    for name, data in (("s", None), ("m", f"folder:{root},side=8")):
        cfg = GANConfig(encoder_run=str(enc), data=data, steps=3, batch_size=8, log_every=1,
                        sample_every=0, eval_samples=0, device="cpu", devices=2)  # fmt: skip
        train_gan(cfg, tmp_path / name, progress=False)
    s, m = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("s", "m"))
    assert s["processes"] == 2 and s["history"] == m["history"] and len(s["history"]) == 3
    for name in ("generator.safetensors", "discriminator.safetensors"):
        same_weights(tmp_path / "s" / name, tmp_path / "m" / name)
