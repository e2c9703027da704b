"""Post-hoc priors: exact maps, flows, KL estimators, Prior/load_prior, flow run folders."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import scipy.stats as st
import torch

from dimgen.errors import ConfigError, DataError, RunFolderError
from dimgen.flows import FlowConfig, load_prior, transform_codes
from dimgen.flows.backend import BACKENDS, FlowBackend, build_backend, fit_flow
from dimgen.flows.kl import knn_entropy, knn_kl_divergence
from dimgen.flows.targets import MixtureTarget, load_target_samples, make_target, parse_spec
from dimgen.flows.transforms import UNIFORM_FLOOR, prior_map
from dimgen.io import load_weights, save_weights

LAWS = ["uniform", "gaussian", "laplace", "logistic", "cauchy", "exponential",
        "laplace(loc=1,scale=2)", "scipy:gamma(a=2)", "scipy:beta(a=2,b=3)"]  # fmt: skip
FAST = FlowConfig(layers=2, hidden=16, steps=60, n_train=2000, n_test=1000)


# -- target specs -------------------------------------------------------------------------------


def test_parse_spec_reads_names_counts_and_numbers() -> None:
    assert parse_spec("mixture:8") == ("mixture", 8, {})
    assert parse_spec("laplace(scale=2, loc=-1.5e0)") == (
        "laplace",
        None,
        {"scale": 2.0, "loc": -1.5},
    )
    assert parse_spec("scipy:gamma(a=2)") == ("scipy:gamma", None, {"a": 2.0})


@pytest.mark.parametrize(
    "spec",
    ["laplace(scale=__import__('os'))", "laplace(scale=2", "mixture:8:3", "laplace(scale)",
     "uniform(loc=nan)", "laplace(scale=1,scale=2)", "", "1laplace"],
)  # fmt: skip
def test_parse_spec_is_strict(spec: str) -> None:
    with pytest.raises(ConfigError):
        make_target(spec, 2)


@pytest.mark.parametrize(
    ("spec", "words"),
    [("weibull", "unknown target law 'weibull'"), ("scipy:binom(n=3,p=0.5)", "no continuous"),
     ("laplace(scale=-1)", "invalid parameter values"), ("laplace(shape=2)", "invalid parameters"),
     ("laplace:3", "applies only to mixture"), ("mixture:4(width=2)", "unknown parameter")],
)  # fmt: skip
def test_bad_targets_name_the_problem(spec: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        make_target(spec, 2)


def test_mixture_is_deterministic_normalised_and_its_entropy_matches_samples() -> None:
    t2 = make_target("mixture:8", 2)
    assert isinstance(t2, MixtureTarget)
    np.testing.assert_allclose(np.linalg.norm(t2.means, axis=1), 3.0)
    np.testing.assert_allclose(t2.means[2], [0.0, 3.0], atol=1e-12)  # on a circle, 45 deg apart
    t5 = make_target("mixture:4(radius=2,seed=3)", 5)
    np.testing.assert_array_equal(t5.means, make_target("mixture:4(seed=3,radius=2)", 5).means)
    np.testing.assert_allclose(np.linalg.norm(t5.means, axis=1), 2.0)
    assert t5.spec == "mixture:4(radius=2,seed=3)"
    t1 = make_target("mixture:3(radius=2)", 1)
    grid = np.linspace(-8, 8, 20001)[:, None]
    mass = np.trapezoid(np.exp(t1.log_prob(grid)), grid[:, 0])
    assert abs(mass - 1.0) < 1e-6
    ent = t2.entropy()
    held = -t2.log_prob(t2.sample(20_000, seed=99)).mean()
    assert abs(held - ent.nats) < 4 * math.hypot(ent.stderr, 0.01)
    assert 0 < ent.stderr < 0.01


def test_target_samples_file_checks(tmp_path) -> None:
    good = tmp_path / "t.npz"
    np.savez(good, x=np.random.default_rng(0).normal(size=(50, 2)))
    assert load_target_samples(good, 2).samples.shape == (50, 2)
    with pytest.raises(DataError, match="dimension 2, but the codes have dimension 3"):
        load_target_samples(good, 3)
    bad = tmp_path / "b.npz"
    np.savez(bad, y=np.zeros((50, 2)))
    with pytest.raises(DataError, match="no array 'x' or 'samples'"):
        load_target_samples(bad, 2)
    nan = tmp_path / "n.npz"
    np.savez(nan, samples=np.full((50, 2), np.nan))
    with pytest.raises(DataError, match="NaN"):
        load_target_samples(nan, 2)
    with pytest.raises(DataError, match="not found"):
        load_target_samples(tmp_path / "missing.npz", 2)


# -- exact elementwise maps ---------------------------------------------------------------------


@pytest.mark.parametrize("law", LAWS)
def test_exact_round_trip_from_gaussian_codes(law: str) -> None:
    t = prior_map("gaussian", make_target(law, 2).law, 2)
    x = torch.cat([torch.linspace(-6, 6, 2001, dtype=torch.float64).reshape(-1, 1).repeat(1, 2),
                   torch.randn(5000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)])  # fmt: skip
    y, ld = t(x)
    xr, ld_inv = t.inverse(y)
    assert torch.isfinite(y).all()
    assert (xr - x).abs().max() < 1e-5
    assert (ld + ld_inv).abs().max() < 1e-6
    inner = x.abs().max(1).values <= 5  # away from the float64 limit of uniform-like targets
    assert (xr - x)[inner].abs().max() < 1e-10


@pytest.mark.parametrize("law", LAWS)
def test_exact_round_trip_from_uniform_codes_including_the_boundary(law: str) -> None:
    t = prior_map("uniform", make_target(law, 2).law, 2)
    u = torch.rand(5000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u[:4] = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1e-12, 1 - 1e-9], [0.5, 0.5]])
    y, _ = t(u)
    assert torch.isfinite(y).all()
    ur = t.inverse(y)[0]
    assert (ur - u).abs().max() < 1e-5
    assert (ur - u)[4:].abs().max() < 1e-10
    assert t.clamped(u)[:3].all() and not t.clamped(u)[3:].any()  # tail masses below 2^-24
    assert UNIFORM_FLOOR < 1e-5


@pytest.mark.parametrize("law", LAWS)
def test_transformed_true_gaussian_samples_pass_ks_against_the_target(law: str) -> None:
    target = make_target(law, 2)
    x = torch.randn(4000, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = prior_map("gaussian", target.law, 2)(x)[0].numpy()
    for j in range(2):
        assert st.kstest(y[:, j], target.law.dist.cdf).pvalue > 0.01
    if law != "gaussian":  # negative control: the untransformed codes are rejected
        assert st.kstest(x[:, 0].numpy(), target.law.dist.cdf).pvalue < 1e-6


def test_uniform_codes_map_to_gaussian_and_pass_ks() -> None:
    u = torch.rand(4000, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    z = prior_map("uniform", make_target("gaussian", 3).law, 3)(u)[0].numpy()
    assert min(st.kstest(z[:, j], "norm").pvalue for j in range(3)) > 0.01


def test_exact_log_det_matches_finite_differences() -> None:
    t = prior_map("gaussian", make_target("scipy:gamma(a=2)", 2).law, 2)
    x = torch.tensor([[-1.3, 0.2], [2.1, -0.4], [0.0, 1.0]], dtype=torch.float64)
    h = 1e-6
    ld = t(x)[1]
    deriv = (t(x + h)[0] - t(x - h)[0]) / (2 * h)  # elementwise: the Jacobian is diagonal
    np.testing.assert_allclose(ld.numpy(), deriv.log().sum(1).numpy(), rtol=0, atol=1e-6)


def test_exact_map_rejects_codes_outside_the_support() -> None:
    to_g = prior_map("uniform", make_target("gaussian", 2).law, 2)
    with pytest.raises(DataError, match=r"outside the support \[0, 1\]"):
        to_g(torch.tensor([[0.5, 1.2]]))
    with pytest.raises(DataError, match="NaN"):
        to_g(torch.tensor([[0.5, float("nan")]]))
    with pytest.raises(DataError, match=r"shape \(n, 2\)"):
        to_g(torch.zeros(4, 3))
    to_exp = prior_map("gaussian", make_target("exponential", 2).law, 2)
    with pytest.raises(DataError, match="target-space codes"):
        to_exp.inverse(torch.tensor([[1.0, -0.5]]))


# -- kNN estimators -----------------------------------------------------------------------------


def test_knn_kl_matches_closed_form_gaussians() -> None:
    rng = np.random.default_rng(0)
    p = rng.normal(size=(2000, 2)) + np.array([1.0, 0.0])
    q = rng.normal(size=(6000, 2))
    assert abs(knn_kl_divergence(p, q) - 0.5) < 0.1  # KL = |mu|^2 / 2
    assert abs(knn_kl_divergence(rng.normal(size=(2000, 2)), q)) < 0.06
    narrow = rng.normal(size=(2000, 1)) * 0.5  # KL(N(0, s^2) || N(0, 1)) = (s^2 - 1 - log s^2) / 2
    assert abs(knn_kl_divergence(narrow, rng.normal(size=(6000, 1))) - 0.3181) < 0.06
    with pytest.raises(DataError, match="dimension"):
        knn_kl_divergence(p, q[:, :1])


@pytest.mark.parametrize("k", [1, 5])
def test_knn_kl_skips_points_the_two_samples_share(k: int) -> None:
    """Shared points used to give log 0: about -1400 nats for a sample against itself (k = 1)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1000, 2))
    assert abs(knn_kl_divergence(x, x, k=k) - np.log(1000 / 999)) < 1e-12  # rho == nu exactly
    half = np.concatenate([x[:500], rng.normal(size=(1500, 2))])  # same law, 500 shared points
    assert abs(knn_kl_divergence(x, half, k=k)) < 0.1
    shifted = rng.normal(size=(2000, 2)) + np.array([1.0, 0.0])
    q = np.concatenate([rng.normal(size=(6000, 2)), shifted[:20]])  # Q ~ N(0, I), 20 shared
    assert abs(knn_kl_divergence(shifted, q, k=k) - 0.5) < 0.12  # KL = |mu|^2 / 2


