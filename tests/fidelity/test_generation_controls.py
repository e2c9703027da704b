"""``benchmarks/generation_controls.py`` and the metrics it adds to :mod:`dimgen.fidelity`:
precision / recall on hand-computed cases, and each route's sampler drawing the codes it claims
(prior moments, fitted moments, noisy prior, zero codes, held-out codes) on a tiny budget."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dimgen.config import EncoderConfig
from dimgen.errors import DataError
from dimgen.fidelity import precision_recall
from dimgen.flows import FlowConfig
from dimgen.gan import GANConfig
from dimgen.infomax.tokenizer import Tokenizer

REPO = Path(__file__).resolve().parents[2]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location(
        "generation_controls", REPO / "benchmarks" / "generation_controls.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


gc = _load_benchmark()


# -- precision / recall (Kynkäänniemi et al. 2019) --------------------------------------------


def test_precision_recall_hand_computed_1d() -> None:
    # k = 1. Real radii (1st neighbour): 0->1, 1->1, 2->1, 3->1. Fakes: 0.5 in the ball of 0,
    # 10 in none (nearest real 3 at distance 7), 2.2 in the ball of 2: precision 2/3.
    # Fake radii: 0.5->1.7, 10->7.8, 2.2->1.7; every real lies in the ball of 0.5 or 2.2: recall 1.
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[0.5], [10.0], [2.2]])
    out = precision_recall(real, fake, k=1)
    assert out["precision"] == pytest.approx(2 / 3, abs=1e-6)
    assert out["recall"] == pytest.approx(1.0)


def test_precision_recall_collapsed_generator_and_argument_order() -> None:
    # A generator collapsed on one region: every fake is realistic (precision 1) but only the
    # real point 0 lies in a fake ball (fake radii 0.1 at k = 1): recall 1/4.
    real = np.array([[0.0], [1.0], [2.0], [10.0]])
    fake = np.array([[0.1], [0.2], [0.3]])
    out = precision_recall(real, fake, k=1)
    assert out == pytest.approx({"precision": 1.0, "recall": 0.25})
    # swapping the sets swaps the two numbers: the real / generated order is handled right
    assert precision_recall(fake, real, k=1) == pytest.approx({"precision": 0.25, "recall": 1.0})


def test_precision_recall_2d_k2() -> None:
    # Unit square corners as real points; k = 2: each corner's 2nd neighbour is at distance 1.
    real = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # Fakes: (0.5, 0.5) is 0.71 from every corner (inside); (3, 3) is 2.83 and (2, 2) 1.41 from
    # the nearest corner (outside): precision 1/3. Fake radii at k = 2 (2nd of the other two):
    # centre 3.54, (3, 3) 3.54, (2, 2) 2.12; every corner is within 3.54 of the centre: recall 1.
    fake = np.array([[0.5, 0.5], [3.0, 3.0], [2.0, 2.0]])
    out = precision_recall(real, fake, k=2)
    assert out["precision"] == pytest.approx(1 / 3)
    assert out["recall"] == pytest.approx(1.0)
    same = precision_recall(real, real.copy(), k=2)
    assert same == pytest.approx({"precision": 1.0, "recall": 1.0})


@pytest.mark.parametrize(
    "real, fake, k, match",
    [
        (np.zeros((5, 2)), np.zeros((5, 3)), 1, "one width"),
        (np.zeros((5, 2)), np.zeros((3, 2)), 3, "k must be"),
        (np.zeros((5, 2)), np.zeros((5, 2)), 0, "k must be"),
        (np.full((5, 2), np.nan), np.zeros((5, 2)), 1, "NaN"),
    ],
)
def test_precision_recall_refuses_bad_input(real, fake, k, match) -> None:
    with pytest.raises(DataError, match=match):
        precision_recall(real, fake, k=k)


# -- code samplers ----------------------------------------------------------------------------


def test_fitted_gaussian_route_reproduces_moments() -> None:
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((5000, 2)) @ np.array([[1.5, 0.0], [0.9, 0.4]]) + [2.0, -1.0]
    mean, cov = gc.fit_gaussian(codes)
    np.testing.assert_allclose(mean, codes.mean(0))
    np.testing.assert_allclose(cov, np.cov(codes.T))
    draws = gc.gaussian_codes(mean, cov, 40_000, seed=1).double().numpy()
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.05)
    assert torch.equal(gc.gaussian_codes(mean, cov, 5, 3), gc.gaussian_codes(mean, cov, 5, 3))


def test_noisy_code_table_redraws_noise_at_every_use() -> None:
    base = torch.arange(6.0).reshape(3, 2)
    table = gc._NoisyCodes(base, 0.5, seed=0)
    idx = torch.zeros(20_000, dtype=torch.long)
    a, b = table[idx], table[idx]
    assert not torch.equal(a, b)
    assert float((a - base[0]).mean()) == pytest.approx(0.0, abs=0.02)
    assert float((a - base[0]).std()) == pytest.approx(0.5, abs=0.02)


# -- the route builders on a tiny budget ------------------------------------------------------


@pytest.fixture(scope="module")
def controls(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("gencontrols")
    enc = EncoderConfig(epochs=2, seed=0, threads=1)
    gan = GANConfig(steps=10, eval_samples=0, sample_every=0, checkpoint_every=0,
                    classifier_epochs=0, threads=1, seed=0)  # fmt: skip
    return gc.build_controls(enc, gan, work, flow=FlowConfig(steps=150)), work, enc.sigma


def _x_test(n: int) -> np.ndarray:
    from dimgen.data import load_data

    x = load_data("digits").x_test
    return x[np.arange(n) % len(x)]


def test_every_route_gives_images_in_range(controls) -> None:
    ctl, _, _ = controls
    assert set(ctl.samplers) == set(gc.ROUTES)
    x = _x_test(16)
    for route, sampler in ctl.samplers.items():
        images, codes = sampler(x, 0)
        assert images.shape == (16, 1, 8, 8), route
        assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0, route
        assert codes.shape == (16, 2), route
        # same seed, same samples; another seed, other samples
        assert torch.equal(sampler(x, 0)[0], images), route
        assert not torch.equal(sampler(x, 1)[0], images), route


def test_conditional_routes_use_their_encoders_heldout_codes(controls) -> None:
    ctl, work, _ = controls
    x = _x_test(32)
    _, codes = ctl.samplers["conditional"](x, 0)
    torch.testing.assert_close(codes, Tokenizer.from_pretrained(work / "encoder-noisy").encode(x))
    _, codes = ctl.samplers["rcg-conditional"](x, 0)
    clean = Tokenizer.from_pretrained(work / "encoder-noise-free")
    torch.testing.assert_close(codes, clean.encode(x))
    assert ctl.encoders["noisy"]["sigma"] == 0.2
    assert ctl.encoders["noise-free"]["sigma"] == gc.NOISE_FREE_SIGMA


def test_prior_and_noisy_routes_draw_their_priors(controls) -> None:
    ctl, _, sigma = controls
    x = _x_test(20_000)
    for route, var in (("prior", 1.0), ("noisy-codes", 1.0 + sigma**2)):
        codes = ctl.samplers[route](x, 0)[1].double().numpy()
        np.testing.assert_allclose(codes.mean(0), 0.0, atol=0.03)
        np.testing.assert_allclose(np.cov(codes.T), var * np.eye(2), atol=0.04)
    # N(0, 1.04 I) against N(0, I): the noisy route's variance is measurably larger
    v_noisy = ctl.samplers["noisy-codes"](x, 0)[1].var(0).mean()
    v_prior = ctl.samplers["prior"](x, 0)[1].var(0).mean()
    assert float(v_noisy / v_prior) == pytest.approx(1 + sigma**2, abs=0.02)


def test_no_encoder_route_has_zero_codes_and_a_wider_latent(controls) -> None:
    ctl, _, _ = controls
    images, codes = ctl.samplers["no-encoder"](_x_test(64), 0)
    assert torch.count_nonzero(codes) == 0
    assert float(images.std(0).mean()) > 1e-3  # the noise alone varies the samples
    g = ctl.gans["no-encoder"]
    assert g.noise_dim == GANConfig().noise_dim + 2


def _check_code_models(ctl, run_dir, moments, gaussian: str, flow: str) -> None:
    """The Gaussian route's moments are the training codes' exactly, its draws follow them; the
    flow is a fitted model of the same codes: moments close, not exact."""
    train = gc.train_codes_of(run_dir).astype(np.float64)
    mean, cov = moments
    np.testing.assert_allclose(mean, train.mean(0), atol=1e-6)
    np.testing.assert_allclose(cov, np.cov(train.T), atol=1e-6)
    x = _x_test(20_000)
    g = ctl.samplers[gaussian](x, 0)[1].double().numpy()
    np.testing.assert_allclose(g.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(g.T), cov, atol=0.05)
    f = ctl.samplers[flow](x, 0)[1].double().numpy()
    np.testing.assert_allclose(f.mean(0), mean, atol=0.15)
    np.testing.assert_allclose(np.cov(f.T), cov, atol=0.25)
    assert not np.allclose(f[:100], g[:100])


def test_rcg_routes_follow_the_noise_free_codes(controls) -> None:
    ctl, work, _ = controls
    _check_code_models(ctl, work / "encoder-noise-free", ctl.rcg_moments, "rcg-gaussian",
                       "rcg-flow")  # fmt: skip


def test_fitted_routes_follow_the_noisy_codes_through_the_prior_routes_gan(controls) -> None:
    """fitted-gaussian / fitted-flow: the conditional GAN, codes from models of the noise-injected
    encoder's own training codes (not N(0, I), not the noise-free encoder's)."""
    ctl, work, _ = controls
    assert ctl.gans["fitted-gaussian"] is ctl.gans["fitted-flow"] is ctl.gans["prior"]
    _check_code_models(ctl, work / "encoder-noisy", ctl.fitted_moments, "fitted-gaussian",
                       "fitted-flow")  # fmt: skip
    assert not np.allclose(ctl.fitted_moments[1], ctl.rcg_moments[1], atol=0.05)  # other codes
    assert math.isfinite(ctl.encoders["noisy"]["code_model_gain_nats"])
    assert math.isfinite(ctl.encoders["noise-free"]["code_model_gain_nats"])
    images, codes = ctl.samplers["fitted-flow"](_x_test(8), 0)
    assert torch.equal(images, ctl.gans["prior"].generate(codes, seed=0))


def test_mixture_routes_draw_from_mixtures_of_their_encoders_codes(controls) -> None:
    """fitted-mixture / rcg-mixture: the GAN of prior / rcg-conditional, codes drawn from a
    Gaussian mixture of that encoder's training codes; a temperature shrinks each component's
    spread (the same components), so the cloud narrows but keeps its means."""
    ctl, _, _ = controls
    assert ctl.gans["fitted-mixture"] is ctl.gans["prior"]
    assert ctl.gans["rcg-mixture"] is ctl.gans["rcg-conditional"]
    x = _x_test(20_000)
    for route, enc, moments in (("fitted-mixture", "noisy", ctl.fitted_moments),
                                ("rcg-mixture", "noise-free", ctl.rcg_moments)):  # fmt: skip
        mean, cov = moments
        warm = ctl.samplers[route](x, 0)[1].double().numpy()
        np.testing.assert_allclose(warm.mean(0), mean, atol=0.1)
        np.testing.assert_allclose(np.cov(warm.T), cov, atol=0.2 * float(np.abs(cov).max()))
        cold = ctl.samplers[route](x, 0, 0.5)[1].double().numpy()
        assert float(cold.var(0).sum() / warm.var(0).sum()) < 0.999, route  # 0.989, 0.994
        np.testing.assert_allclose(cold.mean(0), warm.mean(0), atol=0.05)
        assert math.isfinite(ctl.encoders[enc]["mixture_gain_nats"])
        assert ctl.encoders[enc]["mixture_gain_nats"] > 0  # the codes' clusters beat N(0, I)
    images, codes = ctl.samplers["fitted-mixture"](_x_test(8), 0)
    assert torch.equal(images, ctl.gans["prior"].generate(codes, seed=0))
    assert set(gc.DRAWS_CODES) >= {"fitted-mixture", "rcg-mixture"}


def test_summary_is_mean_and_sample_std_over_seeds() -> None:
    rows = [{"route": "prior", "seed": s, "fid": v, "classes": 10.0}
            for s, v in enumerate((1.0, 2.0, 6.0))]  # fmt: skip
    rows.append({"route": "real", "seed": None, "fid": 0.5})
    s = gc.summarise(rows, ("prior",))
    assert s["prior"]["n_seeds"] == 3
    assert s["prior"]["fid"] == pytest.approx([3.0, math.sqrt(7.0)])
    assert s["prior"]["classes"] == pytest.approx([10.0, 0.0])
    assert s["real"]["fid"] == [0.5, 0.0]
    assert "| prior | 3.0 ± 2.6 |" in gc.table({"summary": s})


def test_truncation_levels_are_summarised_apart() -> None:
    rows = [{"route": "prior", "seed": s, "truncation": t, "fid": v}
            for s in (0, 1) for t, v in ((None, 10.0 + s), (0.5, 20.0 + 2 * s))]  # fmt: skip
    rows.append({"route": "real", "seed": None, "truncation": None, "fid": 0.5})
    s = gc.summarise(rows, ("prior",), [None, 0.5])
    assert s["prior"]["fid"] == pytest.approx([10.5, math.sqrt(0.5)])
    assert s["prior@t0.5"]["fid"] == pytest.approx([21.0, math.sqrt(2.0)])
    assert list(s) == ["real", "prior", "prior@t0.5"]


@pytest.mark.parametrize(
    "text", ["0", "-1", "nan", "inf", "x", "0.5,0.5", "0.5,0.5000001", "none,none", ""]
)
def test_cli_refuses_bad_truncations(text: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        gc.parse_args(["--truncations", text])
    assert exc.value.code == 2 and "--truncations" in capsys.readouterr().err
    assert gc.parse_truncations("none,1,0.25") == [None, 1.0, 0.25]


def test_every_route_has_its_gan_for_truncation(controls) -> None:
    """The benchmark sets ``truncation`` on the GAN behind each route: prior and conditional
    share one, the RCG routes another, and truncating it changes that route's samples."""
    ctl, _, _ = controls
    assert ctl.gans["prior"] is ctl.gans["conditional"]
    assert ctl.gans["rcg-flow"] is ctl.gans["rcg-gaussian"] is ctl.gans["rcg-conditional"]
    assert ctl.gans["rcg-mixture"] is ctl.gans["rcg-flow"]
    assert len({id(g) for g in ctl.gans.values()}) == 4
    x = _x_test(8)
    a, _ = ctl.samplers["no-encoder"](x, 3)
    ctl.gans["no-encoder"].truncation = 0.1
    try:
        b, _ = ctl.samplers["no-encoder"](x, 3)
    finally:
        ctl.gans["no-encoder"].truncation = None
    assert not torch.equal(a, b)
    assert torch.equal(a, ctl.samplers["no-encoder"](x, 3)[0])


