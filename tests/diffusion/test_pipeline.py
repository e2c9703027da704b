"""``CodePipeline``: a diffusion run exported as a ``diffusers`` pipeline, loaded back, sampled.

The pipeline must give the same images as dimgen's own sampler at equal seeds (bit-identical on
the CPU: it runs the same network weights through the same sampler), and loading must refuse
any folder it should (foreign run kinds, foreign or pickled files, non-finite weights).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from click.testing import CliRunner
from dimgen.cli import cli
from safetensors.torch import load_file, save_file
from sklearn.datasets import load_digits

from dimgen.config import from_dict
from dimgen.diffusion import DiffusionConfig, DiffusionModel, train_diffusion
from dimgen.diffusion.pipeline import PIPELINE_FILES, CodePipeline
from dimgen.errors import ConfigError, RunFolderError

TINY = {"steps": 20, "log_every": 10, "checkpoint_every": 0, "sample_every": 0, "sample_steps": 4,
        "classifier_epochs": 0, "eval_samples": 0, "device": "cpu", "width": 8}  # fmt: skip
UNET_W = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def exported(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(diffusion run folder, its pipeline export via ``dimgen export``)."""
    root = tmp_path_factory.mktemp("pipe")
    cfg = from_dict(DiffusionConfig, {**TINY, "encoder_run": str(digits_run)})
    train_diffusion(cfg, root / "run")
    res = CliRunner().invoke(cli, ["export", str(root / "run"), "--out", str(root / "pipe")])
    assert res.exit_code == 0, res.output
    assert "diffusers pipeline" in res.output
    return root / "run", root / "pipe"


def test_export_writes_diffusers_layout(exported: tuple[Path, Path]) -> None:
    run, out = exported
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(PIPELINE_FILES)  # everything, encoder included; nothing else
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "CodePipeline"
    assert index["unet"] == ["diffusers", "UNet2DModel"]
    assert index["scheduler"] == ["diffusers", "DDIMScheduler"]  # the run's sampler
    assert index["prior"] == ["dimgen.diffusion.pipeline", "CodePrior"]
    assert index["num_inference_steps"] == 4 and index["guidance_scale"] == 1.0
    assert "library_name: diffusers" in (out / "README.md").read_text()
    # the EMA weights (what DiffusionModel samples with), unchanged
    ema = load_file(str(run / "model_ema.safetensors"))
    unet = load_file(str(out / UNET_W))
    assert unet.keys() == {k[5:] for k in ema if k.startswith("unet.")}
    assert all(torch.equal(unet[k], ema["unet." + k]) for k in unet)
    # a second export into the same folder: refused, one line
    res = CliRunner().invoke(cli, ["export", str(run), "--out", str(out)])
    assert res.exit_code == 2 and "not empty" in res.output


def test_same_images_as_dimgen_sampler_at_equal_seeds(exported: tuple[Path, Path]) -> None:
    run, out = exported
    pipe = CodePipeline.from_pretrained(out)
    model = DiffusionModel.from_pretrained(run)
    imgs, codes = model.sample_unconditional(6, seed=5)
    got = pipe(num_images=6, seed=5, output_type="pt")
    assert torch.equal(got.images, imgs) and torch.equal(got.codes, codes)  # bit-identical
    assert not torch.equal(pipe(num_images=6, seed=6, output_type="pt").images, imgs)
    x = load_digits().images[:5] / 16.0
    var, c = model.sample_conditional(x, seed=3)
    got = pipe(images=x, seed=3, output_type="pt")
    assert torch.equal(got.images, var) and torch.equal(got.codes, c)
    # a generator: codes from the prior first, then the noise, both from it
    g = torch.Generator().manual_seed(11)
    got = pipe(num_images=4, generator=g, output_type="pt")
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(11))
    assert torch.equal(got.codes, z)
    # guidance as dimgen's sampler has it
    model.guidance_scale = 2.5
    want = model.generate(z, seed=7)
    assert torch.equal(pipe(codes=z, seed=7, guidance_scale=2.5, output_type="pt").images, want)
    assert not torch.equal(pipe(codes=z, seed=7, output_type="pt").images, want)
    # output types: PIL images and (n, H, W, C) arrays of the same values
    pil = pipe(codes=z, seed=7, guidance_scale=2.5).images
    arr = pipe(codes=z, seed=7, guidance_scale=2.5, output_type="np").images
    assert len(pil) == 4 and pil[0].size == (8, 8) and arr.shape == (4, 8, 8, 1)
    assert np.array_equal(arr, want.permute(0, 2, 3, 1).numpy())
    with pytest.raises(ConfigError, match="generator or a seed"):
        pipe(num_images=2, seed=1, generator=g)


