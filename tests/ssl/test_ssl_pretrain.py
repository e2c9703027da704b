"""`dimgen pretrain` / `dimgen probe`: harness resume, a loss that falls, probes above chance,
presets, and bad input refused in one line before torch is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dimgen.config import load_config
from dimgen.data import Dataset
from dimgen.errors import ConfigError, RunFolderError
from dimgen.io import load_weights, read_run
from dimgen.ssl.config import PretrainConfig
from dimgen.ssl.probe import knn_probe, linear_probe, probe_run
from dimgen.ssl.trainer import embed, pretrain

REPO = Path(__file__).resolve().parents[2]


def _shapes(n: int, seed: int = 0) -> Dataset:
    """3 classes of 16x16 images: a red square, a green bar, a blue disc, randomly placed."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.3, size=(n, 3, 16, 16)).astype(np.float32)
    y = np.arange(n) % 3
    yy, xx = np.mgrid[:16, :16]
    for i in range(n):
        r, c = rng.integers(3, 10, size=2)
        if y[i] == 0:
            x[i, 0, r : r + 5, c : c + 5] = 1.0
        elif y[i] == 1:
            x[i, 1, :, c : c + 3] = 1.0
        else:
            x[i, 2][(yy - r - 2) ** 2 + (xx - c - 2) ** 2 <= 9] = 1.0
    k = n * 3 // 4
    return Dataset("shapes", x[:k], y[:k], x[k:], y[k:])


def _cfg(**kw: object) -> PretrainConfig:
    base = dict(width=4, proj_hidden=32, proj_dim=16, batch_size=32, epochs=1, lr=0.3,
                critic_hidden=16,
                warmup_epochs=0.0, aug_groups=4, device="cpu", threads=1, log_every=1,
                checkpoint_every=2, data="npz:unused")  # fmt: skip
    return PretrainConfig(**{**base, **kw})  # type: ignore[arg-type]


class _Stop(Exception):
    pass