def test_code_temperature_scales_the_draws_of_the_routes_that_draw_codes(controls) -> None:
    """At temperature T the code-drawing routes scale their standard-normal draws by T (the same
    draws: paired with T = 1); the routes that draw no codes have none to scale."""
    ctl, _, _ = controls
    x = _x_test(4000)
    for route in ("prior", "noisy-codes"):
        torch.testing.assert_close(
            ctl.samplers[route](x, 0, 0.5)[1], 0.5 * ctl.samplers[route](x, 0)[1]
        )
    mean = torch.from_numpy(ctl.fitted_moments[0]).float()
    warm, cold = (
        ctl.samplers["fitted-gaussian"](x, 0)[1],
        ctl.samplers["fitted-gaussian"](x, 0, 0.5)[1],
    )
    torch.testing.assert_close(cold - mean, 0.5 * (warm - mean), atol=1e-5, rtol=1e-5)
    for route in ("fitted-flow", "rcg-flow"):  # T through a flow: a narrower cloud, other codes
        warm, cold = ctl.samplers[route](x, 0)[1], ctl.samplers[route](x, 0, 0.5)[1]
        assert float(cold.var(0).sum() / warm.var(0).sum()) < 0.6, route
    for route in ("conditional", "no-encoder", "rcg-conditional"):
        assert route not in gc.DRAWS_CODES
        assert torch.equal(ctl.samplers[route](x[:8], 0, 0.5)[0], ctl.samplers[route](x[:8], 0)[0])
    assert set(gc.DRAWS_CODES) < set(gc.ROUTES)