def test_knn_entropy_matches_closed_form_and_ignores_duplicates() -> None:
    cov = np.array([[2.0, 0.8], [0.8, 1.0]])
    x = np.random.default_rng(1).multivariate_normal([0, 0], cov, size=4000)
    h = 0.5 * math.log(np.linalg.det(2 * math.pi * math.e * cov))
    assert abs(knn_entropy(x) - h) < 0.05
    assert knn_entropy(np.concatenate([x, x[:10]])) == pytest.approx(knn_entropy(x))


# -- trained flows (every backend: nflows, zuko) ------------------------------------------------

_HAS_ZUKO = importlib.util.find_spec("zuko") is not None
BACKEND_NAMES = [
    "nflows",
    pytest.param("zuko", marks=pytest.mark.skipif(not _HAS_ZUKO, reason="zuko not installed")),
]


def _perturbed(kind: str, dim: int, backend: str = "nflows") -> FlowBackend:
    torch.manual_seed(0)
    f = BACKENDS[backend](dim, kind, layers=2, hidden=8, bins=4, tail_bound=3.0,
                          loc=[0.5] * dim, scale=[2.0] * dim)  # fmt: skip
    with torch.no_grad():  # move away from the near-identity initialisation
        for p in f.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return f.double().eval()


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("kind", ["maf", "rqs"])
def test_flow_is_invertible_and_log_det_matches_autograd_jacobian(kind: str, backend: str) -> None:
    f = _perturbed(kind, 3, backend)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2
    y, ld = f(x)
    xr, ld_inv = f.inverse(y)
    assert (xr - x).abs().max() < 1e-10
    assert (ld + ld_inv).abs().max() < 1e-10
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(lambda v: f(v[None])[0][0], x[i])
        assert abs(torch.linalg.slogdet(jac)[1] - ld[i]) < 1e-8
        jac_inv = torch.autograd.functional.jacobian(lambda v: f.inverse(v[None])[0][0], y[i])
        assert abs(torch.linalg.slogdet(jac_inv)[1] - ld_inv[i]) < 1e-8
    assert abs(torch.linalg.det(jac)) > 1e-3  # a non-trivial map was tested


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("kind", ["maf", "rqs"])
def test_flow_gradients_reach_every_parameter_and_weights_round_trip(
    kind: str, backend: str, tmp_path
) -> None:
    f = _perturbed(kind, 2, backend).float().train()
    f.log_prob(torch.randn(16, 2)).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in f.parameters())
    f = f.double().eval()
    save_weights(tmp_path / "f.safetensors", f.state_dict(), {"kind": "flow", "arch": f.arch})
    tensors, meta = load_weights(tmp_path / "f.safetensors")
    g = build_backend(meta["arch"]).double()
    assert type(g) is type(f) and meta["arch"]["backend"] == backend
    g.load_state_dict(tensors)
    x = torch.randn(8, 2, dtype=torch.float64)
    assert torch.equal(f(x)[0], g(x)[0])


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_maf_refuses_d1_and_rqs_learns_a_1d_mixture(backend: str) -> None:
    with pytest.raises(ConfigError, match="d = 1"):
        BACKENDS[backend](1, "maf")
    target = make_target("mixture:2(radius=2,std=0.6)", 1)
    # zuko's 1-D flow is element-wise: its spline parameters are learned directly (no
    # hyper-network), and need a 10x larger step to converge in 150 steps (5e-3: gap 0.87 nats).
    lr = 5e-2 if backend == "zuko" else 5e-3
    cfg = FlowConfig(layers=2, hidden=16, steps=150, lr=lr, backend=backend)
    info = fit_flow(target.sample(10_000, 0), target.sample(4000, 1), cfg, "rqs")[1]
    gap = info["heldout_nll_nats"] - target.entropy().nats
    assert -0.05 < gap < 0.08, gap


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_flow_trained_on_a_known_gaussian_reaches_its_entropy(backend: str) -> None:
    """MAF represents a correlated Gaussian exactly: held-out NLL -> entropy (stderr ~0.014)."""
    cov = np.array([[2.0, 1.2], [1.2, 1.5]])
    rng = np.random.default_rng(5)
    y_tr = rng.multivariate_normal([1.0, -2.0], cov, size=10_000)
    y_te = rng.multivariate_normal([1.0, -2.0], cov, size=5000)
    h = 0.5 * math.log(np.linalg.det(2 * math.pi * math.e * cov))
    info = fit_flow(y_tr, y_te, FlowConfig(layers=2, hidden=16, steps=200, backend=backend), "maf")[
        1
    ]
    assert abs(info["heldout_nll_nats"] - h) < 0.05, (info["heldout_nll_nats"], h)
    assert 0.005 < info["heldout_nll_stderr"] < 0.03
    assert info["train_nll_history"][-1] < info["train_nll_history"][0]


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_rqs_trained_on_a_logistic_product_reaches_its_entropy(backend: str) -> None:
    """RQS on i.i.d. logistic coordinates (h = 2 nats each): NLL within ~3 stderr of h."""
    target = make_target("logistic", 2)
    y_te = target.sample(4000, 1)
    flow, info = fit_flow(
        target.sample(10_000, 0), y_te, FlowConfig(layers=2, steps=150, backend=backend), "rqs"
    )
    h = target.entropy().nats
    assert h == pytest.approx(4.0)
    assert abs(info["heldout_nll_nats"] - h) < 0.07, (info["heldout_nll_nats"], h)
    kl = (target.log_prob(y_te) - flow.log_prob(torch.as_tensor(y_te)).detach().numpy()).mean()
    assert -0.01 < kl < 0.06  # paired estimate of KL(target || flow): far less noisy than NLL - h


