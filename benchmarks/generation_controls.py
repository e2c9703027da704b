"""Generation from the prior, with controls: does sampling codes from N(0, I) work as well as
conditioning on real images, and better than the routes that need no certified prior?

Every route uses one GAN architecture, one number of generator steps and one batch size (the GAN
config's), and is scored on as many samples as there are held-out images, in the reference
classifier's feature space (the one ``dimgen train-gan`` / ``evaluate-gan`` use):

1. ``conditional``: GAN on the codes of a noise-injected encoder (the config's sigma), each
   sample G(z, code(x)) for a held-out image x;
2. ``prior``: the same GAN, codes drawn from the prior N(0, I) (dimgen's promise);
3. ``no-encoder``: an unconditional GAN, same networks, latent N(0, I) of size noise_dim + d
   (the code input is held at 0 in training and sampling, so D sees no code);
4. ``rcg-gaussian``: the RCG route (Li et al., 2024, "Return of Unconditional Generation"):
   an encoder of the same architecture trained without the noise that matches the prior
   (sigma = 1e-3, the config's floor: capacity 13.8 nats at d = 2, far above the log B ceiling
   of InfoNCE, so the channel noise never binds), a GAN on its codes, sampled from a Gaussian
   fitted to its training codes (mean, covariance); ``rcg-conditional``, the same GAN on the
   codes of held-out images, separates the code model's error from the GAN's;
5. ``rcg-flow``: the same GAN, codes drawn from a flow fitted to those codes with dimgen's flow
   API (a code model: ``dimgen.flows.transform_codes(..., to_codes=True)``, ``dimgen flow
   --to-codes``);
6. ``noisy-codes``: a GAN conditioned on the noisy codes f(X) + Z (fresh Z ~ N(0, sigma^2 I)
   every batch), which is what the certificate bounds, sampled from N(0, (1 + sigma^2) I);
7. ``fitted-gaussian`` / ``fitted-flow``: the GAN of 1-2, codes drawn from a Gaussian / a flow
   fitted to the noise-injected encoder's training codes (``dimgen flow --to-codes``, then
   ``dimgen sample --unconditional --prior``): where the codes miss N(0, I), does a fitted code
   model close the gap?
8. ``fitted-mixture`` / ``rcg-mixture``: the GANs of 1-2 / 4-5, codes drawn from a Gaussian
   mixture fitted to their encoder's training codes (``dimgen flow --to-codes --method gmm``,
   ``--mixture-components`` Gaussians): a code model with no mass between the class blobs.

``--temperatures`` also scores the routes that draw codes (2, 4-7) at code temperatures T: their
standard-normal draws scaled by T before the code model (Glow's temperature, Kingma & Dhariwal
2018, section 4; ``dimgen sample --temperature``), keyed ``route@T0.9``; ``--truncations`` does
the same for G's noise (BigGAN), keyed ``route@t0.5``.

Metrics per route: ``FID`` (torch-fidelity, the reference classifier's features, against the
held-out images), ``precision`` / ``recall`` (Kynkäänniemi et al. 2019, k = 3, same features,
:func:`dimgen.fidelity.precision_recall`), ``confident`` (% of samples the classifier gives a
max probability > 0.9), ``class_tv`` (total variation between the predicted class histogram and
the held-out labels'), ``classes`` (classes predicted at least once, of 10). A ``real`` row
scores as many training images the same way (the floor of every metric at this n).

Usage (one thread; the MNIST presets take hours of CPU, see docs/generation-controls.md):
    OMP_NUM_THREADS=1 python benchmarks/generation_controls.py --seeds 0,1,2 --out gc.json
    python benchmarks/generation_controls.py --data mnist --preset cpu --seeds 0,1,2  # MNIST
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dimgen.config import EncoderConfig, load_config, replace, to_dict
from dimgen.data import Dataset, load_data
from dimgen.errors import ConfigError, DataError
from dimgen.fidelity import (
    FID_CLASSIFIER,
    class_histogram_tv,
    classifier_outputs,
    extractor_name,
    fidelity_metrics,
    load_classifier,
    precision_recall,
)
from dimgen.fidelity.extractor import reference_extractor
from dimgen.flows import FlowConfig, Prior, transform_codes
from dimgen.gan import GAN, GANConfig
from dimgen.gan.trainer import GANTrainer
from dimgen.infomax.tokenizer import Tokenizer
from dimgen.infomax.trainer import train_encoder
from dimgen.training import Context, fit
from dimgen.training.devices import resolve_device

ROOT = Path(__file__).resolve().parents[1]
ROUTES = (
    "conditional",
    "prior",
    "no-encoder",
    "rcg-conditional",
    "rcg-gaussian",
    "rcg-flow",
    "noisy-codes",
    "fitted-gaussian",
    "fitted-flow",
    "fitted-mixture",
    "rcg-mixture",
)
#: The routes whose codes are drawn (from N(0, I) or a code model), so a temperature applies.
DRAWS_CODES = ("prior", "rcg-gaussian", "rcg-flow", "noisy-codes", "fitted-gaussian", "fitted-flow",
               "fitted-mixture", "rcg-mixture")  # fmt: skip
METRICS = ("fid", "precision", "recall", "confident", "class_tv", "classes")
PRESETS = {
    ("digits", "default"): ("configs/digits-gaussian.yaml", "configs/digits-gan.yaml"),
    ("mnist", "cpu"): ("configs/mnist-cpu.yaml", "configs/mnist-gan-cpu.yaml"),
    ("mnist", "gpu"): ("configs/mnist-gaussian.yaml", "configs/mnist-gan.yaml"),
}
#: The noise-free encoder's sigma: the config's floor (sigma = 0 is refused, its capacity is
#: infinite). At d = 2 the capacity is 13.8 nats, above log B for any batch below 10^6, the most
#: InfoNCE can certify, so the noise cannot shape the codes.
NOISE_FREE_SIGMA = 1e-3
CONFIDENT = 0.9
PR_K = 3

#: CPU minutes (one thread, the project's 2-core machine) of the MNIST CPU presets, measured in
#: their config headers: configs/mnist-cpu.yaml (10 epochs) and mnist-gan-cpu.yaml (15,000 steps).
MNIST_CPU_MINUTES = {"encoder": 17.2, "gan": 14.1, "encoder_epochs": 10, "gan_steps": 15_000}

Sampler = Callable[[np.ndarray, int, float], tuple[Tensor, Tensor]]
"""(held-out images (n, C, H, W), seed, code temperature) -> (generated images (n, C, H, W) in
[0, 1], codes); routes that draw no codes ignore the temperature."""


# -- GANs on codes other than the encoder's inference codes -----------------------------------


class _NoisyCodes:
    """Stands in for the trainer's code table: ``codes[idx]`` is f(x_idx) + fresh N(0, sigma^2)."""

    def __init__(self, codes: Tensor, sigma: float, seed: int) -> None:
        self.codes, self.sigma = codes, float(sigma)
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, idx: Tensor) -> Tensor:
        c = self.codes[idx]
        z = torch.randn(c.shape, generator=self.gen).to(c.device)
        return c + self.sigma * z


