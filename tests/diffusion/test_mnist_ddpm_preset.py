"""The reduced CPU diffusion preset for MNIST (configs/mnist-ddpm-cpu.yaml) and its smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

from click.testing import CliRunner
from dimgen.cli import cli

from dimgen.config import load_config
from dimgen.diffusion import DiffusionConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_preset_loads_validates_and_is_labelled_reduced() -> None:
    cfg = load_config(CONFIGS / "mnist-ddpm-cpu.yaml", DiffusionConfig)
    gpu = load_config(CONFIGS / "mnist-ddpm.yaml", DiffusionConfig)
    assert cfg.threads == 1 and cfg.device == "auto" and cfg.levels == 3  # 28 -> 14 -> 7
    assert cfg.width < gpu.width and cfg.steps < gpu.steps  # reduced, as it says
    assert cfg.eval_samples > 0 and cfg.classifier_epochs > 0
    assert "reduced cpu preset" in (CONFIGS / "mnist-ddpm-cpu.yaml").read_text().lower()


def _invoke(args: list[str], env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(cli, args, catch_exceptions=False, env=env)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.mnist
def test_preset_smoke_on_real_mnist(tmp_path: Path) -> None:
    """DIMGEN_SMOKE=1 walk of the preset on 1,024 + 512 genuine MNIST images through the CLI:
    the complete run folder, the smoke marker, a falling loss and the shared metric set."""
    import numpy as np

    from dimgen.data import load_data
    from dimgen.io import save_npz

    ds = load_data("mnist", None)
    assert ds.y_train is not None and ds.y_test is not None
    npz = tmp_path / "mnist-subset.npz"
    save_npz(npz, x=np.concatenate([ds.x_train[:1024], ds.x_test[:512]]),
             y=np.concatenate([ds.y_train[:1024], ds.y_test[:512]]),
             split=np.array(["train"] * 1024 + ["test"] * 512))  # fmt: skip
    enc, out = tmp_path / "enc", tmp_path / "ddpm"
    _invoke(["encode", "--config", str(CONFIGS / "mnist-cpu.yaml"), "--out", str(enc), "--quiet",
             "--data", f"npz:{npz}", "--device", "cpu", "--epochs", "1",
             "--set", "eval_batches=2"])  # fmt: skip
    # the preset's networks, a quarter of its batch and 5 DDIM steps: its 30 smoke steps at batch
    # 64 took 24 s and the 2 x 200 evaluation samples 14 s (its values are checked above)
    _invoke(["train-diffusion", str(enc), "--config", str(CONFIGS / "mnist-ddpm-cpu.yaml"),
             "--out", str(out), "--quiet", "--device", "cpu", "--set", "log_every=10",
             "--set", "batch_size=16", "--set", "sample_steps=5"],
            env={"DIMGEN_SMOKE": "1"})  # fmt: skip
    m = json.loads((out / "metrics.json").read_text())
    assert m["smoke"]["trained"] == 30 and m["smoke"]["configured"] > 30
    losses = [h["loss"] for h in m["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert m["n_eval"] == 200  # evaluation capped under DIMGEN_SMOKE
    assert 0.0 <= m["class_tv_unconditional"] <= 1.0 and m["n_classes"] == 10
    assert m["fid_dimgen_classifier_unconditional"] >= 0
    for name in ("run.json", "model_ema.safetensors", "classifier.safetensors",
                 "samples/unconditional.png", "samples/conditional.png", "report.md"):  # fmt: skip
        assert (out / name).is_file(), name
