"""The diffusion generator on the harness: training, resume, sampling, evaluation, CLI, bad input."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from click.testing import CliRunner, Result
from dimgen.cli import cli

from dimgen.config import from_dict, load_config
from dimgen.diffusion import DiffusionConfig, DiffusionModel, train_diffusion
from dimgen.errors import ConfigError, RunFolderError
from dimgen.gan.model import child_seeds
from dimgen.generators import Generator
from dimgen.generators.runs import load_generator
from dimgen.io import load_weights

REPO = Path(__file__).resolve().parents[2]
TINY = {"steps": 60, "log_every": 10, "checkpoint_every": 0, "sample_every": 0, "sample_steps": 4,
        "classifier_epochs": 1, "eval_samples": 40, "device": "cpu", "width": 8}  # fmt: skip


def _cfg(enc: Path, **kw: object) -> DiffusionConfig:
    return from_dict(DiffusionConfig, {**TINY, "encoder_run": str(enc), **kw})


@pytest.fixture(scope="module")
def tiny_run(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("runs") / "digits-ddpm"
    return out, train_diffusion(_cfg(digits_run), out)


def _run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_presets_and_validation(tmp_path: Path) -> None:
    digits = load_config(REPO / "configs" / "digits-ddpm.yaml", DiffusionConfig)
    assert digits == DiffusionConfig()  # the preset is the default, spelled out
    assert load_config(REPO / "configs" / "mnist-ddpm.yaml", DiffusionConfig).levels == 3
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(DiffusionConfig, {"stepz": 3})
    for bad, word in (({"p_uncond": 1.0}, "p_uncond"), ({"width": 12}, "norm_groups"),
                      ({"scheduler": "euler"}, "scheduler"), ({"lr": float("nan")}, "lr"),
                      ({"sample_steps": 2000}, "sample_steps"), ({"guidance_scale": -1.0}, "guidance"),
                      ({"eval_samples": 5}, "eval_samples")):  # fmt: skip
        with pytest.raises(ConfigError, match=word):
            from_dict(DiffusionConfig, bad)
    with pytest.raises(ConfigError, match="encoder_run is required"):
        train_diffusion(DiffusionConfig(), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_tiny_run_loss_falls_and_folder_is_complete(tiny_run: tuple[Path, object]) -> None:
    out, run = tiny_run
    losses = [h["loss"] for h in run.history]  # type: ignore[attr-defined]
    assert len(losses) == 6 and losses[-1] < 0.6 * losses[0], losses
    for name in ("run.json", "config.yaml", "model.safetensors", "model_ema.safetensors",
                 "encoder.safetensors", "checkpoint.safetensors", "metrics.json", "report.md",
                 "samples/conditional.png", "samples/unconditional.png", "samples/final.png"):  # fmt: skip
        assert (out / name).is_file(), name
    _, meta = load_weights(out / "model_ema.safetensors")
    assert meta["kind"] == "diffusion" and meta["spec"]["block_out_channels"] == [8, 16]
    m = run.metrics  # type: ignore[attr-defined]
    assert m["n_eval"] == 40 and 0 <= m["class_tv_unconditional"] <= 1
    assert "fid_dimgen_classifier_unconditional" in m
    # FIDs in the data set's one reference feature space (as the GAN's), copied into the folder
    assert (out / "classifier.safetensors").is_file()
    digest = hashlib.sha256((out / "classifier.safetensors").read_bytes()).hexdigest()
    assert m["fid_extractor_sha256"] == digest
    assert "label consistency" in (out / "report.md").read_text()


def test_resume_after_interruption_is_bit_exact(digits_run: Path, tmp_path: Path) -> None:
    cfg = _cfg(digits_run, steps=30, checkpoint_every=10, eval_samples=0, classifier_epochs=0)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    train_diffusion(cfg, whole)

    def stop(done: int, scalars: dict[str, float]) -> None:
        if done == 20:
            raise KeyboardInterrupt  # killed just before the checkpoint of step 20

    with pytest.raises(KeyboardInterrupt):
        train_diffusion(cfg, cut, on_scalars=stop)
    assert (cut / "checkpoint.safetensors").is_file() and not (cut / "run.json").exists()
    with pytest.raises(RunFolderError, match="incomplete"):
        DiffusionModel.from_pretrained(cut)
    res = _run("train-diffusion", "--resume", cut, "--quiet")
    assert res.exit_code == 0, res.output
    for name in ("model.safetensors", "model_ema.safetensors"):
        a, _ = load_weights(whole / name)
        b, _ = load_weights(cut / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_sampling_is_seed_deterministic_and_unconditional_uses_prior_codes(
    tiny_run: tuple[Path, object],
) -> None:
    out, _ = tiny_run
    model = load_generator(out)
    assert isinstance(model, DiffusionModel) and isinstance(model, Generator)
    imgs, codes = model.sample_unconditional(6, seed=5)
    again, _ = model.sample_unconditional(6, seed=5)
    other, _ = model.sample_unconditional(6, seed=6)
    assert imgs.shape == (6, 1, 8, 8) and imgs.min() >= 0 and imgs.max() <= 1
    assert torch.equal(imgs, again) and not torch.allclose(imgs, other)
    s_codes, s_noise = child_seeds(5, 2)
    assert torch.equal(codes, model.tokenizer.sample_prior(6, seed=s_codes))  # the prior's draw
    assert torch.equal(imgs, model.generate(codes, seed=s_noise))  # ... fed to the one network
    model.guidance_scale = 0.0  # the null code alone: images no longer depend on the code
    a = model.generate(codes, seed=1)
    b = model.generate(torch.zeros_like(codes), seed=1)
    assert torch.equal(a, b)


def test_cli_sample_and_evaluate_on_a_diffusion_run(
    tiny_run: tuple[Path, object], tmp_path: Path
) -> None:
    out, _ = tiny_run
    res = _run("sample", out, "--unconditional", "-n", 5, "--out", tmp_path / "u.png")
    assert res.exit_code == 0, res.output
    assert "5 samples (unconditional)" in res.output
    with np.load(tmp_path / "u.npz") as z:
        assert z["codes"].shape == (5, 2)
    res = _run("sample", out, "--from-images", "digits", "-n", 4, "--guidance", 2,
               "--out", tmp_path / "c.png")  # fmt: skip
    assert res.exit_code == 0 and "4 samples (conditional)" in res.output, res.output
    res = _run("evaluate-generator", out, "-n", 30, "--json")
    assert res.exit_code == 0, res.output
    assert '"n_eval": 30' in res.output and "conditional_consistency" in res.output


def test_bad_input_one_line_exit_2(digits_run: Path, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    cases = [
        (("sample", tmp_path / "plain", "--unconditional", "--guidance", -1, "--out",
          tmp_path / "a.png"), "--guidance"),
        (("sample", digits_run, "--unconditional", "--out", tmp_path / "b.png"),
         "is an encoder run, not a generator"),
        (("train-diffusion", digits_run, "--out", tmp_path / "d", "--set", "levels=5"), "halved"),
        (("train-diffusion", tmp_path / "plain", "--out", tmp_path / "e"), "not a dimgen run"),
        (("train-diffusion", digits_run, "--out", tmp_path / "f", "--set", "p_uncond=2"),
         "p_uncond"),
    ]  # fmt: skip
    for args, needle in cases:
        res = _run(*args)
        lines = res.output.strip().splitlines()
        assert res.exit_code == 2 and len(lines) == 1, (args, res.output)
        assert lines[0].startswith("error: ") and needle in lines[0], (args, lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]  # nothing half-written


def test_missing_diffusers_is_one_line_naming_the_extra(
    digits_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)
    res = _run("train-diffusion", digits_run, "--out", tmp_path / "x")
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "pip install 'dimgen[diffusers]'" in res.output
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_preset_digits_run_covers_classes_and_follows_codes(
    digits_run: Path, tmp_path: Path
) -> None:
    """The digits preset (minutes on a CPU): unconditional samples (prior codes) cover the
    digit classes, and conditional samples keep their image's label well above chance."""
    cfg = load_config(REPO / "configs" / "digits-ddpm.yaml", DiffusionConfig)
    run = train_diffusion(from_dict(DiffusionConfig, {**vars(cfg), "encoder_run": str(digits_run),
                                                      "device": "cpu"}), tmp_path / "r")  # fmt: skip
    m = run.metrics
    assert m["class_coverage_unconditional"] >= 8
    assert m["class_tv_unconditional"] < 0.3
    assert m["conditional_consistency"] > 2 * m["chance_consistency"]