class ControlTrainer(GANTrainer):
    """``dimgen.gan``'s trainer with the code table swapped after its own setup, nothing else.

    ``codes``: ``clean`` (the encoder's codes, as ``train_gan``), ``none`` (every code 0: an
    unconditional GAN; give it noise_dim + d noise inputs) or ``noisy`` (f(x) + N(0, sigma^2 I),
    redrawn at every use, the channel output the certificate bounds).
    """

    def __init__(self, cfg: GANConfig, codes: str = "clean", sigma: float = 0.0) -> None:
        if codes not in ("clean", "none", "noisy"):
            raise ValueError(f"codes must be clean, none or noisy, got {codes!r}")
        super().__init__(cfg)
        self.codes, self.sigma = codes, sigma

    def setup(self, ctx: Context) -> Any:
        state = super().setup(ctx)
        if self.codes == "none":
            self.c_train = torch.zeros_like(self.c_train)
            self.grid_codes = torch.zeros_like(self.grid_codes)
        elif self.codes == "noisy":
            self.c_train = _NoisyCodes(self.c_train, self.sigma, self.config.seed + 7)
        return state


def train_control_gan(cfg: GANConfig, codes: str = "clean", sigma: float = 0.0) -> GAN:
    """Train one GAN of the benchmark in memory (no run folder); its EMA generator."""
    from dimgen.config import validate

    cfg = validate(cfg, GANConfig)
    return fit(ControlTrainer(cfg, codes, sigma), resolve_device(cfg.device), None).gan


# -- code samplers ----------------------------------------------------------------------------


def fit_gaussian(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) (unbiased) of codes (n, d): RCG's simplest code model."""
    codes = np.asarray(codes, dtype=np.float64)
    return codes.mean(0), np.atleast_2d(np.cov(codes, rowvar=False))


def gaussian_codes(
    mean: np.ndarray, cov: np.ndarray, n: int, seed: int, temperature: float = 1.0
) -> Tensor:
    """``n`` draws (n, d) float32 from N(mean, T^2 cov), through its Cholesky factor (T: the
    code temperature, the standard-normal draws scaled)."""
    chol = np.linalg.cholesky(cov + 1e-9 * np.eye(len(mean)))
    z = np.random.default_rng(seed).standard_normal((n, len(mean)))
    z = z if temperature == 1.0 else temperature * z
    return torch.from_numpy(mean + z @ chol.T).float()


