"""Conditional GAN: nets, losses, config, a short digits run, sampling, seeds and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dimgen.config import from_dict, load_config
from dimgen.errors import ConfigError, DataError, RunFolderError, TrainingError
from dimgen.gan import (
    GAN,
    GANConfig,
    d_loss,
    ema_update,
    evaluate_gan,
    g_loss,
    r1_penalty,
    sample,
    train_gan,
    write_samples,
)
from dimgen.gan.model import child_seeds
from dimgen.gan.nets import build_discriminator, build_generator, resolve_arch
from dimgen.infomax.tokenizer import Tokenizer
from dimgen.io import load_weights

REPO = Path(__file__).resolve().parents[2]


def _spec(arch: str, shape: tuple[int, ...], conditioning: str = "concat") -> dict:
    return {"arch": arch, "shape": list(shape), "code_dim": 3, "noise_dim": 16, "g_width": 16,
            "d_width": 16, "conditioning": conditioning, "spectral_norm": True}  # fmt: skip


@pytest.mark.parametrize(
    ("arch", "shape"), [("mlp", (1, 8, 8)), ("dcgan", (1, 28, 28)), ("dcgan", (3, 32, 32))]
)
@pytest.mark.parametrize("conditioning", ["concat", "projection"])
def test_nets_shapes_and_gradients(arch: str, shape: tuple[int, ...], conditioning: str) -> None:
    torch.manual_seed(0)
    spec = _spec(arch, shape, conditioning)
    G, D = build_generator(spec), build_discriminator(spec)
    z, c = torch.randn(4, 16), torch.randn(4, 3)
    x = G(z, c)
    assert x.shape == (4, *shape)
    assert float(x.detach().min()) >= 0 and float(x.detach().max()) <= 1
    s = D(x, c)
    assert s.shape == (4,)
    (s.sum() + D(torch.rand(4, *shape), c).sum()).backward()
    for net in (G, D):
        missing = [
            n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
        ]
        assert not missing, f"no gradient reaches {missing}"
    # The code changes both outputs: the nets are conditioned.
    G.eval()
    with torch.no_grad():
        assert not torch.allclose(G(z, c), G(z, c + 1))
        assert not torch.allclose(D(x, c), D(x, c + 1))


def test_resolve_arch() -> None:
    assert resolve_arch("auto", (1, 8, 8)) == "mlp"
    assert resolve_arch("auto", (1, 28, 28)) == "dcgan"
    assert resolve_arch("auto", (3, 32, 32)) == "dcgan"
    assert resolve_arch("auto", (64,)) == "mlp"
    assert resolve_arch("mlp", (3, 32, 32)) == "mlp"
    with pytest.raises(ConfigError, match="multiple of 4"):
        resolve_arch("dcgan", (1, 30, 30))
    with pytest.raises(ConfigError, match="unknown"):
        resolve_arch("resnet", (1, 28, 28))


def test_losses_closed_form() -> None:
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # hinge: mean(relu(1 - real)) + mean(relu(1 + fake)) = (0 + .5)/2 + (0 + 1)/2
    assert float(d_loss(real, fake, "hinge")) == pytest.approx(0.75)
    assert float(g_loss(fake, "hinge")) == pytest.approx(1.0)
    sp = torch.nn.functional.softplus
    assert float(d_loss(real, fake, "nonsaturating")) == pytest.approx(
        float(sp(-real).mean() + sp(fake).mean())
    )
    assert float(g_loss(fake, "nonsaturating")) == pytest.approx(float(sp(-fake).mean()))
    # R1 of a linear critic D(x) = <w, x> is ||w||^2 for every sample.
    w = torch.tensor([1.0, -2.0, 3.0])
    x = torch.randn(5, 3, requires_grad=True)
    assert float(r1_penalty(x @ w, x)) == pytest.approx(14.0)


def test_ema_update() -> None:
    a, b = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        a.weight.fill_(1.0)
        b.weight.fill_(3.0)
        b.running_mean.fill_(7.0)
    ema_update(a, b, 0.75)
    assert a.weight.tolist() == [1.5, 1.5]  # .75 * 1 + .25 * 3
    assert a.running_mean.tolist() == [7.0, 7.0]  # buffers are copied


def test_config_presets_and_validation(tmp_path: Path) -> None:
    for name in ("digits-gan.yaml", "mnist-gan.yaml"):
        cfg = load_config(REPO / "configs" / name, GANConfig)
        assert isinstance(cfg, GANConfig) and cfg.encoder_run is None
    assert load_config(REPO / "configs" / "mnist-gan.yaml", GANConfig).arch == "dcgan"
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(GANConfig, {"stepz": 3})
    for bad in ({"steps": 0}, {"loss": "wgan"}, {"ema_decay": 1.0}, {"lr_g": -1.0},
                {"conditioning": "film"}, {"r1_gamma": -1.0}, {"device": "tpu"}):  # fmt: skip
        with pytest.raises(ConfigError):
            from_dict(GANConfig, bad)
    with pytest.raises(ConfigError, match="encoder_run is required"):
        train_gan(GANConfig(), tmp_path / "x")


def test_digits_run_quality(digits_gan_run: Path) -> None:
    """Conditional samples keep the label far above chance; prior samples cover every class."""
    m = json.loads((digits_gan_run / "metrics.json").read_text())
    assert m["classifier_accuracy_real"] > 90
    assert m["chance_consistency"] < 15
    assert m["conditional_consistency"] > 35  # measured ~50-60% (codes' 5-NN accuracy ~80%)
    assert m["class_coverage_unconditional"] == 10
    # Measured 0.11-0.32 over seeds; a collapse onto half the classes would give >= 0.5.
    assert m["class_tv_unconditional"] < 0.45
    # Prior-drawn codes are about as good as codes of real images (measured within 0.03).
    assert m["class_tv_unconditional"] < m["class_tv_conditional"] + 0.1
    # Prior-drawn codes drive G about as well as codes of real images (the paper's claim);
    # measured ratios fu / fc of 0.8-1.25.
    fc, fu = m["fid_dimgen_classifier_conditional"], m["fid_dimgen_classifier_unconditional"]
    assert fu < 1.5 * fc + 5
    # Both far from the real-vs-real floor ... and far below noise (~160 on this extractor).
    assert m["fid_dimgen_classifier_real"] < fc < 60
    assert len(m["history"]) == 8 and all(np.isfinite(h["d_loss"]) for h in m["history"])


def test_run_folder_is_complete_and_self_contained(digits_gan_run: Path, digits_run: Path,
                                                   tmp_path: Path) -> None:  # fmt: skip
    rec = json.loads((digits_gan_run / "run.json").read_text())
    assert rec["kind"] == "gan" and rec["complete"] is True
    assert (
        Path(rec["encoder_run"]).is_absolute() and Path(rec["encoder_run"]) == digits_run.resolve()
    )
    for f in ("config.yaml", "encoder.safetensors", "generator.safetensors", "generator_ema.safetensors",
              "discriminator.safetensors", "checkpoint.safetensors", "classifier.safetensors",
              "metrics.json", "report.md", "samples/step-000400.png", "samples/step-000800.png",
              "samples/conditional.png", "samples/conditional.npz", "samples/unconditional.png"):  # fmt: skip
        assert (digits_gan_run / f).is_file(), f
    assert "fid_dimgen_classifier" in (digits_gan_run / "report.md").read_text()
    tensors, meta = load_weights(digits_gan_run / "checkpoint.safetensors")
    assert meta["kind"] == "gan-checkpoint" and meta["step"] == 800
    prefixes = {k.split(".")[0] for k in tensors}
    assert {"generator", "discriminator", "generator_ema", "opt_g", "opt_d", "rng"} <= prefixes
    assert set(meta["optimizers"]) == {"opt_g", "opt_d"}
    # A copy of the folder samples on its own, with the same numbers.
    copy = tmp_path / "moved"
    shutil.copytree(digits_gan_run, copy)
    a, _ = GAN.from_pretrained(digits_gan_run).sample_unconditional(5, seed=3)
    b, _ = GAN.from_pretrained(copy).sample_unconditional(5, seed=3)
    assert torch.equal(a, b)


def test_sampling_shapes_and_seeds(digits_gan_run: Path) -> None:
    gan = GAN.from_pretrained(digits_gan_run)
    assert gan.code_dim == 2 and gan.shape == (1, 8, 8)
    a, ca = gan.sample_unconditional(16, seed=1)
    b, cb = gan.sample_unconditional(16, seed=1)
    c, cc = gan.sample_unconditional(16, seed=2)
    assert a.shape == (16, 1, 8, 8) and ca.shape == (16, 2)
    assert torch.equal(a, b) and torch.equal(ca, cb)
    assert not torch.equal(a, c) and not torch.equal(ca, cc)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    x = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    imgs, codes = gan.sample_conditional(x, seed=0)
    assert imgs.shape == (6, 1, 8, 8)
    enc_run = json.loads((digits_gan_run / "run.json").read_text())["encoder_run"]
    torch.testing.assert_close(codes, Tokenizer.from_pretrained(enc_run).encode(x))
    assert torch.equal(gan.generate(codes, seed=0), imgs)
    # EMA and raw generators are different networks.
    raw = GAN.from_pretrained(digits_gan_run, ema=False)
    assert not torch.equal(raw.generate(codes, seed=0), imgs)


def test_sample_modes(digits_gan_run: Path, tmp_path: Path) -> None:
    s = sample(digits_gan_run, unconditional=True, n=5, seed=0)
    assert s.mode == "unconditional" and s.images.shape == (5, 1, 8, 8) and s.real is None
    s = sample(digits_gan_run, from_images="digits", n=7, seed=0)
    assert s.mode == "conditional" and s.real.shape == (7, 1, 8, 8) and s.labels.shape == (7,)
    np.savez(tmp_path / "c.npz", codes=np.zeros((9, 2), np.float32))
    s = sample(digits_gan_run, codes=tmp_path / "c.npz", n=4)
    assert s.mode == "codes" and s.images.shape == (4, 1, 8, 8) and s.codes.abs().sum() == 0
    png, npz = write_samples(tmp_path / "pairs.png", s.images, s.codes, real=s.images, nrow=8)
    from PIL import Image

    # 4 pairs -> 8 tiles in one row; tiles of 8 px upscaled x4, 2 px padding.
    assert Image.open(png).size == (8 * 34 + 2, 34 + 2)
    with np.load(npz) as f:
        assert set(f.files) == {"images", "codes", "real"} and f["images"].shape == (4, 1, 8, 8)


def test_bad_input(digits_gan_run: Path, digits_run: Path, tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="'encoder' run folder; expected gan"):
        GAN.from_pretrained(digits_run)
    with pytest.raises(RunFolderError, match="expected encoder"):
        Tokenizer.from_pretrained(digits_gan_run)
    with pytest.raises(RunFolderError, match="expected encoder"):
        train_gan(GANConfig(encoder_run=str(digits_gan_run)), tmp_path / "a")
    gan = GAN.from_pretrained(digits_gan_run)
    with pytest.raises(DataError, match=r"shape \(n, 2\)"):
        gan.generate(torch.zeros(4, 3))
    with pytest.raises(DataError, match="NaN"):
        gan.generate(torch.full((4, 2), float("nan")))
    for n in (0, -3):
        with pytest.raises(DataError, match="n must be >= 1"):
            gan.sample_unconditional(n)
        with pytest.raises(DataError, match="n must be >= 1"):
            sample(gan, unconditional=True, n=n)
    with pytest.raises(ConfigError, match="exactly one"):
        sample(gan, unconditional=True, from_images="digits")
    with pytest.raises(DataError, match="no array named 'codes'"):
        np.savez(tmp_path / "nocodes.npz", z=np.zeros((2, 2)))
        sample(gan, codes=tmp_path / "nocodes.npz")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(RunFolderError, match="not empty"):
        train_gan(GANConfig(encoder_run=str(digits_run)), tmp_path / "full")
    np.savez(tmp_path / "big.npz", x=np.zeros((20, 16, 16), np.float32))
    with pytest.raises(DataError, match="expects"):
        train_gan(
            GANConfig(encoder_run=str(digits_run), data=f"npz:{tmp_path / 'big.npz'}"),
            tmp_path / "b",
        )


def test_flow_prior(digits_gan_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--prior calls exactly load_prior(path), p.sample(n, seed=seed), p.to_source(z)."""
    flows = pytest.importorskip("dimgen.flows")
    calls = {}

    class FakePrior:
        source_prior = "gaussian"

        def sample(self, n: int, seed: int | None = None, temperature: float = 1.0) -> torch.Tensor:
            calls["sample"] = (n, seed)
            return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))

        def to_source(self, z: torch.Tensor) -> torch.Tensor:
            calls["to_source"] = tuple(z.shape)
            return 2 * z

    monkeypatch.setattr(
        flows, "load_prior", lambda path: calls.setdefault("path", path) and FakePrior()
    )
    s = sample(digits_gan_run, unconditional=True, prior="flow-run", n=6, seed=4)
    assert calls == {"path": "flow-run", "sample": (6, 4), "to_source": (6, 2)}
    assert s.images.shape == (6, 1, 8, 8)
    torch.testing.assert_close(
        s.codes, 2 * torch.randn(6, 2, generator=torch.Generator().manual_seed(4))
    )
    FakePrior.source_prior = "uniform"
    with pytest.raises(ConfigError, match="uniform codes"):
        sample(digits_gan_run, unconditional=True, prior="flow-run", n=6, seed=4)