def test_guidance_only_applies_to_diffusion() -> None:
    from dimgen.gan.evaluation import set_guidance

    class NoGuidance:  # a GAN has no guidance scale
        pass

    with pytest.raises(ConfigError, match="only applies to diffusion"):
        set_guidance(NoGuidance(), 2.0)  # type: ignore[arg-type]
    model = type("M", (), {"guidance_scale": 1.0})()
    set_guidance(model, 3)  # type: ignore[arg-type]
    assert model.guidance_scale == 3.0
    with pytest.raises(ConfigError, match=">= 0"):
        set_guidance(model, float("nan"))  # type: ignore[arg-type]


def test_crafted_metadata_is_refused_before_the_unet_is_built(
    tiny_run: tuple[Path, object], tmp_path: Path
) -> None:
    """A model file whose spec claims a huge UNet is refused on the meta device, in well
    under a second, instead of allocating the claimed network."""
    import shutil
    import time

    from dimgen.io import refresh_digests, save_weights

    run = tmp_path / "crafted"
    shutil.copytree(tiny_run[0], run)
    for name in ("model.safetensors", "model_ema.safetensors"):
        if (run / name).is_file():
            tensors, meta = load_weights(run / name)
            channels = meta["spec"]["block_out_channels"]
            meta["spec"]["block_out_channels"] = [2048 * (i + 1) for i in range(len(channels))]
            save_weights(run / name, tensors, meta)
    refresh_digests(run)
    t0 = time.perf_counter()
    with pytest.raises(RunFolderError, match="declared"):
        DiffusionModel.from_pretrained(run)
    assert time.perf_counter() - t0 < 5.0


def test_diffusion_uses_the_encoders_split_seed_not_its_seed(tmp_path: Path) -> None:
    """The generator must hold out the encoder's held-out images: its split comes from the
    encoder's ``split_seed`` (fixed), not from its training ``seed``."""
    import json

    from dimgen.config import EncoderConfig
    from dimgen.infomax.trainer import train_encoder

    enc = tmp_path / "enc"
    train_encoder(EncoderConfig(epochs=2, seed=3), enc)
    out = tmp_path / "ddpm"
    run = train_diffusion(_cfg(enc, eval_samples=0), out)
    assert json.loads((out / "run.json").read_text())["split"]["seed"] == 0
    assert run.path == out and DiffusionModel.from_pretrained(out).split == (0.2, 0)