def fit_flow_prior(run_dir: Path, flow: FlowConfig, seed: int) -> tuple[Prior, float]:
    """A code model: a flow T with T#N(0, I) fitted by maximum likelihood to the training codes
    of encoder run ``run_dir``, the library side of ``dimgen flow RUN --to-codes --config``
    (``flow``'s size and steps, seed ``seed``), and its held-out gain over the prior (nats per
    code, ``code_model_gain_nats``)."""
    run = transform_codes(run_dir, to_codes=True, config=replace(flow, seed=seed), progress=False)
    return run.prior, float(run.metrics["code_model_gain_nats"])


def flow_codes(prior: Prior, n: int, seed: int, temperature: float = 1.0) -> Tensor:
    """``n`` codes (n, d) float32 drawn from the code model: N(0, T^2 I) draws pushed through T
    (what ``dimgen sample --unconditional --prior --temperature`` draws from a ``--to-codes``
    flow run)."""
    return prior.sample(n, seed=seed, from_model=True, temperature=temperature).float()


# -- one seed ---------------------------------------------------------------------------------


@dataclass
class Controls:
    """The trained parts of one seed and a sampler per route."""

    samplers: dict[str, Sampler]
    gans: dict[str, GAN]
    encoders: dict[str, dict[str, Any]]
    rcg_moments: tuple[np.ndarray, np.ndarray]
    gan_seconds: dict[str, float]
    fitted_moments: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros((0, 0)))