def test_flow_prior_real_run(digits_gan_run: Path, digits_run: Path, tmp_path: Path) -> None:
    """A real `dimgen flow` run (exact map to U[0,1]^2) drives the GAN through --prior."""
    flows = pytest.importorskip("dimgen.flows")
    from click.testing import CliRunner
    from dimgen.cli import cli

    flow = tmp_path / "flow-u"
    res = CliRunner().invoke(cli, ["flow", str(digits_run), "--to", "uniform", "--out", str(flow)])
    assert res.exit_code == 0, res.output
    s = sample(digits_gan_run, unconditional=True, prior=flow, n=50, seed=7)
    p = flows.load_prior(flow)
    torch.testing.assert_close(s.codes, p.to_source(p.sample(50, seed=7)))
    assert s.images.shape == (50, 1, 8, 8)
    # Phi^-1 of U[0,1] draws: Gaussian codes again, in the GAN's code space.
    assert abs(float(s.codes.mean())) < 0.4 and 0.6 < float(s.codes.std()) < 1.4
    out = tmp_path / "flow.png"
    args = ["sample", str(digits_gan_run), "--unconditional", "--prior", str(flow), "-n", "50",
            "--seed", "7", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    with np.load(out.with_suffix(".npz")) as f:
        np.testing.assert_array_equal(f["codes"], s.codes.numpy())


def test_code_model_flow_drives_the_gan(
    digits_gan_run: Path, digits_run: Path, tmp_path: Path
) -> None:
    """`dimgen flow RUN --to-codes` then `sample --unconditional --prior`: the GAN gets T(z), z ~
    N(0, I), with T#N(0, I) fitted to the encoder's training codes (not T^-1 of anything)."""
    flows = pytest.importorskip("dimgen.flows")
    from click.testing import CliRunner
    from dimgen.cli import cli

    flow = tmp_path / "code-model"
    res = CliRunner().invoke(cli, ["flow", str(digits_run), "--to-codes", "--steps", "100",
                                   "--out", str(flow)])  # fmt: skip
    assert res.exit_code == 0 and "code model of" in res.output, res.output
    p = flows.load_prior(flow)
    assert p.code_model
    s = sample(digits_gan_run, unconditional=True, prior=flow, n=50, seed=7)
    torch.testing.assert_close(s.codes, p.sample(50, seed=7, from_model=True).float())
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(7))
    assert not torch.allclose(s.codes, z, atol=1e-3)  # the flow moved the prior's draws
    assert s.images.shape == (50, 1, 8, 8)
    # a code model of another encoder's codes (same d, same prior) is refused in one line
    from dimgen.config import EncoderConfig
    from dimgen.errors import ConfigError
    from dimgen.infomax.trainer import train_encoder

    other = tmp_path / "other-enc"
    train_encoder(EncoderConfig(epochs=2, seed=5), other)
    res = CliRunner().invoke(cli, ["flow", str(other), "--to-codes", "--config",
                                   str(REPO / "configs" / "code-model.yaml"), "--steps", "20",
                                   "--out", str(tmp_path / "other-cm")])  # fmt: skip
    assert res.exit_code == 0, res.output
    arch = flows.load_prior(tmp_path / "other-cm").spec["arch"]  # the code-model preset's size
    assert (arch["kind"], arch["layers"], arch["hidden"]) == ("rqs", 5, 128)
    with pytest.raises(ConfigError, match="fitted to the codes of another encoder"):
        sample(digits_gan_run, unconditional=True, prior=tmp_path / "other-cm", n=4, seed=0)
    # folders written before run.json recorded digests: the encoder's is computed from its file
    import hashlib

    legacy = tmp_path / "legacy-enc"
    shutil.copytree(other, legacy)
    rec = json.loads((legacy / "run.json").read_text())
    del rec["artefacts"]
    (legacy / "run.json").write_text(json.dumps(rec))
    cm = flows.transform_codes(legacy, to_codes=True, out=tmp_path / "legacy-cm",
                               config=flows.FlowConfig(method="gmm", components=4))  # fmt: skip
    digest = hashlib.sha256((other / "encoder.safetensors").read_bytes()).hexdigest()
    assert cm.prior.spec["source_encoder_sha256"] == digest
    with pytest.raises(ConfigError, match="fitted to the codes of another encoder"):
        sample(digits_gan_run, unconditional=True, prior=tmp_path / "legacy-cm", n=4, seed=0)
    # Glow's temperature: the same N(0, I) draws, scaled by T, pushed through the code model
    cold = sample(digits_gan_run, unconditional=True, prior=flow, n=50, seed=7, temperature=0.5)
    torch.testing.assert_close(cold.codes, p.forward(0.5 * z).float())
    assert not torch.allclose(cold.codes, s.codes, atol=1e-3)
    out = tmp_path / "cold.png"
    res = CliRunner().invoke(cli, ["sample", str(digits_gan_run), "--unconditional", "--prior",
                                   str(flow), "--temperature", "0.5", "-n", "50", "--seed", "7",
                                   "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    with np.load(out.with_suffix(".npz")) as f:
        np.testing.assert_array_equal(f["codes"], cold.codes.numpy())
    # with G's noise truncated as well (the full-budget MNIST recipe): the same codes, other
    # images, and the CLI's are the library's
    kw = {"unconditional": True, "prior": flow, "n": 50, "seed": 7, "temperature": 0.5}
    both = sample(digits_gan_run, truncation=1.0, **kw)
    torch.testing.assert_close(both.codes, cold.codes)
    assert not torch.allclose(both.images, cold.images, atol=1e-3)
    res = CliRunner().invoke(cli, ["sample", str(digits_gan_run), "--unconditional", "--prior",
                                   str(flow), "--temperature", "0.5", "--truncation", "1", "-n",
                                   "50", "--seed", "7", "--out", str(tmp_path / "both.png")])  # fmt: skip
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "both.npz") as f:
        np.testing.assert_array_equal(f["images"], both.images.numpy())


def test_mixture_code_model_drives_the_gan(
    digits_gan_run: Path, digits_run: Path, tmp_path: Path
) -> None:
    """`dimgen flow RUN --to-codes --method gmm` then `sample --unconditional --prior`: the GAN
    gets the mixture's draws, the CLI's codes and images are the library's, a temperature
    shrinks the spread around the components, and a gmm map to another prior is refused."""
    flows = pytest.importorskip("dimgen.flows")
    from click.testing import CliRunner
    from dimgen.cli import cli

    mix = tmp_path / "gmm"
    res = CliRunner().invoke(cli, ["flow", str(digits_run), "--to-codes", "--config",
                                   str(REPO / "configs" / "code-model-gmm.yaml"), "--components",
                                   "8", "--out", str(mix)])  # fmt: skip
    assert res.exit_code == 0 and "gmm code model of" in res.output, res.output
    p = flows.load_prior(mix)  # the preset's method, the flag's size
    assert p.code_model and p.spec["method"] == "gmm" and p.mixture.components == 8
    s = sample(digits_gan_run, unconditional=True, prior=mix, n=50, seed=7)
    torch.testing.assert_close(s.codes, p.sample(50, seed=7).float())
    out = tmp_path / "mix.png"
    res = CliRunner().invoke(cli, ["sample", str(digits_gan_run), "--unconditional", "--prior",
                                   str(mix), "--temperature", "0.5", "--truncation", "0.8", "-n",
                                   "50", "--seed", "7", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    cold = sample(digits_gan_run, unconditional=True, prior=mix, n=50, seed=7, temperature=0.5,
                  truncation=0.8)  # fmt: skip
    with np.load(out.with_suffix(".npz")) as f:
        np.testing.assert_array_equal(f["codes"], cold.codes.numpy())
        np.testing.assert_array_equal(f["images"], cold.images.numpy())
    assert not torch.allclose(cold.codes, s.codes, atol=1e-3)
    res = CliRunner().invoke(cli, ["flow", str(digits_run), "--to", "laplace", "--method", "gmm",
                                   "--out", str(tmp_path / "no")])  # fmt: skip
    assert res.exit_code == 2 and "use it with --to-codes" in res.output
    assert not (tmp_path / "no").exists()


def test_temperature_scales_the_prior_draws(digits_gan_run: Path, digits_run: Path,
                                            digits_uniform_run: Path, tmp_path: Path) -> None:  # fmt: skip
    """T * N(0, I) codes: the same draws as T = 1, scaled; the GAN's noise unchanged; refused
    where there is no Gaussian draw to scale (uniform codes, a new prior's own law)."""
    gan = GAN.from_pretrained(digits_gan_run)
    warm_images, warm = gan.sample_unconditional(64, seed=3)
    cold_images, cold = gan.sample_unconditional(64, seed=3, temperature=0.25)
    torch.testing.assert_close(cold, 0.25 * warm)
    torch.testing.assert_close(gan.generate(cold, seed=child_seeds(3, 2)[1]), cold_images)
    assert not torch.allclose(cold_images, warm_images)
    s = sample(gan, unconditional=True, n=64, seed=3, temperature=0.25)
    torch.testing.assert_close(s.codes, cold)
    for bad in (0.0, -1.0, float("nan"), float("inf"), 10.5, 1e308, 10**400, True, "0.5"):
        with pytest.raises(ConfigError, match=r"temperature must be a number in \(0, 10\]"):
            gan.sample_unconditional(4, seed=0, temperature=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match=r"temperature must be a number in \(0, 10\]"):
            gan.tokenizer.sample_prior(4, seed=0, temperature=bad)  # type: ignore[arg-type]
    torch.testing.assert_close(gan.sample_unconditional(64, seed=3, temperature=None)[1], warm)
    with pytest.raises(ConfigError, match="only applies to unconditional"):
        sample(gan, from_images="digits", n=4, temperature=0.5)
    with pytest.raises(ConfigError, match="scales Gaussian codes; this encoder's prior is uniform"):
        Tokenizer.from_pretrained(digits_uniform_run).sample_prior(4, seed=0, temperature=0.5)
    flows = pytest.importorskip("dimgen.flows")
    from click.testing import CliRunner
    from dimgen.cli import cli

    flow = tmp_path / "flow-u"
    res = CliRunner().invoke(cli, ["flow", str(digits_run), "--to", "uniform", "--out", str(flow)])
    assert res.exit_code == 0, res.output
    with pytest.raises(ConfigError, match=r"its draws come from its target law \(uniform\)"):
        flows.load_prior(flow).sample(4, seed=0, temperature=0.5)
    with pytest.raises(ConfigError, match=r"is a new prior .* applies to the encoder's own prior"):
        sample(gan, unconditional=True, prior=flow, n=4, seed=0, temperature=0.5)
    with pytest.raises(
        ConfigError, match=r"is an encoder run, not a flow run: .* leave --prior out"
    ):
        sample(gan, unconditional=True, prior=digits_run, n=4, seed=0, temperature=0.5)


def test_evaluate_gan_without_labels_or_classifier(digits_gan_run: Path) -> None:
    from dimgen.data import Dataset, load_data

    ds = load_data("digits")
    gan = GAN.from_pretrained(digits_gan_run)
    unlabelled = Dataset("d", ds.x_train, None, ds.x_test, None)
    m = evaluate_gan(
        gan, unlabelled, classifier_path=digits_gan_run / "classifier.safetensors", n=100
    )
    assert m["n_eval"] == 100 and "conditional_consistency" not in m
    assert m["fid_dimgen_classifier_conditional"] > 0
    m = evaluate_gan(gan, ds, classifier_path=None, n=50)
    assert set(m) == {"n_eval", "eval_seed"}


def test_train_in_memory_with_r1_and_nonsaturating(digits_run: Path) -> None:
    cfg = GANConfig(encoder_run=str(digits_run), steps=6, log_every=3, r1_gamma=1.0, ema_decay=0.0,
                    loss="nonsaturating", conditioning="projection", batch_size=32, device="cpu")  # fmt: skip
    seen: list = []
    run = train_gan(cfg, on_scalars=lambda d, s: seen.append({"step": d, **s}))  # no folder
    assert run.path is None and [h["step"] for h in run.history] == [3, 6]
    assert seen == run.history  # the harness's scalar windows are the history
    assert all(np.isfinite([h["d_loss"], h["g_loss"]]).all() for h in run.history)
    assert run.config.encoder_run == str(digits_run.resolve())
    assert run.gan.generate(torch.zeros(3, 2), seed=0).shape == (3, 1, 8, 8)


def test_diverging_losses_stop_training(digits_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dimgen.gan.trainer as gan_mod

    real_loss = gan_mod.d_loss
    monkeypatch.setattr(gan_mod, "d_loss", lambda r, f, k: real_loss(r, f, k) * float("nan"))
    with pytest.raises(TrainingError, match="diverged"):
        train_gan(
            GANConfig(
                encoder_run=str(digits_run), steps=4, log_every=2, batch_size=16, device="cpu"
            )
        )


def test_top_level_exports_stay_lazy() -> None:
    import subprocess
    import sys

    code = ("import sys, dimgen; assert 'dimgen.gan' not in sys.modules and 'torch_fidelity' not in "
            "sys.modules; assert dimgen.GANConfig().steps == 1000 and dimgen.GAN and dimgen.train_gan; "
            "assert 'torch_fidelity' not in sys.modules")  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-1000:]


def test_the_old_gan_nets_name_warns_and_still_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """``dimgen.gan_nets`` was documented; it now warns once and names the same objects."""
    import importlib
    import sys

    import dimgen.gan.nets as nets

    monkeypatch.delitem(sys.modules, "dimgen.gan_nets", raising=False)
    with pytest.warns(DeprecationWarning, match=r"dimgen\.gan\.nets"):
        old = importlib.import_module("dimgen.gan_nets")
    assert old.build_generator is nets.build_generator and old.__all__ == nets.__all__


def test_truncated_noise_is_the_truncated_normal() -> None:
    """BigGAN's truncation trick: every coordinate in [-t, t], distributed as N(0, 1)
    conditioned on |z| <= t (KS test against scipy's truncnorm); off, plain torch.randn."""
    from scipy import stats

    from dimgen.gan.model import noise

    z = noise(4000, 5, torch.Generator().manual_seed(0), 0.7)
    assert z.shape == (4000, 5) and float(z.abs().max()) <= 0.7
    assert stats.kstest(z.flatten().numpy(), stats.truncnorm(-0.7, 0.7).cdf).pvalue > 0.01
    # the plain normal would fail that test: 1 - P(|z| <= 0.7) = 48% of it lies outside
    wide = noise(4000, 5, torch.Generator().manual_seed(0))
    assert stats.kstest(wide.flatten().numpy(), stats.truncnorm(-0.7, 0.7).cdf).pvalue < 1e-6
    assert torch.equal(wide, torch.randn(4000, 5, generator=torch.Generator().manual_seed(0)))


def test_truncation_trades_diversity_for_fidelity_per_code(digits_gan_run: Path) -> None:
    """With one code and many noise draws, truncation shrinks the spread of G's outputs toward
    the image at z = 0; off, generate() is unchanged (bit-exact)."""
    from dimgen.gan.evaluation import set_truncation

    gan = GAN.from_pretrained(digits_gan_run)
    codes = torch.zeros(64, 2)
    base = gan.generate(codes, seed=5)
    spread = {}
    for t in (None, 1.0, 0.05):
        gan.truncation = t
        spread[t] = float(gan.generate(codes, seed=5).std(0).mean())
    gan.truncation = None
    assert torch.equal(gan.generate(codes, seed=5), base)
    assert spread[0.05] < 0.1 * spread[None] and spread[1.0] < spread[None]
    # sample() on a GAN object truncates that call only
    s = sample(gan, codes=codes.numpy(), seed=5, truncation=0.05)
    assert float(s.images.std(0).mean()) == pytest.approx(spread[0.05])
    assert gan.truncation is None
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="truncation must be a finite number > 0"):
            set_truncation(gan, bad)

    from dimgen.gan import evaluate_run

    m = evaluate_run(digits_gan_run, n=100, truncation=0.05)
    plain = evaluate_run(digits_gan_run, n=100)
    assert m["truncation"] == 0.05 and "truncation" not in plain
    # near-constant noise: fewer distinct prior samples than untruncated, so a higher FID
    key = "fid_dimgen_classifier_unconditional"
    assert m[key] > plain[key]

    class Diffusion:  # no noise to truncate
        guidance_scale = 1.0

    with pytest.raises(ConfigError, match="only applies to GAN runs"):
        set_truncation(Diffusion(), 0.5)  # type: ignore[arg-type]