# -- transform_codes, flow run folders and load_prior -------------------------------------------


def _shifted_gaussian_codes(n: int = 2000, d: int = 2, shift: float = 0.6) -> np.ndarray:
    codes = np.random.default_rng(6).normal(size=(n, d))
    codes[:, 0] += shift
    return codes


def test_exact_run_writes_a_loadable_folder_and_estimates_the_true_kl(
    make_encoder_run, tmp_path
) -> None:
    """Codes N((0.6, 0), I) against N(0, I): KL = 0.18 nats, the same after any bijection."""
    src = make_encoder_run(_shifted_gaussian_codes(), "gaussian", bound=0.3, n_test=1500)
    out = tmp_path / "lap"
    run = transform_codes(src, "laplace", out=out)
    m = run.metrics
    assert {p.name for p in out.iterdir()} >= {
        "codes.npz",
        "metrics.json",
        "report.md",
        "codes.png",
        "run.json",
    }
    assert not (out / "flow.safetensors").exists()
    assert m["method"] == "exact" and m["kl_upper_bound_nats"] == 0.3
    assert m["kl_bound_applies_to"] == "KL(T#(codes + Z) || T#(prior * noise))"
    true_kl = 0.5 * 0.6**2
    assert abs(m["kl_estimate_knn_source_nats"] - true_kl) < 0.08
    assert abs(m["kl_estimate_knn_nats"] - true_kl) < 0.1
    assert m["round_trip_max_abs_error"] < 1e-10
    assert m["tv_bound_from_kl"] == pytest.approx(math.sqrt(0.15))
    saved = np.load(out / "codes.npz")
    np.testing.assert_array_equal(saved["labels"], np.arange(2000) % 10)
    assert saved["codes"].dtype == np.float64 and (saved["split"] == "test").sum() == 1500
    report = (out / "report.md").read_text()
    assert "**bound**" in report and "estimate" in report
    assert "*noisy* codes" in report and "clean codes can be further" in report

    prior = load_prior(out)
    codes = np.load(src / "codes.npz")["codes"]
    back = prior.to_source(prior.forward(codes))
    assert (
        back.dtype == torch.float32
        and (back.double() - torch.from_numpy(codes).double()).abs().max() < 1e-5
    )
    z = prior.sample(3000, seed=0)
    assert z.shape == (3000, 2) and z.dtype == torch.float64
    assert torch.equal(z, prior.sample(3000, seed=0))
    assert st.kstest(z[:, 1].numpy(), "laplace").pvalue > 0.01
    assert st.kstest(prior.to_source(z)[:, 1].double().numpy(), "norm").pvalue > 0.01
    lp = prior.log_prob(z[:5])  # T#N(0, I) is the Laplace product itself
    np.testing.assert_allclose(lp.numpy(), st.laplace.logpdf(z[:5].numpy()).sum(1), atol=1e-8)


