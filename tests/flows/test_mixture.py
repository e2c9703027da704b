"""The Gaussian-mixture code model: density, draws, temperature, run folder, hostile files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats as st
import torch
from click.testing import CliRunner

from dimgen.errors import ConfigError, DataError, RunFolderError
from dimgen.flows import FlowConfig, load_prior, transform_codes
from dimgen.flows.mixture import GaussianMixture, MixtureCodeModel, fit_mixture, load_mixture
from dimgen.io import load_weights, save_weights


def _known(dim: int = 2) -> GaussianMixture:
    """Two Gaussians with given weights, means and (correlated) covariances."""
    m = GaussianMixture(2, dim)
    m.weights.copy_(torch.tensor([0.3, 0.7], dtype=torch.float64))
    m.means.copy_(torch.tensor([[-2.0] + [0.0] * (dim - 1), [5.0] + [1.0] * (dim - 1)]))
    a = torch.eye(dim, dtype=torch.float64) * 0.5
    a[-1, 0] = 0.3
    m.scale_tril.copy_(torch.stack([a, 0.8 * torch.eye(dim, dtype=torch.float64)]))
    return m


def _two_clusters(n: int = 3000, seed: int = 3, sd: float = 0.35) -> np.ndarray:
    """Codes in two clusters at x0 = +-1.2 (sd 0.35: 1.1% of the mass at |x0| < 0.4)."""
    rng = np.random.default_rng(seed)
    codes = rng.normal(size=(n, 2)) * [sd, 1.0]
    codes[:, 0] += rng.choice([-1.2, 1.2], n)
    return codes


def test_log_density_is_the_weighted_sum_of_gaussian_densities() -> None:
    m = _known(3)
    x = np.random.default_rng(0).normal(size=(50, 3)) * 2
    L = m.scale_tril.numpy()
    want = np.log(sum(
        w * st.multivariate_normal(mu, c @ c.T).pdf(x)
        for w, mu, c in zip(m.weights.numpy(), m.means.numpy(), L, strict=True)
    ))  # fmt: skip
    np.testing.assert_allclose(m(torch.from_numpy(x)).numpy(), want, rtol=1e-10)


def test_draws_follow_the_components_and_temperature_scales_each_spread() -> None:
    m = _known(2)
    n = 40_000
    x = m.sample(n, 0).numpy()
    left = x[:, 0] < 0.5  # the components do not overlap along x0 (>= 5 sd from 0.5)
    assert left.mean() == pytest.approx(0.3, abs=0.01)
    np.testing.assert_allclose(x[left].mean(0), [-2.0, 0.0], atol=0.02)
    c0 = m.scale_tril[0].numpy()
    np.testing.assert_allclose(np.cov(x[left].T), c0 @ c0.T, atol=0.01)
    cold = m.sample(n, 0, temperature=0.5).numpy()
    # same component draws and the same normals: each point moves toward its own mean by 1/2
    k_left = cold[:, 0] < 0.5
    np.testing.assert_array_equal(k_left, left)
    np.testing.assert_allclose(cold[left] - [-2.0, 0.0], 0.5 * (x[left] - [-2.0, 0.0]), atol=1e-12)
    assert torch.equal(
        m.sample(10, 5),
        m.sample(10, 5),
    )


def test_fit_recovers_a_known_mixture_and_refuses_too_few_points() -> None:
    truth = _known(2)
    x = truth.sample(20_000, 1).numpy()
    fitted, info = fit_mixture(x, 2, seed=0)
    order = torch.argsort(fitted.means[:, 0])
    np.testing.assert_allclose(fitted.weights[order].numpy(), [0.3, 0.7], atol=0.01)
    np.testing.assert_allclose(fitted.means[order].numpy(), truth.means.numpy(), atol=0.03)
    assert info["converged"] and info["n_iter"] >= 1
    # its training NLL is the true model's to within sampling error
    true_nll = -float(truth(torch.from_numpy(x)).mean())
    assert info["train_nll_nats"] == pytest.approx(true_nll, abs=0.01)
    assert info["train_nll_nats"] <= true_nll + 1e-9  # maximum likelihood: no worse in-sample
    with pytest.raises(DataError, match="needs at least 5 distinct codes, got 4"):
        fit_mixture(x[:4], 5)
    with pytest.raises(DataError, match="needs at least 3 distinct codes, got 2"):
        fit_mixture(np.repeat(x[:2], 50, axis=0), 3)  # 100 points, 2 distinct
    # 2 K (d + 1) codes: fewer and EM memorises single codes
    with pytest.raises(
        DataError, match=r"needs at least 120 codes to fit \(2 K \(d \+ 1\)\), got 100"
    ):
        fit_mixture(x[:100], 20)
    fit_mixture(x[:120], 20)


def test_a_mixture_code_model_leaves_no_bridge_where_a_flow_does(
    make_encoder_run, tmp_path
) -> None:
    """The reason for the mixture: between two clusters of codes (0.07% of their law at |x0| <
    0.4) a flow, a continuous invertible map of N(0, I), keeps a bridge of mass; a mixture does not."""
    codes = _two_clusters(sd=0.25)
    src = make_encoder_run(codes, "gaussian", n_test=1000)
    flow = transform_codes(src, to_codes=True, config=FlowConfig(layers=2, hidden=32, steps=300))
    mix = transform_codes(src, to_codes=True, config=FlowConfig(method="gmm", components=2))
    near0 = {name: float(np.mean(np.abs(r.prior.sample(20_000, 0).numpy()[:, 0]) < 0.4))
             for name, r in (("flow", flow), ("gmm", mix))}  # fmt: skip
    assert near0["gmm"] < 0.002 and near0["flow"] > max(0.004, 2.5 * near0["gmm"]), (
        near0
    )  # 1e-3, 7e-3
    assert mix.metrics["code_model_gain_nats"] > flow.metrics["code_model_gain_nats"]


def test_gmm_run_folder_round_trips_and_samples_like_a_code_model(
    make_encoder_run, tmp_path
) -> None:
    from dimgen.flows.targets import source_law
    from dimgen.gan.sampling import prior_codes_from_flow

    codes = _two_clusters()
    src = make_encoder_run(codes, "gaussian", n_test=1000)
    run = transform_codes(src, to_codes=True, config=FlowConfig(method="gmm", components=4, seed=2),
                          out=tmp_path / "gmm")  # fmt: skip
    m = run.metrics
    assert m["method"] == "gmm" and m["components"] == 4 and m["code_model"]
    assert m["n_target_train"] + m["n_target_test"] == 2000  # the training split, part held back
    assert sorted(p.name for p in (tmp_path / "gmm").iterdir()) == [
        "codes.npz", "codes.png", "metrics.json", "mixture.safetensors", "report.md", "run.json"]  # fmt: skip
    loaded = load_prior(tmp_path / "gmm")
    assert isinstance(loaded, MixtureCodeModel) and loaded.code_model and loaded.dim == 2
    assert torch.equal(loaded.sample(100, seed=4), run.prior.sample(100, seed=4))
    test = codes[2000:]
    gain = loaded.log_prob(test).numpy() - source_law("gaussian").logpdf(test).sum(1)
    assert m["code_model_gain_nats"] == pytest.approx(float(gain.mean()), rel=1e-6)  # float32 codes
    # metrics: a fit far closer to the codes than the prior is (kNN estimates on 20,000 draws),
    # and the two kNN rows differ by about the gain: KL(codes || prior) - KL(codes || q)
    assert m["n_reference"] == 20_000
    assert m["kl_estimate_knn_model_nats"] < 0.1 < m["kl_estimate_knn_source_nats"]
    diff = m["kl_estimate_knn_source_nats"] - m["kl_estimate_knn_model_nats"]
    assert diff == pytest.approx(m["code_model_gain_nats"], abs=0.1), (
        diff,
        m["code_model_gain_nats"],
    )
    # the first m of n draws are the m draws (two generators), as for a flow's
    assert torch.equal(loaded.sample(8, seed=0), loaded.sample(100, seed=0)[:8])
    assert torch.equal(
        loaded.sample(3, seed=0, temperature=0.5), loaded.sample(50, seed=0, temperature=0.5)[:3]
    )
    # the GAN's --prior path: the mixture's draws, scaled spreads at a temperature
    drawn = prior_codes_from_flow(tmp_path / "gmm", 500, 7, 2, "gaussian", temperature=0.5)
    assert torch.equal(drawn, loaded.sample(500, 7, temperature=0.5).float())
    with pytest.raises(ConfigError, match="temperature"):
        loaded.sample(5, 0, temperature=0.0)
    with pytest.raises(DataError, match="n must be >= 1"):
        loaded.sample(0)
    assert "Gaussian mixture" in (tmp_path / "gmm" / "report.md").read_text()


def test_a_uniform_code_model_refuses_a_temperature(make_encoder_run) -> None:
    """As a flow code model of uniform codes does: ``dimgen sample`` clamps such draws to
    [0, 1]^d, so scaling them would pile codes on the boundary."""
    codes = np.random.default_rng(0).beta(2, 5, size=(1000, 2))
    src = make_encoder_run(codes, "uniform", n_test=200)
    run = transform_codes(src, to_codes=True, config=FlowConfig(method="gmm", components=3))
    assert run.prior.sample(5, 0).shape == (5, 2)
    with pytest.raises(
        ConfigError,
        match="a temperature applies to Gaussian codes; this code model is of uniform codes",
    ):
        run.prior.sample(5, 0, temperature=0.5)


def test_gmm_bad_input_is_refused_before_anything_is_written(make_encoder_run, tmp_path) -> None:
    src = make_encoder_run(_two_clusters(200), "gaussian", n_test=50)
    with pytest.raises(ConfigError, match="to_codes must be True or False, got 'no'"):
        transform_codes(src, to_codes="no", out=tmp_path / "a")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="method gmm is a code model"):
        transform_codes(src, "laplace", config=FlowConfig(method="gmm"), out=tmp_path / "a")
    with pytest.raises(DataError, match="500-component mixture needs at least 500 distinct codes"):
        transform_codes(src, to_codes=True, config=FlowConfig(method="gmm", components=500),
                        out=tmp_path / "b")  # fmt: skip
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "run.json").exists()
    from dimgen.cli import cli

    res = CliRunner().invoke(cli, ["flow", str(src), "--to", "laplace", "--method", "gmm",
                                   "--out", str(tmp_path / "c")])  # fmt: skip
    assert res.exit_code == 2 and "use it with --to-codes" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("tamper", "match"),
    [
        (lambda t, meta: t["weights"].neg_(), "weights are not probabilities"),
        (lambda t, meta: t["weights"].mul_(2), "weights are not probabilities"),
        (lambda t, meta: t["scale_tril"][0].fill_(1.0), "not lower-triangular"),
        (lambda t, meta: t["scale_tril"][1, 0, 0].fill_(-1.0), "diagonal entry <= 0"),
        (lambda t, meta: t["means"].fill_(float("nan")), "non-finite|NaN"),
        (lambda t, meta: meta.update(components=10**9), "components / dim must be integers"),
        (lambda t, meta: meta.update(components=True), "components / dim must be integers"),
        (lambda t, meta: t["means"].fill_(1e38), r"a mean or spread of 1e\+38, beyond 1e\+06"),
        (lambda t, meta: t["scale_tril"].mul_(1e9), r"beyond 1e\+06"),
        (lambda t, meta: meta.update(kind="flow"), "is not a dimgen Gaussian mixture"),
    ],
)
def test_a_tampered_mixture_file_is_refused_in_one_line(
    make_encoder_run, tmp_path, tamper, match
) -> None:
    src = make_encoder_run(_two_clusters(400), "gaussian", n_test=100)
    out = tmp_path / "gmm"
    transform_codes(src, to_codes=True, config=FlowConfig(method="gmm", components=2), out=out)
    tensors, meta = load_weights(out / "mixture.safetensors")
    tensors = {k: v.clone() for k, v in tensors.items()}
    tamper(tensors, meta)
    save_weights(out / "mixture.safetensors", tensors, meta)
    with pytest.raises(RunFolderError, match="does not match the digest"):
        load_prior(out)  # run.json's digests catch any change first
    rec = json.loads((out / "run.json").read_text())
    del rec["artefacts"]  # without digests the loader itself must refuse the file
    (out / "run.json").write_text(json.dumps(rec))
    with pytest.raises(RunFolderError, match=match):
        load_prior(out)
    with pytest.raises(RunFolderError, match=match):
        load_mixture(out / "mixture.safetensors")


@pytest.mark.parametrize("method", ["gmm", "maf"])
def test_an_interrupted_code_model_run_leaves_no_half_written_folder(
    make_encoder_run, tmp_path, monkeypatch, method: str
) -> None:
    """A flow run folder is written whole (``dimgen.io.fill_folder``): stopped while writing
    (Ctrl-C, a full disk) it leaves ``--out`` absent, the same command then works, and a
    temporary sibling left by a writer killed outright is removed by the next one."""
    import errno
    import os

    from dimgen.cli import cli

    import dimgen.plots

    src = make_encoder_run(_two_clusters(600), "gaussian", n_test=100)
    cfg = FlowConfig(method=method, components=3, steps=20, hidden=8, layers=1)
    out = tmp_path / "runs" / "cm"
    real = dimgen.plots.plot_transformed

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dimgen.plots, "plot_transformed", stop)
    with pytest.raises(KeyboardInterrupt):
        transform_codes(src, to_codes=True, config=cfg, out=out, progress=False)
    assert list((tmp_path / "runs").iterdir()) == []  # no folder, no temporary folder

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(dimgen.plots, "plot_transformed", full_disk)
    fit = ["--components", "3"] if method == "gmm" else ["--steps", "20", "--hidden", "8"]
    args = ["flow", str(src), "--to-codes", "--method", method, *fit, "--out", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    line = res.output.strip()
    assert "\n" not in line and "No space left on device" in line and "nothing was left" in line
    assert list((tmp_path / "runs").iterdir()) == []

    killed = out / ".partial-abc_12.tmp"  # what a writer killed outright (SIGKILL) leaves
    killed.mkdir(parents=True)
    (killed / "codes.npz").write_bytes(b"half")
    monkeypatch.setattr(dimgen.plots, "plot_transformed", real)
    transform_codes(src, to_codes=True, config=cfg, out=out, progress=False)
    assert not killed.exists() and (out / "run.json").is_file()
    assert json.loads((out / "run.json").read_text())["complete"] is True
    assert load_prior(out).sample(4, seed=0).shape == (4, 2)


def test_a_flow_run_touches_nothing_of_the_user_in_out(make_encoder_run, tmp_path) -> None:
    """Only what dimgen wrote is replaced: a folder holding a user's own ``config.yaml`` or a
    ``backup.tmp`` folder is refused, not emptied; an existing private ``--out`` keeps its mode;
    a long ``--out`` name works (no longer temporary sibling name)."""
    from dimgen.cli import cli

    src = make_encoder_run(_two_clusters(400), "gaussian", n_test=100)
    for name, files in (("mine", {"config.yaml": "lr: 1\n", "data/x.txt": "important"}),
                        ("backup", {"backup.tmp/thesis.tex": "chapter 1"})):  # fmt: skip
        out = tmp_path / name
        for rel, text in files.items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_text(text)
        res = CliRunner().invoke(cli, ["flow", str(src), "--to", "uniform", "--out", str(out)])
        assert res.exit_code == 2 and "not a dimgen run" in res.output, res.output
        with pytest.raises(RunFolderError, match="not a dimgen run"):
            transform_codes(src, "uniform", out=out)
        assert all((out / rel).read_text() == text for rel, text in files.items())
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    transform_codes(src, "uniform", out=private)
    assert (private / "run.json").is_file() and (private.stat().st_mode & 0o777) == 0o700
    assert not [p for p in private.iterdir() if p.name.startswith(".")]
    stopped = tmp_path / "stopped"  # a trainer stopped at once, and a file of the user's
    stopped.mkdir()
    from dimgen.config import EncoderConfig, save_config

    save_config(EncoderConfig(), stopped / "config.yaml")
    (stopped / "report.md").write_text("my notes")
    with pytest.raises(RunFolderError, match=r"already holds report\.md, not written by this"):
        transform_codes(src, "uniform", out=stopped)
    assert (stopped / "report.md").read_text() == "my notes"
    assert sorted(p.name for p in stopped.iterdir()) == ["config.yaml", "report.md"]
    long = tmp_path / ("L" * 240)
    transform_codes(src, "uniform", out=long)
    assert load_prior(long).spec["method"] == "exact"