def test_temperatures_score_only_the_code_drawing_routes_and_are_keyed_apart() -> None:
    routes = ("conditional", "prior", "no-encoder", "fitted-flow")
    assert gc.scored(routes, [None], [None, 0.9]) == [
        (None, None, "conditional"), (None, None, "prior"), (None, None, "no-encoder"),
        (None, None, "fitted-flow"), (None, 0.9, "prior"), (None, 0.9, "fitted-flow")]  # fmt: skip
    rows = [{"route": r, "seed": s, "truncation": None, "temperature": t, "fid": v + s}
            for s in (0, 1) for t, r, v in ((None, "conditional", 1.0), (None, "prior", 3.0),
                                           (0.9, "prior", 2.0))]  # fmt: skip
    rows.append(
        {"route": "real", "seed": None, "truncation": None, "temperature": None, "fid": 0.5}
    )
    s = gc.summarise(rows, ("conditional", "prior"), [None], [None, 0.9])
    assert list(s) == ["real", "conditional", "prior", "prior@T0.9"]
    assert s["prior@T0.9"]["fid"] == pytest.approx([2.5, math.sqrt(0.5)])
    assert s["prior"]["fid"] == pytest.approx([3.5, math.sqrt(0.5)])
    assert gc.route_key("prior", 0.5, 0.9) == "prior@t0.5@T0.9"
    assert gc.parse_temperatures("none, 0.9,0.8") == [None, 0.9, 0.8]
    assert gc.parse_temperatures("0.9") == [None, 0.9]  # T = 1 is always scored: the baseline
    assert gc.parse_temperatures("none") == [None]