def test_flow_run_from_uniform_codes_maps_back_exactly(make_encoder_run, tmp_path) -> None:
    u = st.norm.cdf(_shifted_gaussian_codes(800, shift=0.0))
    u[0] = [0.0, 1.0]  # float32-saturated codes are accepted and clamped, not infinite
    src = make_encoder_run(u, "uniform", bound=0.2)
    run = transform_codes(src, "mixture:4", config=FAST, out=tmp_path / "mix")
    m = run.metrics
    assert (
        m["method"] == "rqs"
        and m["kl_bound_applies_to"] == "KL(T#(codes + Z) || T#(prior * noise))"
    )
    assert m["n_clamped"] == 2 and np.isfinite(run.codes).all()
    for key in (
        "heldout_nll_nats",
        "target_entropy_nats",
        "kl_estimate_fit_nats",
        "kl_estimate_knn_nats",
    ):
        assert math.isfinite(m[key]), key
    assert m["kl_estimate_fit_nats"] == pytest.approx(
        m["heldout_nll_nats"] - m["target_entropy_nats"], abs=0.1
    )
    meta = load_weights(tmp_path / "mix" / "flow.safetensors")[1]
    assert (
        meta["arch"]["kind"] == "rqs"
        and meta["target"] == "mixture:4"
        and meta["source_prior"] == "uniform"
    )
    assert meta["source_run"] == str(src.resolve())

    prior = load_prior(tmp_path / "mix")
    codes = np.load(src / "codes.npz")["codes"].astype(np.float64)
    back = prior.to_source(prior.forward(codes), dtype=torch.float64).numpy()
    assert np.abs(back - codes)[1:].max() < 1e-5
    assert np.abs(back - codes)[0].max() <= 1.001 * UNIFORM_FLOOR
    np.testing.assert_allclose(
        prior.forward(codes).numpy(), np.load(tmp_path / "mix" / "codes.npz")["codes"]
    )
    z = prior.sample(64, seed=1)
    x = prior.to_source(z)
    assert x.shape == (64, 2) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert not torch.equal(z, prior.sample(64, seed=2))
    zm = prior.sample(64, seed=1, from_model=True)  # T#prior: maps back onto uniform draws
    torch.manual_seed(0)
    np.testing.assert_allclose(prior.to_source(zm, torch.float64).numpy(),
                               torch.rand(64, 2, generator=torch.Generator().manual_seed(1)).double().numpy(),
                               atol=1e-6)  # fmt: skip