@pytest.mark.parametrize("method", ["simclr", "vicreg", "dim"])
def test_interrupted_pretrain_resumes_bit_exactly(method: str, tmp_path: Path) -> None:
    ds = _shapes(128)  # 96 training images: 3 steps per epoch
    cfg = _cfg(method=method, sigma=0.3, epochs=2)  # 6 steps, checkpoints at 2 and 4
    whole = pretrain(cfg, tmp_path / "whole", data=ds)

    def stop(done: int, _: dict[str, float]) -> None:
        if done == 3:
            raise _Stop

    with pytest.raises(_Stop):
        pretrain(cfg, tmp_path / "cut", data=ds, on_scalars=stop)
    _, meta = load_weights(tmp_path / "cut" / "checkpoint.safetensors")
    assert meta["kind"] == "pretrain-checkpoint" and meta["step"] == 2
    resumed = pretrain(cfg, tmp_path / "cut", data=ds, resume=True)
    assert resumed.history == whole.history and len(whole.history) == 6
    a, _ = load_weights(tmp_path / "whole" / "model.safetensors")
    b, _ = load_weights(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(".channel.norm.running_" in k for k in a)  # the channel's statistics
    assert (method == "dim") == any(".critic." in k for k in a)  # DIM's critic is trained too
    _, rec = read_run(tmp_path / "cut", "pretrain")
    assert rec["method"] == method and rec["sigma"] == 0.3
    other = pretrain(_cfg(method=method, sigma=0.3, epochs=2, seed=1), data=ds)
    assert other.history != whole.history  # the comparison can fail


def test_tiny_pretrain_loss_falls_and_probe_beats_chance(tmp_path: Path) -> None:
    ds = _shapes(400)  # 300 train (9 steps / epoch), 100 probe images, 3 classes
    run = pretrain(_cfg(method="vicreg", sigma=0.1, epochs=4, log_every=9, checkpoint_every=0),
                   tmp_path / "run", data=ds)  # fmt: skip
    losses = [h["loss"] for h in run.history]
    assert len(losses) == 4 and losses[-1] < 0.9 * losses[0], losses
    f_tr = run.net.features(torch.from_numpy(ds.x_train)).detach().numpy()
    f_te = run.net.features(torch.from_numpy(ds.x_test)).detach().numpy()
    probe = linear_probe(f_tr, ds.y_train, f_te, ds.y_test)
    assert probe["top1"] > 33.3 + 30 and probe["top5"] == 100.0  # 3 classes: top-5 is all
    assert knn_probe(f_tr, ds.y_train, f_te, ds.y_test) > 33.3 + 30
    codes = np.load(tmp_path / "run" / "codes.npz")
    assert codes["codes"].shape == (100, 16) and list(codes["labels"]) == list(ds.y_test)
    # inference codes: the channel's batch-norm, calibrated exactly on the training embeddings
    _, emb = embed(run.net, torch.from_numpy(ds.x_train))
    mean, var = emb.double().mean(0), emb.double().var(0, unbiased=False)
    _, emb_te = embed(run.net, torch.from_numpy(ds.x_test))
    want = ((emb_te.double() - mean) / torch.sqrt(var + 1e-5)).float().numpy()
    assert np.allclose(codes["codes"], want, atol=1e-4)


def test_tiny_dim_pretrain_loss_falls_and_probe_beats_chance(tmp_path: Path) -> None:
    ds = _shapes(400)  # 300 train (9 steps / epoch), 100 probe images, 3 classes
    # 16 epochs at lr 0.5: the loss falls by 0.40-0.55 nats over seeds 0-2 (at 8 epochs, lr 1.0
    # the fall was 0.01-0.30, too close to the threshold to survive another CPU's rounding)
    cfg = _cfg(method="dim", sigma=0.3, epochs=16, lr=0.5, critic="separable", log_every=9,
               checkpoint_every=0)  # fmt: skip
    run = pretrain(cfg, tmp_path / "run", data=ds)
    losses = [h["loss"] for h in run.history]  # one window per epoch
    # -InfoNCE starts near 0 (an untrained critic) and can only fall to -log B = -3.47
    assert len(losses) == 16 and losses[-1] >= -np.log(32), losses
    assert np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.15, losses
    f_tr = run.net.features(torch.from_numpy(ds.x_train)).detach().numpy()
    f_te = run.net.features(torch.from_numpy(ds.x_test)).detach().numpy()
    assert linear_probe(f_tr, ds.y_train, f_te, ds.y_test)["top1"] > 33.3 + 30
    codes = np.load(tmp_path / "run" / "codes.npz")["codes"]  # calibrated channel codes
    assert codes.shape == (100, 16) and abs(codes.mean()) < 0.5


def test_linear_probe_top_k_on_separable_blobs() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 8)) * 5
    y = np.arange(1000) % 10
    f = centres[y] + rng.normal(size=(1000, 8))
    res = linear_probe(f[:800], y[:800], f[800:], y[800:])
    assert res["top1"] > 95 and res["top5"] >= res["top1"]
    noise = rng.normal(size=(1000, 8))  # no signal: near chance (10 %)
    res = linear_probe(noise[:800], y[:800], noise[800:], y[800:])
    assert res["top1"] < 20 and 35 < res["top5"] < 65