@pytest.mark.parametrize(
    "text", ["0", "-1", "nan", "inf", "11", "x", "0.9,0.9", "0.9,0.9000001", "1", ""]
)
def test_cli_refuses_bad_temperatures(text: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        gc.parse_args(["--temperatures", text])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "error: --temperatures: " in err.strip().splitlines()[-1]


def _split_by_seed(result: dict) -> list[dict]:
    """One result per seed, as separate runs (``--seeds S``) would have written them."""
    out = []
    for p in result["per_seed"]:
        rows = [result["rows"][0]] + [r for r in result["rows"] if r["seed"] == p["seed"]]
        out.append({**result, "seeds": str(p["seed"]), "rows": rows, "per_seed": [p],
                    "cpu_seconds": p["cpu_seconds"], "command": f"seed {p['seed']}"})  # fmt: skip
    return out


def test_merging_runs_per_seed_gives_the_whole_runs_table() -> None:
    """docs/generation-controls-mnist.json (3 seeds, one run), split per seed and merged,
    gives back its summary and table."""
    whole = json.loads((REPO / "docs" / "generation-controls-mnist.json").read_text())
    merged = gc.merge(_split_by_seed(whole))
    assert merged["seeds"] == "0,1,2" and len(merged["per_seed"]) == 3
    for route, stats in whole["summary"].items():
        for m in gc.METRICS:
            assert merged["summary"][route][m] == pytest.approx(stats[m]), (route, m)
    assert gc.table(merged) == gc.table(whole)
    parts = _split_by_seed(whole)
    with pytest.raises(ValueError, match="a seed appears in two runs"):
        gc.merge([parts[0], parts[0]])
    with pytest.raises(ValueError, match="runs differ in gan_steps"):
        gc.merge([parts[0], {**parts[1], "gan_steps": 1}])
    with pytest.raises(ValueError, match="runs differ in temperatures"):
        gc.merge([parts[0], {**parts[1], "temperatures": [None, 0.9]}])
    with pytest.raises(ValueError, match="runs differ in flow"):
        gc.merge([parts[0], {**parts[1], "flow": {"hidden": 128}}])
    fewer = {**parts[1], "rows": [r for r in parts[1]["rows"] if r["route"] != "rcg-flow"]}
    with pytest.raises(ValueError, match="runs differ in routes"):
        gc.merge([parts[0], fewer])


def test_merge_of_a_missing_file_is_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        gc.main(["--merge", str(tmp_path / "nope.json")])
    assert str(exc.value.code).startswith("generation_controls.py: error: --merge:")
    assert "nope.json" in str(exc.value.code) and "\n" not in str(exc.value.code)


def test_code_model_settings_come_from_the_flow_config_with_steps_over_it() -> None:
    """--flow-config fills the code models' FlowConfig (recorded, merge key); --flow-steps wins."""
    cfg = gc.flow_config(gc.parse_args(["--flow-config", "configs/code-model.yaml"]))
    assert (cfg.layers, cfg.hidden, cfg.steps) == (5, 128, 2000)
    cfg = gc.flow_config(gc.parse_args(["--flow-config", "configs/code-model.yaml",
                                        "--flow-steps", "7"]))  # fmt: skip
    assert (cfg.hidden, cfg.steps) == (128, 7)
    assert gc.flow_config(gc.parse_args([])) == FlowConfig()
    assert gc.flow_fields(cfg)["steps"] == 7 and "seed" not in gc.flow_fields(cfg)
    assert "flow" in gc.MERGE_KEYS


def test_cli_refuses_unknown_routes_and_presets(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        gc.parse_args(["--routes", "prior,vae"])
    assert exc.value.code == 2
    assert "unknown route(s) vae" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gc.parse_args(["--data", "digits", "--preset", "cpu"])
    assert gc.parse_args(["--data", "mnist"]).preset == "cpu"
    for bad in ("0", "-3"):
        with pytest.raises(SystemExit) as exc:
            gc.parse_args(["--mixture-components", bad])
        assert exc.value.code == 2
        assert "--mixture-components must be >= 1" in capsys.readouterr().err


def test_score_of_the_heldout_images_against_themselves() -> None:
    from dimgen.data import load_data
    from dimgen.fidelity import classifier_outputs
    from dimgen.fidelity.extractor import reference_extractor

    ds = load_data("digits")
    x_all, y_all = ds.split("all")
    ext = reference_extractor(x_all, y_all, "digits", epochs=2)
    ref = gc.Reference(ds.x_test[:120], ds.y_test[:120], ext.path, "dimgen-classifier-digits")
    out = gc.score(ref.x, ref, seed=0)
    assert out["precision"] == 1.0 and out["recall"] == 1.0
    assert abs(out["fid"]) < 1e-3
    _, probs = classifier_outputs(ref.clf, ref.x)
    assert out["confident"] == pytest.approx(
        100 * float((probs.max(1).values > 0.9).double().mean())
    )
    pred = probs.argmax(1).numpy()
    p, q = (np.bincount(v, minlength=10) / 120 for v in (pred, ref.y))
    assert out["class_tv"] == pytest.approx(0.5 * np.abs(p - q).sum())
    assert out["classes"] == float((p > 0).sum())
    # blank images: far from every held-out image, one predicted class
    blank = gc.score(np.zeros_like(ref.x), ref, seed=0)
    assert blank["precision"] == 0.0 and blank["classes"] == 1.0 and blank["fid"] > 10


def test_the_mnist_cpu_estimate_counts_the_gans_of_the_routes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/generation-controls.md's MNIST line stopped with `TypeError: object of type
    'generator' has no len()` before any work: the estimate counts the distinct GANs."""
    counts: list[int] = []

    class Stop(Exception):
        pass

    def stop(args: object) -> None:
        raise Stop

    monkeypatch.setattr(
        gc, "mnist_cpu_minutes", lambda seeds, e, s, n_gans: counts.append(n_gans) or 1.0
    )
    monkeypatch.setattr(gc, "run", stop)
    for routes, n in (("conditional,prior", 1), ("prior,no-encoder,rcg-flow,rcg-gaussian", 3),
                      ("prior,fitted-flow", 1), ("fitted-mixture,rcg-mixture", 2)):  # fmt: skip
        with pytest.raises(Stop):
            gc.main(["--data", "mnist", "--preset", "cpu", "--routes", routes])
        assert counts[-1] == n
    assert "MNIST CPU presets: about" in capsys.readouterr().err