def test_samples_target_and_bad_inputs(make_encoder_run, tmp_path) -> None:
    src = make_encoder_run(_shifted_gaussian_codes(400, shift=0.0), "gaussian")
    samples = tmp_path / "t.npz"
    np.savez(samples, x=np.random.default_rng(7).laplace(size=(1500, 2)) * [1.0, 0.5])
    run = transform_codes(src, to_samples=samples, config=FAST, out=tmp_path / "s")
    assert run.metrics["target"] == f"samples:{samples}" and run.metrics["n_target_test"] == 300
    assert run.metrics["target_entropy_method"].startswith("Kozachenko")
    prior = load_prior(tmp_path / "s")
    assert prior.target is None and prior.sample(10, seed=0).shape == (10, 2)  # from T#prior

    with pytest.raises(ConfigError, match="exactly one target"):
        transform_codes(src, "laplace", to_samples=samples)
    with pytest.raises(ConfigError, match="exactly one target"):
        transform_codes(src)
    with pytest.raises(ConfigError, match="no exact elementwise map"):
        transform_codes(src, "mixture:8", config=FlowConfig(method="exact"))
    with pytest.raises(RunFolderError, match="not empty"):
        transform_codes(src, "laplace", out=tmp_path / "s")
    with pytest.raises(RunFolderError, match="expected encoder"):
        transform_codes(tmp_path / "s", "laplace")
    bad = make_encoder_run(np.full((40, 2), 0.5) + np.array([[0.0, 0.7]]), "uniform")
    with pytest.raises(DataError, match=r"outside \[0, 1\], the support of the uniform prior"):
        transform_codes(bad, "gaussian")
    wrong_d = tmp_path / "w.npz"
    np.savez(wrong_d, x=np.zeros((100, 3)))
    with pytest.raises(DataError, match="dimension 3, but the codes have dimension 2"):
        transform_codes(src, to_samples=wrong_d)