def test_pipeline_without_encoder_and_save_pretrained_round_trip(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    run, _ = exported
    pipe = CodePipeline.from_model(DiffusionModel.from_pretrained(run), encoder=False)
    pipe.save_pretrained(tmp_path / "p", safe_serialization=True)
    assert not (tmp_path / "p" / "encoder").exists()
    back = CodePipeline.from_pretrained(tmp_path / "p")
    assert back.encoder is None
    a = pipe(num_images=3, seed=1, output_type="pt").images
    assert torch.equal(back(num_images=3, seed=1, output_type="pt").images, a)
    with pytest.raises(ConfigError, match="without its encoder"):
        back(images=load_digits().images[:2] / 16.0)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_loading_refuses_folders_it_should(
    exported: tuple[Path, Path], digits_run: Path, tmp_path: Path
) -> None:
    run, out = exported

    def refused(folder: Path, words: str) -> None:
        with pytest.raises(RunFolderError, match=words) as err:
            CodePipeline.from_pretrained(folder)
        assert "\n" not in str(err.value)  # one line

    refused(run, "diffusion run folder, not a pipeline")  # another kind of folder
    refused(digits_run, "encoder run folder, not a pipeline")
    enc = tmp_path / "enc"
    assert CliRunner().invoke(cli, ["export", str(digits_run), "--out", str(enc)]).exit_code == 0
    refused(enc, "encoder export, not a pipeline")
    extra = _copy(out, tmp_path / "extra")
    (extra / "unet" / "notes.txt").write_text("hello")
    refused(extra, "foreign file unet/notes.txt")
    pickled = _copy(out, tmp_path / "pickled")
    torch.save({"w": torch.zeros(1)}, pickled / "unet" / "diffusion_pytorch_model.bin")
    refused(pickled, "pickled weights file; dimgen loads safetensors only")
    nan = _copy(out, tmp_path / "nan")
    w = load_file(str(nan / UNET_W))
    key = next(k for k, v in w.items() if v.is_floating_point())
    w[key] = w[key].clone()
    w[key].view(-1)[0] = float("nan")
    save_file(w, str(nan / UNET_W))
    refused(nan, f"tensor {key} holds 1 NaN or inf")
    shape = _copy(out, tmp_path / "shape")
    w = load_file(str(shape / "code_embedding/diffusion_pytorch_model.safetensors"))
    w["embedding.null_code"] = torch.zeros(5)
    save_file(w, str(shape / "code_embedding/diffusion_pytorch_model.safetensors"))
    refused(shape, "embedding.null_code has shape")
    # finite but unusable statistics of the encoder's channel (a negative variance)
    var = _copy(out, tmp_path / "var")
    w = load_file(str(var / "encoder/diffusion_pytorch_model.safetensors"))
    w["channel.norm.running_var"] = -torch.ones_like(w["channel.norm.running_var"])
    save_file(w, str(var / "encoder/diffusion_pytorch_model.safetensors"))
    refused(var, "channel.norm.running_var holds a negative variance; the weights are corrupt")
    other = _copy(out, tmp_path / "other")
    index = json.loads((other / "model_index.json").read_text())
    (other / "model_index.json").write_text(json.dumps({**index, "_class_name": "DDPMPipeline"}))
    refused(other, "'DDPMPipeline' pipeline, not a dimgen CodePipeline")
    missing = _copy(out, tmp_path / "missing")
    (missing / UNET_W).unlink()
    refused(missing, f"incomplete pipeline \\({UNET_W} missing")


def test_hub_id_downloads_only_the_pipeline_files(
    exported: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = pytest.importorskip("huggingface_hub")
    _, out = exported
    calls: list[tuple[str, list[str], dict]] = []

    def fake_download(repo_id: str, allow_patterns: list[str], **kw: object) -> str:
        calls.append((repo_id, allow_patterns, kw))  # no network in tests
        return str(out)

    monkeypatch.setattr(hub, "snapshot_download", fake_download)
    pipe = CodePipeline.from_pretrained("someone/dimgen-digits-ddpm", revision="v1")
    assert calls == [("someone/dimgen-digits-ddpm", list(PIPELINE_FILES), {"revision": "v1"})]
    assert pipe(num_images=2, seed=0, output_type="pt").images.shape == (2, 1, 8, 8)