def test_cli_pretrain_then_probe_on_the_lossy_cifar_copy(tmp_path: Path) -> None:
    if not (Path(os.environ.get("DIMGEN_DATA", "/nonexistent")) / "CIFAR10").is_dir():
        pytest.skip("needs DIMGEN_DATA with CIFAR10/cifar10_test.npz")
    from click.testing import CliRunner
    from dimgen.cli import cli

    run = tmp_path / "run"
    sets = ["width=4", "proj_hidden=32", "proj_dim=16", "max_train=64", "test_fraction=0.05",
            "checkpoint_every=0", "device=cpu", "batch_size=32"]  # fmt: skip
    args = ["pretrain", "--config", str(REPO / "configs" / "cifar10-vicreg-cpu.yaml"),
            "--sigma", "0.3", "--epochs", "1", "--out", str(run), "--quiet"]  # fmt: skip
    res = CliRunner().invoke(cli, [*args, *[a for s in sets for a in ("--set", s)]])
    assert res.exit_code == 0, res.output
    assert "vicreg sigma 0.3, 2 steps" in res.output and "split 9500/500" in res.output
    res = CliRunner().invoke(cli, ["probe", str(run), "-k", "5", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)  # stdout: the JSON alone (phases go to stderr)
    assert out["data"] == "CIFAR-10 test set, lossy copy, split 9500/500 (seed 0)"
    assert out["probe_images"] == 500 and 10 < out["top1"] <= 100 and out["top5"] > out["top1"]
    res = CliRunner().invoke(cli, [*args, "--set", "width=4"])  # the folder is in use
    assert res.exit_code == 2 and "not empty" in res.output


def test_presets_load_and_describe_the_paper_recipe() -> None:
    sim = load_config(REPO / "configs" / "cifar10-simclr.yaml", PretrainConfig)
    vic = load_config(REPO / "configs" / "cifar10-vicreg.yaml", PretrainConfig)
    assert (sim.method, sim.out_dim, sim.width, sim.epochs) == ("simclr", 256, 64, 800)
    assert (vic.method, vic.out_dim, vic.proj_hidden) == ("vicreg", 2048, 2048)
    for m in ("simclr", "vicreg"):
        cpu = load_config(REPO / "configs" / f"cifar10-{m}-cpu.yaml", PretrainConfig)
        assert cpu.device == "cpu" and cpu.data == "cifar10-test-lossy"


def test_bad_config_values_are_refused() -> None:
    from dimgen.config import from_dict

    for key, value, needle in [("method", "byol", "method"), ("sigma", float("nan"), "sigma"),
                               ("batch_size", 1, "batch_size"), ("data", "imagenet", "data"),
                               ("data", "folder:/x,side=abc", "side"),
                               ("data", "folder:/x,mode=grey", "RGB"),
                               ("data", "folder:/x,side=64", "image_size"),
                               ("critic", "bilinear", "critic"),
                               ("momentum", 1.0, "momentum")]:  # fmt: skip
        with pytest.raises(ConfigError, match=needle):
            from_dict(PretrainConfig, {key: value})


_WRAPPER = """
import json, sys
sys.argv = ["dimgen", *json.loads(sys.argv[1])]
from dimgen.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "torch": "torch" in sys.modules}))
"""


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["pretrain"], "--out"),
        (["pretrain", "--out", "{tmp}/r", "--sigma", "-1"], "sigma"),
        (["pretrain", "--out", "{tmp}/r", "--set", "bogus=1"], "unknown key"),
        (["pretrain", "--out", "{tmp}/r", "--set", "data=imagenet"], "data must be"),
        (["pretrain", "--out", "{tmp}/r", "--set", "data=folder:/x,side=2"], "side must lie"),
        (["pretrain", "--out", "{tmp}/r", "--config", "{tmp}/none.yaml"], "not found"),
        (["pretrain", "--resume", "{tmp}/none"], "nothing to resume"),
        (["probe", "{tmp}/none"], "no such run folder"),
        (["probe", "{tmp}/none", "-k", "0"], "-k"),
        (["probe", "{tmp}/none", "--wknn-k", "0"], "--wknn-k"),
        (["probe", "{tmp}/none", "--temperature", "0"], "--temperature"),
        (["probe", "{tmp}/none", "--temperature", "nan"], "--temperature"),
        (["probe", "{tmp}/none", "--sgd-epochs", "0"], "--sgd-epochs"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_before_torch(
    args: list[str], needle: str, tmp_path: Path
) -> None:
    args = [a.format(tmp=tmp_path) for a in args]
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(args)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    lines = proc.stderr.strip().splitlines()
    assert result == {"code": 2, "torch": False}, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert not list(tmp_path.iterdir())


def test_probe_refuses_a_foreign_run_folder(tmp_path: Path) -> None:
    from dimgen.io import write_run

    write_run(tmp_path, "encoder")
    with pytest.raises(RunFolderError, match="expected pretrain"):
        probe_run(tmp_path)


def _image_folder(root: Path, classes: bool) -> None:
    """36 PNGs of 20x24 RGB pixels (resized to 16 on reading): a red square, a green bar or a
    blue disc on dark noise, in class sub-folders (ImageFolder) or all in ``root`` (flat)."""
    from PIL import Image

    ds = _shapes(48, seed=1)
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        folder = root / ("red", "green", "blue")[label] if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        pix = (img.transpose(1, 2, 0) * 255).astype(np.uint8)
        Image.fromarray(pix).resize((24, 20)).save(folder / f"{i:03d}.png")


def test_pretrain_on_a_folder_probe_needs_its_classes(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from dimgen.cli import cli

    _image_folder(tmp_path / "labelled", classes=True)
    _image_folder(tmp_path / "flat", classes=False)
    runner = CliRunner()
    for name in ("labelled", "flat"):
        args = ["pretrain", "--out", str(tmp_path / f"run-{name}"), "--method", "dim",
                "--sigma", "0.2", "--batch-size", "16", "--quiet", "--set",
                f"data=folder:{tmp_path / name}", "--set", "image_size=16", "--set", "width=2",
                "--set", "proj_hidden=16", "--set", "proj_dim=8", "--set", "critic_hidden=8",
                "--set", "warmup_epochs=0", "--set", "aug_groups=2", "--set", "test_fraction=0.25",
                "--device", "cpu"]  # fmt: skip
        res = runner.invoke(cli, args)
        assert res.exit_code == 0, res.output
        assert f"{name}/, random split 36/12" in res.output  # 48 images, 25 % held out
        codes = np.load(tmp_path / f"run-{name}" / "codes.npz")
        assert codes["codes"].shape == (12, 8) and np.isfinite(codes["codes"]).all()
        assert ("labels" in codes.files) == (name == "labelled")
    res = runner.invoke(cli, ["probe", str(tmp_path / "run-labelled"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)  # stdout: the JSON alone (phases go to stderr)
    assert out["probe_images"] == 12 and out["train_images"] == 36 and 0 <= out["top1"] <= 100
    assert out["knn_k"] == 20
    # the SSL literature's protocols beside scikit-learn's; the weighted kNN asked for k = 200
    # of 36 training images and used 36
    assert out["wknn_k"] == 36 and out["wknn_temperature"] == 0.1 and out["sgd_epochs"] == 100
    for key in ("top1", "top5", "knn", "sgd_top1", "sgd_top5", "wknn_top1", "wknn_top5"):
        assert 0 <= out[key] <= 100, key
    assert out["sgd_top5"] == out["wknn_top5"] == 100.0  # 3 classes: top-5 is all
    # more neighbours than training images: the kNN vote uses all 36, and says so (said k=50)
    res = runner.invoke(cli, ["probe", str(tmp_path / "run-labelled"), "-k", "50", "--wknn-k",
                              "3", "--temperature", "0.5", "--sgd-epochs", "2"])  # fmt: skip
    assert res.exit_code == 0 and "kNN (k=36)" in res.output, res.output
    assert "SGD linear top-1" in res.output and "weighted kNN (k=3, T=0.5) top-1" in res.output
    res = runner.invoke(cli, ["probe", str(tmp_path / "run-flat")])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "flat folder has none" in lines[0] and "ImageFolder" in lines[0]


def test_table1_takes_dim_as_an_optional_method() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("table1", REPO / "benchmarks" / "table1.py")
    assert spec is not None and spec.loader is not None
    table1 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table1)
    assert table1.METHODS == ("simclr", "vicreg")  # the default table is unchanged
    assert table1._methods("simclr,vicreg,dim") == ["simclr", "vicreg", "dim"]
    with pytest.raises(Exception, match="unknown method 'byol'"):
        table1._methods("simclr,byol")
    row = {"top1": 50.0, "top5": 90.0, "knn": 40.0, "sgd_top1": 51.0, "sgd_top5": 91.0,
           "wknn_top1": 41.0}  # fmt: skip
    text = table1.table({("dim", 0.0): [row], ("simclr", 0.0): [row]})
    assert "| dim | 0 | 51.00 | 91.00 | 41.00 | 50.00 | 90.00 | 40.00 | - | - | - |" in text
    old = {"top1": 50.0, "top5": 90.0, "knn": 40.0}  # a result from before the SGD / weighted kNN
    text = table1.table({("simclr", 0.0): [old]})
    assert "| simclr | 0 | - | - | - | 50.00 | 90.00 | 40.00 | 90.83 | 99.76 | - |" in text
    # the verdict reads SGD top-1 (the paper's protocol): LR top-1 within the spread, SGD not
    zero = [dict(row, sgd_top1=50.0), dict(row, sgd_top1=52.0)]
    text = table1.table({("simclr", 0.0): zero, ("simclr", 0.1): [dict(row, sgd_top1=60.0)]})
    assert (
        "| simclr | 0.1 | 60.00 | 91.00 | 41.00 | 50.00 | 90.00 | 40.00 | 90.96 | 99.72 | no |"
        in text
    )
    text = table1.table({("simclr", 0.0): zero, ("simclr", 0.1): [dict(row, sgd_top1=51.5)]})
    assert text.endswith("| yes |") and "| 51.00 ± 1.41 |" in text
    cfg = load_config(REPO / "configs" / "cifar10-dim-cpu.yaml", PretrainConfig)
    gpu = load_config(REPO / "configs" / "cifar10-dim.yaml", PretrainConfig)
    assert (cfg.method, cfg.device, gpu.method, gpu.out_dim, gpu.width) == (
        "dim",
        "cpu",
        "dim",
        256,
        64,
    )