def test_code_model_fits_the_runs_own_codes_and_sampling_draws_them(
    make_encoder_run, tmp_path
) -> None:
    """--to-codes: T#prior fitted to the training codes; the GAN's --prior path then draws T(z)
    (codes like the training codes), while a new-prior flow still maps its draws back by T^-1."""
    from dimgen.flows.targets import source_law
    from dimgen.gan.sampling import prior_codes_from_flow

    rng = np.random.default_rng(3)  # two clusters at x0 = +-1.2: far from N(0, I) near 0
    codes = rng.normal(size=(3000, 2)) * [0.35, 1.0]
    codes[:, 0] += rng.choice([-1.2, 1.2], 3000)
    src = make_encoder_run(codes, "gaussian", n_test=1000)
    cfg = FlowConfig(layers=2, hidden=32, steps=300, seed=0)
    run = transform_codes(src, to_codes=True, config=cfg, out=tmp_path / "cm")
    m = run.metrics
    assert m["code_model"] and m["n_target_train"] + m["n_target_test"] == 2000  # train split
    prior = load_prior(tmp_path / "cm")
    assert prior.code_model and prior.target is None
    test = codes[2000:]
    want = prior.log_prob(torch.from_numpy(test)).numpy() - source_law("gaussian").logpdf(test).sum(
        1
    )
    assert m["code_model_gain_nats"] == pytest.approx(float(want.mean()), rel=1e-6)
    assert m["code_model_gain_nats"] > 0.2  # the clusters are far more likely under the flow
    assert m["code_model_gain_codes"] == "held-out"
    assert "from_model=True" in (tmp_path / "cm" / "report.md").read_text()
    drawn = prior_codes_from_flow(tmp_path / "cm", 4000, 0, 2, "gaussian").double().numpy()
    assert torch.equal(torch.from_numpy(drawn).float(), prior.sample(4000, 0, True).float())
    near0 = float(np.mean(np.abs(drawn[:, 0]) < 0.4))  # codes: 1.3%; N(0, 1): 31%
    assert near0 < 0.10 and abs(np.mean(np.abs(drawn[:, 0])) - 1.2) < 0.15
    # a new-prior flow of the same codes (--to-samples) keeps the T^-1 path: prior draws back
    samples = tmp_path / "t.npz"
    np.savez(samples, x=np.random.default_rng(7).laplace(size=(1500, 2)))
    transform_codes(src, to_samples=samples, config=FAST, out=tmp_path / "np")
    assert not load_prior(tmp_path / "np").code_model
    back = prior_codes_from_flow(tmp_path / "np", 4000, 0, 2, "gaussian").double().numpy()
    assert np.mean(np.abs(back[:, 0]) < 0.4) > 0.2
    with pytest.raises(ConfigError, match="exactly one target"):
        transform_codes(src, "laplace", to_codes=True)
    few = make_encoder_run(np.tile(codes[:5], (40, 1)), "gaussian", n_test=50)
    with pytest.raises(DataError, match="at least 20 distinct training codes, got 5"):
        transform_codes(few, to_codes=True, config=cfg, out=tmp_path / "few")  # before training
    assert not (tmp_path / "few" / "run.json").exists()
    # uniform codes piled at the edges of [0, 1]: the flow's tails leave it, the draws do not
    edge = np.clip(rng.beta(0.3, 0.3, size=(1000, 2)), 1e-4, 1 - 1e-4)
    usrc = make_encoder_run(edge, "uniform", n_test=200)
    transform_codes(usrc, to_codes=True, config=cfg, out=tmp_path / "cmu")
    raw = load_prior(tmp_path / "cmu").sample(4000, 0, True)
    assert float(((raw < 0) | (raw > 1)).float().mean()) > 0  # what the clamp is for
    got = prior_codes_from_flow(tmp_path / "cmu", 4000, 0, 2, "uniform")
    assert float(got.min()) >= 0.0 and float(got.max()) <= 1.0
    torch.testing.assert_close(got, raw.clamp(0, 1).float())