def _generate(gan: GAN, codes: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    return gan.generate(codes, seed=seed), codes


def train_codes_of(run_dir: Path) -> np.ndarray:
    """The training-split codes (n, d) an encoder run wrote to its ``codes.npz``."""
    codes = np.load(run_dir / "codes.npz")
    return codes["codes"][codes["split"] == "train"]


def build_controls(
    enc_cfg: EncoderConfig,
    gan_cfg: GANConfig,
    work: Path,
    *,
    routes: tuple[str, ...] = ROUTES,
    flow: FlowConfig | None = None,
    data: Dataset | None = None,
    mixture_components: int = 50,
) -> Controls:
    """Train the encoders and GANs of one seed (``enc_cfg.seed`` / ``gan_cfg.seed``) in ``work``
    and return a sampler per route in ``routes``; the code models of the ``*-flow`` routes are
    fitted with ``flow`` (default: ``FlowConfig()``, the ``dimgen flow`` defaults), those of the
    ``*-mixture`` routes are ``mixture_components``-Gaussian mixtures."""
    flow = flow if flow is not None else FlowConfig()
    need_noisy = any(r in routes for r in ("conditional", "prior", "no-encoder", "noisy-codes",
                                            "fitted-gaussian", "fitted-flow", "fitted-mixture"))  # fmt: skip
    need_rcg = any(r.startswith("rcg") for r in routes)
    encoders: dict[str, dict[str, Any]] = {}
    enc_dirs: dict[str, Path] = {}
    for name, sigma, needed in (("noisy", enc_cfg.sigma, need_noisy),
                                ("noise-free", NOISE_FREE_SIGMA, need_rcg)):  # fmt: skip
        if not needed:
            continue
        out = work / f"encoder-{name}"
        t0 = time.process_time()
        run = train_encoder(replace(enc_cfg, sigma=sigma), out)
        m = run.metrics
        encoders[name] = {"sigma": sigma, "cpu_seconds": time.process_time() - t0,
                          "knn_acc": m.get("knn_acc"), "mi_nats": m["mi_lower_bound_nats"],
                          "capacity_nats": m["capacity_nats"]}  # fmt: skip
        enc_dirs[name] = out
    samplers: dict[str, Sampler] = {}
    seconds: dict[str, float] = {}
    rcg_moments = fitted_moments = (np.zeros(0), np.zeros((0, 0)))
    trained: dict[tuple[str, ...], GAN] = {}  # the routes each GAN serves

    def gan_on(encoder: str, codes: str = "clean", **changes: Any) -> GAN:
        t0 = time.process_time()
        cfg = replace(gan_cfg, encoder_run=str(enc_dirs[encoder]), **changes)
        gan = train_control_gan(cfg, codes, enc_cfg.sigma)
        seconds[f"{encoder}/{codes}"] = time.process_time() - t0
        return gan

    s = gan_cfg.seed

    def code_model_routes(g: GAN, encoder: str, gaussian: str, flow_route: str, mixture_route: str,
                          offsets: tuple[int, int, int], seconds_key: str) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Routes ``gaussian`` / ``flow_route`` / ``mixture_route``: G fed codes from a Gaussian /
        a flow / a Gaussian mixture (code models) fitted to ``encoder``'s training codes, each
        with its own noise-seed offset; returns the Gaussian's moments."""
        mean, cov = moments = fit_gaussian(train_codes_of(enc_dirs[encoder]))
        samplers[gaussian] = lambda x, seed, temp=1.0: _generate(
            g, gaussian_codes(mean, cov, len(x), seed + offsets[0], temp), seed
        )
        if flow_route in routes:
            t0 = time.process_time()
            prior, gain = fit_flow_prior(enc_dirs[encoder], flow, s)
            encoders[encoder]["code_model_gain_nats"] = gain
            seconds[seconds_key] = time.process_time() - t0
            samplers[flow_route] = lambda x, seed, temp=1.0: _generate(
                g, flow_codes(prior, len(x), seed + offsets[1], temp), seed
            )
        if mixture_route in routes:
            t0 = time.process_time()
            mix, mix_gain = fit_flow_prior(
                enc_dirs[encoder], FlowConfig(method="gmm", components=mixture_components), s
            )
            encoders[encoder]["mixture_gain_nats"] = mix_gain
            seconds[f"{seconds_key}-mixture"] = time.process_time() - t0
            samplers[mixture_route] = lambda x, seed, temp=1.0: _generate(
                g, flow_codes(mix, len(x), seed + offsets[2], temp), seed
            )
        return moments

    fitted = ("conditional", "prior", "fitted-gaussian", "fitted-flow", "fitted-mixture")
    if any(r in routes for r in fitted):
        g = trained[fitted] = gan_on("noisy")
        samplers["conditional"] = lambda x, seed, temp=1.0, g=g: g.sample_conditional(x, seed=seed)
        samplers["prior"] = lambda x, seed, temp=1.0, g=g: g.sample_unconditional(
            len(x), seed=seed, temperature=temp
        )
        if any(r in routes for r in fitted[2:]):
            fitted_moments = code_model_routes(g, "noisy", "fitted-gaussian", "fitted-flow",
                                               "fitted-mixture", (19, 23, 29), "fitted-flow")  # fmt: skip
    if "no-encoder" in routes:
        d = Tokenizer.from_pretrained(enc_dirs["noisy"]).dim
        g0 = trained["no-encoder",] = gan_on("noisy", "none", noise_dim=gan_cfg.noise_dim + d)
        samplers["no-encoder"] = lambda x, seed, temp=1.0, g=g0, d=d: _generate(
            g, torch.zeros(len(x), d), seed
        )
    if need_rcg:
        g_rcg = trained["rcg-conditional", "rcg-gaussian", "rcg-flow", "rcg-mixture"] = gan_on(
            "noise-free"
        )
        samplers["rcg-conditional"] = lambda x, seed, temp=1.0, g=g_rcg: g.sample_conditional(
            x, seed=seed
        )
        rcg_moments = code_model_routes(g_rcg, "noise-free", "rcg-gaussian", "rcg-flow",
                                        "rcg-mixture", (11, 13, 31), "flow")  # fmt: skip
    if "noisy-codes" in routes:
        gn = trained["noisy-codes",] = gan_on("noisy", "noisy")
        scale = math.sqrt(1.0 + enc_cfg.sigma**2)
        samplers["noisy-codes"] = lambda x, seed, temp=1.0, g=gn: _generate(
            g, scale * temp * torch.randn(len(x), g.code_dim, generator=torch.Generator().manual_seed(seed + 17)), seed
        )  # fmt: skip
    gans = {r: g for r in routes for k, g in trained.items() if r in k}
    return Controls({r: samplers[r] for r in routes}, gans, encoders, rcg_moments, seconds,
                    fitted_moments)  # fmt: skip


# -- metrics ----------------------------------------------------------------------------------


@dataclass
class Reference:
    """The held-out images, their labels and the reference classifier they are scored with."""

    x: np.ndarray
    y: np.ndarray | None
    clf_path: Path
    name: str

    def __post_init__(self) -> None:
        self.clf, _ = load_classifier(self.clf_path)
        self.features, _ = classifier_outputs(self.clf, self.x)


def score(images: Tensor | np.ndarray, ref: Reference, seed: int) -> dict[str, float]:
    """The benchmark's metrics of ``images`` against the held-out images of ``ref``."""
    feats, probs = classifier_outputs(ref.clf, images)
    fid = fidelity_metrics(ref.x, images, ref.clf_path, ref.name, seed=seed)[FID_CLASSIFIER]
    out = {"fid": fid, **precision_recall(ref.features, feats, PR_K)}
    out["confident"] = 100.0 * float((probs.max(1).values > CONFIDENT).float().mean())
    if ref.y is not None:
        h = class_histogram_tv(probs.argmax(1).numpy(), ref.y, ref.clf.n_classes)
        out["class_tv"], out["classes"] = h["tv"], float(h["coverage"])
    return out


# -- the benchmark ----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    enc_path, gan_path = PRESETS[(args.data, args.preset)]
    enc_cfg = load_config(ROOT / (args.encoder_config or enc_path), EncoderConfig)
    gan_cfg = load_config(ROOT / (args.gan_config or gan_path), GANConfig)
    enc_cfg = replace(enc_cfg, data=args.data, data_root=args.data_root, epochs=args.epochs,
                      device=args.device, threads=1)  # fmt: skip
    flow_cfg = flow_config(args)
    gan_cfg = replace(gan_cfg, steps=args.steps, batch_size=args.batch_size, device=args.device,
                      eval_samples=0, sample_every=0, checkpoint_every=0, threads=1)  # fmt: skip
    ds = load_data(enc_cfg.data, enc_cfg.data_root, enc_cfg.test_fraction, enc_cfg.split_seed)
    x_all, y_all = ds.split("all")
    # the data set's cached reference classifier, the one train-gan with this config measures with
    ext = reference_extractor(x_all, y_all, enc_cfg.data, epochs=gan_cfg.classifier_epochs)
    rng = np.random.default_rng(0)
    n = min(args.n, len(ds.x_test))
    sel = np.sort(rng.choice(len(ds.x_test), n, replace=False))
    ref = Reference(ds.x_test[sel], None if ds.y_test is None else ds.y_test[sel], ext.path,
                    extractor_name(enc_cfg.data))  # fmt: skip
    x_real = ds.x_train[np.sort(rng.choice(len(ds.x_train), n, replace=False))]
    routes = tuple(r for r in ROUTES if r in args.routes.split(","))
    truncations = parse_truncations(args.truncations)
    temperatures = parse_temperatures(args.temperatures)
    rows: list[dict[str, Any]] = [
        {"route": "real", "seed": None, "truncation": None, "temperature": None,
         **score(x_real, ref, 0)}
    ]  # fmt: skip
    per_seed: list[dict[str, Any]] = []
    t_start = time.process_time()
    for seed in (int(s) for s in args.seeds.split(",")):
        t0 = time.process_time()
        with tempfile.TemporaryDirectory(prefix="gencontrols-") as tmp:
            ctl = build_controls(replace(enc_cfg, seed=seed), replace(gan_cfg, seed=seed),
                                 Path(tmp), routes=routes, flow=flow_cfg,
                                 mixture_components=args.mixture_components)  # fmt: skip
            # the same noise and code seeds at every level: paired
            for trunc, temp, route in scored(routes, truncations, temperatures):
                ctl.gans[route].truncation = trunc
                images, _ = ctl.samplers[route](ref.x, 1000 + seed, 1.0 if temp is None else temp)
                rows.append({"route": route, "seed": seed, "truncation": trunc,
                             "temperature": temp, **score(images, ref, seed)})  # fmt: skip
                print(_row_line(rows[-1]), file=sys.stderr, flush=True)
        per_seed.append({"seed": seed, "encoders": ctl.encoders, "gan_cpu_seconds": ctl.gan_seconds,
                         "cpu_seconds": time.process_time() - t0})  # fmt: skip
    summary = summarise(rows, routes, truncations, temperatures)
    return {
        "data": args.data, "preset": args.preset, "n_samples": n, "seeds": args.seeds,
        "gan_steps": gan_cfg.steps, "gan_batch": gan_cfg.batch_size, "gan_arch": gan_cfg.arch,
        "encoder_epochs": enc_cfg.epochs, "sigma": enc_cfg.sigma, "dim": enc_cfg.dim,
        "noise_free_sigma": NOISE_FREE_SIGMA, "flow_steps": flow_cfg.steps, "pr_k": PR_K,
        "flow": flow_fields(flow_cfg), "mixture_components": args.mixture_components,
        "confident_threshold": CONFIDENT, "reference_classifier_accuracy": ext.accuracy,
        "truncations": truncations, "temperatures": temperatures, "summary": summary, "rows": rows, "per_seed": per_seed,
        "cpu_seconds": time.process_time() - t_start, "machine": platform.platform(),
        "torch_threads": torch.get_num_threads(), "command": " ".join(sys.argv),
    }  # fmt: skip


def flow_config(args: argparse.Namespace) -> FlowConfig:
    """The code models' FlowConfig: ``--flow-config`` (or the defaults), ``--flow-steps`` over it."""
    cfg = load_config(ROOT / args.flow_config, FlowConfig) if args.flow_config else FlowConfig()
    return cfg if args.flow_steps is None else replace(cfg, steps=args.flow_steps)


def flow_fields(cfg: FlowConfig) -> dict[str, Any]:
    """The code-model settings a result records (and merged runs must share); not the seed."""
    return {k: v for k, v in to_dict(cfg).items() if k != "seed"}


def _parse_levels(
    text: str, what: str, domain: str, check: Callable[[float], float],
    key: Callable[[float | None], str], out: list[float | None],
) -> list[float | None]:  # fmt: skip
    """Append the comma-separated levels of ``text`` (numbers passed through ``check``, or
    ``none``) to ``out``; refuse a level outside ``domain`` and one whose summary key (``key``,
    6 digits) is already there. ``none`` is skipped where ``out`` starts with it (always scored)."""
    given = tuple(out)
    for tok in text.split(","):
        tok = tok.strip().lower()
        if tok == "none" and None in given:
            continue
        try:
            level = None if tok == "none" else check(float(tok))
        except (ValueError, ConfigError, OverflowError):
            raise ValueError(f"a {what} is {domain} or none, got {tok!r}") from None
        if key(level) in {key(o) for o in out}:  # the summary keys must differ
            raise ValueError(f"{what} {tok} is given twice (to 6 digits)")
        out.append(level)
    return out


def parse_truncations(text: str) -> list[float | None]:
    """``none,1,0.5`` -> [None, 1.0, 0.5]: the truncation levels of G's noise to score (BigGAN's
    truncation trick, :attr:`dimgen.gan.GAN.truncation`; ``none`` is plain N(0, I))."""
    from dimgen.gan.model import check_truncation

    return _parse_levels(text, "truncation", "a number > 0", check_truncation,
                         lambda t: route_key("", t), [])  # fmt: skip


def parse_temperatures(text: str) -> list[float | None]:
    """``0.9,0.8`` -> [None, 0.9, 0.8]: the code temperatures to also score the code-drawing
    routes at (:data:`DRAWS_CODES`), after ``None`` (T = 1, every route), which is always
    scored; ``none`` may be named, 1 (the same as none) may not."""
    from dimgen.config import MAX_TEMPERATURE, check_temperature

    domain = f"a number in (0, {MAX_TEMPERATURE:g}]"
    levels = _parse_levels(text, "temperature", domain, check_temperature,
                           lambda t: route_key("", None, t), [None])  # fmt: skip
    if 1.0 in levels:
        raise ValueError("temperature 1 is the baseline, scored as none")
    return levels


def scored(
    routes: tuple[str, ...],
    truncations: list[float | None],
    temperatures: list[float | None] = (None,),  # type: ignore[assignment]
) -> list[tuple[float | None, float | None, str]]:
    """(truncation, temperature, route) triples a seed is scored at: every route at every
    truncation, and at a temperature other than none only the routes that draw codes."""
    return [(t, temp, r) for t in truncations for temp in temperatures for r in routes
            if temp is None or r in DRAWS_CODES]  # fmt: skip


def route_key(route: str, truncation: float | None, temperature: float | None = None) -> str:
    """The summary's key of a route at a truncation level and code temperature: ``prior``,
    ``prior@t0.5`` (G's noise truncated), ``prior@T0.9`` (codes at temperature 0.9)."""
    key = route if truncation is None else f"{route}@t{truncation:g}"
    return key if temperature is None else f"{key}@T{temperature:g}"


def summarise(
    rows: list[dict[str, Any]],
    routes: tuple[str, ...],
    truncations: list[float | None] = (None,),  # type: ignore[assignment]
    temperatures: list[float | None] = (None,),  # type: ignore[assignment]
) -> dict[str, dict[str, Any]]:
    """Per route, truncation level, code temperature and metric: mean and sample std (ddof 1)
    over seeds, and the seed count; keyed by :func:`route_key`."""
    out: dict[str, dict[str, Any]] = {}
    keys = [(None, None, "real"), *scored(routes, truncations, temperatures)]
    for trunc, temp, route in keys:
        sel = [r for r in rows if r["route"] == route and r.get("truncation") == trunc
               and r.get("temperature") == temp]  # fmt: skip
        key = route_key(route, trunc, temp)
        out[key] = {"n_seeds": len(sel)}
        for m in METRICS:
            v = np.array([r[m] for r in sel if m in r], dtype=float)
            if len(v):
                out[key][m] = [float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0]
    return out


def _row_line(r: dict[str, Any]) -> str:
    vals = " ".join(f"{m}={r[m]:.3f}" for m in METRICS if m in r)
    return f"[seed {r['seed']}] {route_key(r['route'], r.get('truncation'), r.get('temperature'))}: {vals}"


def table(result: dict[str, Any]) -> str:
    """The markdown table: mean ± std over seeds per route."""
    fmt = {"fid": "{:.1f}", "precision": "{:.3f}", "recall": "{:.3f}", "confident": "{:.1f}",
           "class_tv": "{:.3f}", "classes": "{:.1f}"}  # fmt: skip
    head = ("route", "FID", "precision", "recall", "confident %", "class TV", "classes")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for route, s in result["summary"].items():
        cells = [route]
        for m in METRICS:
            if m not in s:
                cells.append("-")
            elif route == "real" or s["n_seeds"] < 2:
                cells.append(fmt[m].format(s[m][0]))
            else:
                cells.append(f"{fmt[m].format(s[m][0])} ± {fmt[m].format(s[m][1])}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def encoder_table(result: dict[str, Any]) -> str:
    """The encoders behind the routes, mean over seeds: 5-NN accuracy, MI bound, CPU time."""
    lines = [
        "| encoder | sigma | 5-NN | MI bound (nats) | capacity | CPU s |",
        "|---|---|---|---|---|---|",
    ]
    names = sorted({k for p in result["per_seed"] for k in p["encoders"]}, reverse=True)
    for name in names:
        e = [p["encoders"][name] for p in result["per_seed"] if name in p["encoders"]]
        knn = np.mean([v["knn_acc"] for v in e if v["knn_acc"] is not None] or [np.nan])
        lines.append(f"| {name} | {e[0]['sigma']:g} | {knn:.3f} | "
                     f"{np.mean([v['mi_nats'] for v in e]):.3f} | {e[0]['capacity_nats']:.2f} | "
                     f"{np.mean([v['cpu_seconds'] for v in e]):.1f} |")  # fmt: skip
    return "\n".join(lines)


#: What runs must share to be merged into one table: same data, budget, routes and levels.
MERGE_KEYS = ("data", "preset", "n_samples", "gan_steps", "gan_batch", "gan_arch",
              "encoder_epochs", "sigma", "dim", "flow_steps", "flow", "truncations",
              "temperatures")  # fmt: skip


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from runs of the same benchmark on different seeds (e.g. one process per
    seed): their rows and per-seed records joined, the summary recomputed.

    Raises ValueError if the runs differ in a :data:`MERGE_KEYS` field or in their routes, or
    share a seed.
    """
    first = results[0]
    for r in results[1:]:
        diff = [k for k in MERGE_KEYS if r.get(k) != first.get(k)]
        if diff:
            raise ValueError(f"runs differ in {', '.join(diff)}: only seeds may differ")
    seeds = [p["seed"] for r in results for p in r["per_seed"]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"a seed appears in two runs: {sorted(seeds)}")

    def routes_of(r: dict[str, Any]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(row["route"] for row in r["rows"] if row["seed"] is not None))

    routes = routes_of(first)
    for r in results[1:]:
        if set(routes_of(r)) != set(routes):
            raise ValueError(f"runs differ in routes ({', '.join(routes)} against "
                             f"{', '.join(routes_of(r))}): only seeds may differ")  # fmt: skip
    rows = [first["rows"][0]] + [
        row for r in results for row in r["rows"] if row["seed"] is not None
    ]
    truncs = first.get("truncations", [None])
    temps = first.get("temperatures", [None])
    return {**first, "seeds": ",".join(str(s) for s in seeds), "rows": rows,
            "per_seed": [p for r in results for p in r["per_seed"]],
            "summary": summarise(rows, routes, truncs, temps),
            "cpu_seconds": sum(r["cpu_seconds"] for r in results),
            "command": " ; ".join(r["command"] for r in results)}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--data", choices=("digits", "mnist"), default="digits")
    p.add_argument("--preset", choices=("default", "cpu", "gpu"), default=None,
                   help="config pair: digits default; mnist cpu (configs/mnist-cpu.yaml + "
                   "mnist-gan-cpu.yaml) or gpu")  # fmt: skip
    p.add_argument("--encoder-config", help="encoder config (overrides the preset's)")
    p.add_argument("--gan-config", help="GAN config (overrides the preset's)")
    p.add_argument("--data-root", help="folder for torchvision data (default $DIMGEN_DATA)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--steps", type=int, help="GAN generator steps, every route (default: preset)")
    p.add_argument("--batch-size", type=int, help="GAN batch, every route (default: preset)")
    p.add_argument("--epochs", type=int, help="encoder epochs, both encoders (default: preset)")
    p.add_argument("-n", "--n", type=int, default=2000,
                   help="samples per route, at most the held-out images (default 2000)")  # fmt: skip
    p.add_argument("--flow-config", help="FlowConfig YAML of the code models (the *-flow routes), "
                   "e.g. configs/code-model.yaml (default: dimgen flow's defaults)")  # fmt: skip
    p.add_argument("--flow-steps", type=int, help="code-model training steps (default: the "
                   "flow config's, 400 without one)")  # fmt: skip
    p.add_argument("--mixture-components", type=int, default=50,
                   help="Gaussians of the *-mixture routes' code models (default 50)")  # fmt: skip
    p.add_argument("--routes", default=",".join(ROUTES), help="comma-separated subset of routes")
    p.add_argument(
        "--truncations",
        default="none",
        help="comma-separated truncation levels of G's noise to score every route at "
        "(BigGAN's truncation trick; 'none' is N(0, I)), e.g. none,1,0.5 (default none)",
    )
    p.add_argument(
        "--temperatures",
        default="none",
        help="comma-separated code temperatures T to also score the routes that draw codes at "
        "(their N(0, I) draws scaled by T, Glow's temperature), besides T = 1 (none, always "
        "scored, every route), e.g. 0.9,0.8 (default none)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="write the result as JSON here")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="print one table from the --out files of runs on other seeds (same "
                   "options otherwise), train nothing")  # fmt: skip
    args = p.parse_args(argv)
    args.preset = args.preset or ("default" if args.data == "digits" else "cpu")
    if (args.data, args.preset) not in PRESETS:
        p.error(f"no preset {args.preset!r} for {args.data}: choose from "
                f"{', '.join(pr for d, pr in PRESETS if d == args.data)}")  # fmt: skip
    try:
        parse_truncations(args.truncations)
    except ValueError as exc:
        p.error(f"--truncations: {exc}")
    try:
        parse_temperatures(args.temperatures)
    except ValueError as exc:
        p.error(f"--temperatures: {exc}")
    try:
        flow_config(args)
    except (ConfigError, DataError, OSError) as exc:
        p.error(f"--flow-config / --flow-steps: {exc}")
    if args.mixture_components < 1:
        p.error(f"--mixture-components must be >= 1, got {args.mixture_components}")
    bad = set(args.routes.split(",")) - set(ROUTES)
    if bad:
        p.error(f"unknown route(s) {', '.join(sorted(bad))}; known: {', '.join(ROUTES)}")
    return args


def mnist_cpu_minutes(seeds: int, epochs: int | None, steps: int | None, routes: int) -> float:
    """Estimated CPU minutes of an MNIST CPU-preset run: two encoders and up to four GANs per
    seed (routes 1-2 share a GAN, as do 4-5), scaled from :data:`MNIST_CPU_MINUTES`."""
    m = MNIST_CPU_MINUTES
    enc = m["encoder"] * (epochs or m["encoder_epochs"]) / m["encoder_epochs"]
    gan = m["gan"] * (steps or m["gan_steps"]) / m["gan_steps"]
    return seeds * (2 * enc + min(routes, 4) * gan)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.merge:
        try:
            result = merge([json.loads(Path(f).read_text()) for f in args.merge])
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            sys.exit(f"generation_controls.py: error: --merge: {exc}")
        report(result, args.out)
        return
    torch.set_num_threads(1)
    if (args.data, args.preset) == ("mnist", "cpu"):
        gan_of = {"conditional": 0, "prior": 0, "no-encoder": 1, "rcg-conditional": 2,
                  "rcg-gaussian": 2, "rcg-flow": 2, "noisy-codes": 3, "fitted-gaussian": 0,
                  "fitted-flow": 0, "fitted-mixture": 0, "rcg-mixture": 2}  # fmt: skip
        n_gans = len({gan_of[r] for r in args.routes.split(",")})  # was len(generator): TypeError
        est = mnist_cpu_minutes(len(args.seeds.split(",")), args.epochs, args.steps, n_gans)
        print(f"MNIST CPU presets: about {est:.0f} CPU minutes ({est / 60:.1f} h)", file=sys.stderr)
    report(run(args), args.out)


def report(result: dict[str, Any], out: str | None) -> None:
    """Print the result's tables; write it as JSON to ``out`` if given."""
    print(f"\n{result['data']} ({result['preset']} preset): {result['n_samples']} samples per "
          f"route, GAN {result['gan_arch']} {result['gan_steps']} steps batch "
          f"{result['gan_batch']}, seeds {result['seeds']}; {result['cpu_seconds'] / 60:.1f} "
          "CPU min\n")  # fmt: skip
    print(table(result))
    print()
    print(encoder_table(result))
    if out:
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