def test_load_prior_of_an_encoder_run_is_its_own_prior(make_encoder_run, tmp_path) -> None:
    prior = load_prior(make_encoder_run(_shifted_gaussian_codes(100), "gaussian"))
    assert prior.dim == 2 and prior.source_prior == "gaussian"
    z = prior.sample(5, seed=3)
    torch.testing.assert_close(
        z.float(), torch.randn(5, 2, generator=torch.Generator().manual_seed(3))
    )
    torch.testing.assert_close(prior.to_source(z), z.float())
    with pytest.raises(RunFolderError, match="no such run folder"):
        load_prior(tmp_path / "nothing")


def test_load_prior_refuses_corrupt_weights(make_encoder_run, tmp_path) -> None:
    src = make_encoder_run(_shifted_gaussian_codes(200), "gaussian")
    transform_codes(src, "mixture:2", config=FlowConfig(method="maf", layers=1, hidden=8, steps=5,
                                                        n_train=500, n_test=200), out=tmp_path / "f")  # fmt: skip
    (tmp_path / "f" / "flow.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(RunFolderError, match=r"flow\.safetensors does not match the digest"):
        load_prior(tmp_path / "f")  # run.json's digests catch it first
    rec = json.loads((tmp_path / "f" / "run.json").read_text())
    del rec["artefacts"]  # a folder without digests: the loader itself refuses the file
    (tmp_path / "f" / "run.json").write_text(json.dumps(rec))
    with pytest.raises(RunFolderError, match="not a valid safetensors"):
        load_prior(tmp_path / "f")


@pytest.mark.slow
def test_digits_codes_transforms_and_bounds(digits_run, digits_uniform_run, tmp_path) -> None:
    """Real encoder codes: exact maps both ways and a mixture flow; estimates beside the bound."""
    for src, to in (
        (digits_run, "uniform"),
        (digits_uniform_run, "gaussian"),
        (digits_run, "mixture:8"),
    ):
        run = transform_codes(src, to, out=tmp_path / to)
        m = run.metrics
        assert m["round_trip_max_abs_error"] < 1e-5
        assert m["kl_estimate_knn_source_nats"] < m["kl_upper_bound_nats"] + 0.1
        prior = load_prior(tmp_path / to)
        assert prior.to_source(prior.sample(16, seed=0)).shape == (16, 2)
