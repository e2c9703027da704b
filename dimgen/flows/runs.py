"""``transform_codes``: map an encoder run's codes to a new prior and write a flow run folder.

The KL report puts side by side:

- the **bound** carried from the encoder run (``kl_upper_bound_nats``): for any measurable T,
  KL(T#P || T#Q) <= KL(P || Q) (data processing). The encoder's capacity - MI bounds the *noisy*
  codes, KL(codes + Z || prior * noise), so it bounds KL(T#(codes + Z) || T#(prior * noise));
  the clean codes can be further from the prior (the kNN estimates measure them directly);
- **estimates** (consistent, not bounds): a kNN estimate of KL(T#codes || target) in the new
  space, a kNN estimate of KL(codes || prior) in the encoder's space (the quantity the bound
  covers), and for flows KL(target || T#prior) from held-out log-likelihoods.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import validate
from ..errors import ConfigError, DataError, RunFolderError
from ..io import (
    artefact_digest,
    fill_folder,
    read_run,
    save_npz,
    save_weights,
    write_json,
    write_text,
)
from ..metric_keys import KL_BOUND, kl_upper_bound
from ..training.run_folder import RunFolder
from .config import FlowConfig, check_method_target
from .kl import knn_kl_divergence
from .mixture import WEIGHTS as MIXTURE_WEIGHTS
from .mixture import MixtureCodeModel, fit_mixture
from .prior import Prior, build_map
from .targets import SampleTarget, Target, load_target_samples, make_target, source_law

#: What the carried KL bound covers (``kl_bound_applies_to``): the noisy codes, mapped by T.
NOISY_SCOPE = "KL(T#(codes + Z) || T#(prior * noise))"

__all__ = ["NOISY_SCOPE", "FlowRun", "flow_report", "read_codes", "transform_codes"]

WEIGHTS = "flow.safetensors"
#: Draws of a mixture code model (and of its prior) its kNN KL estimates compare codes with.
KNN_REFERENCE = 20_000


@dataclass
class FlowRun:
    """Result of :func:`transform_codes`: the prior, transformed codes, metrics, run folder."""

    prior: Prior | MixtureCodeModel
    codes: np.ndarray
    labels: np.ndarray | None
    split: np.ndarray
    metrics: dict[str, Any]
    path: Path | None = None


def read_codes(run_dir: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(codes (n, d) float64, labels or None, split) from ``<run>/codes.npz``."""
    from ..data.npz import read_codes as read_codes_file

    codes, labels, split = read_codes_file(run_dir / "codes.npz", error=RunFolderError)
    return codes, labels, split if split is not None else np.array(["all"] * len(codes))


def _read_bound(run_dir: Path) -> dict[str, Any]:
    from ..io import read_json

    path = run_dir / "metrics.json"
    try:
        m = read_json(path)
        bound = kl_upper_bound(m)
        if bound is None:
            raise KeyError(KL_BOUND)
        return {k: m[k] for k in ("prior", "capacity_nats", "mi_lower_bound_nats")} | {
            KL_BOUND: bound, "mi_lower_bound_stderr": m.get("mi_lower_bound_stderr")}  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        raise RunFolderError(
            f"{path} is missing or lacks the KL bound of the encoder run"
        ) from None


def _check_source_support(codes: np.ndarray, prior: str) -> None:
    if not np.isfinite(codes).all():
        rows = np.flatnonzero(~np.isfinite(codes).all(1))[:10]
        raise DataError(f"codes contain NaN or Inf (rows {', '.join(map(str, rows))})")
    lo, hi = source_law(prior).support()
    bad = (codes < lo) | (codes > hi)
    if bad.any():
        raise DataError(
            f"{int(bad.sum())} code value(s) lie outside [{lo:g}, {hi:g}], the support of the "
            f"{prior} prior the transform needs (min {codes.min():.4g}, max {codes.max():.4g})"
        )


def _target_samples(target: Target, cfg: FlowConfig, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) target samples: fresh draws, or a seeded split of the given samples.

    The training part is empty when ``train`` is false (exact maps need only references).
    """
    if isinstance(target, SampleTarget):
        y = target.samples
        n_test = max(round(cfg.test_fraction * len(y)), 2 * cfg.knn_k + 2)
        if len(y) - n_test < 2 * cfg.knn_k + 2:
            raise DataError(f"{len(y)} target samples are too few to hold out {n_test} of them")
        perm = np.random.default_rng(cfg.seed).permutation(len(y))
        return y[perm[n_test:]], y[perm[:n_test]]
    y_train = target.sample(cfg.n_train, cfg.seed) if train else np.zeros((0, target.dim))
    return y_train, target.sample(cfg.n_test, cfg.seed + 1)


def transform_codes(
    source: str | Path,
    to: str | None = None,
    *,
    to_samples: str | Path | None = None,
    to_codes: bool = False,
    config: FlowConfig | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> FlowRun:
    """Map the codes of encoder run ``source`` to the prior ``to`` (or to ``to_samples``), or
    (``to_codes``) fit a *code model*: a flow T with T#prior ~ the run's own training codes.

    Exact elementwise map for i.i.d. 1-D laws (no training), a trained MAF/RQS flow otherwise;
    reports the carried KL bound beside kNN and likelihood estimates; writes a flow run folder
    to ``out`` if given (``codes.npz``, ``flow.safetensors``, ``metrics.json``, ``report.md``).
    ``progress`` (default True, as the CLI) shows a bar over the flow's training steps
    (stderr); ``progress=False`` is silent.

    A code model (the RCG route, Li et al. 2024) is for codes that miss their prior: ``dimgen
    sample --unconditional --prior`` on it draws T(z), z ~ prior, which the GAN was trained on,
    instead of prior draws. Its metrics add ``code_model_gain_nats``: the mean log-density of
    held-out codes under T#prior minus under the prior (nats per code; > 0: the flow fits the
    codes better than the prior does; it estimates KL(codes || prior) - KL(codes || T#prior)).
    With ``method="gmm"`` the code model is a Gaussian mixture of ``config.components``
    full-covariance Gaussians instead of a flow (:mod:`dimgen.flows.mixture`: no mass between
    class blobs), written as ``mixture.safetensors``; ``run.prior`` is then a
    :class:`~dimgen.flows.mixture.MixtureCodeModel`.

    Raises:
        ConfigError: not exactly one of ``to``, ``to_samples``, ``to_codes``; ``to_codes`` not
            a bool; ``gmm`` without ``to_codes``. DataError: fewer training codes than 20 or than the mixture's components.

    Example:
        >>> run = transform_codes("runs/digits", "mixture:8", out="runs/digits-mix")  # doctest: +SKIP
        >>> run.metrics["kl_upper_bound_nats"], run.metrics["kl_estimate_knn_nats"]  # doctest: +SKIP
    """
    cfg = validate(config if config is not None else FlowConfig(), FlowConfig)
    if not isinstance(to_codes, bool):  # "no" would otherwise be read as True
        raise ConfigError(f"to_codes must be True or False, got {to_codes!r}")
    if (to is not None) + (to_samples is not None) + bool(to_codes) != 1:
        raise ConfigError(
            "give exactly one target: a law (--to), a samples file (--to-samples) or the run's "
            "own codes (--to-codes)"
        )
    check_method_target(cfg, to_codes)
    if out is None:
        return _transform(source, to, to_samples, cfg, None, progress, to_codes)
    folder = RunFolder(out)
    with folder.lock():  # one writer for the life of the command
        folder.check(resume=False)
        return _transform(source, to, to_samples, cfg, folder.path, progress, to_codes)


def _transform(
    source: str | Path,
    to: str | None,
    to_samples: str | Path | None,
    cfg: FlowConfig,
    out_dir: Path | None,
    progress: bool = False,
    to_codes: bool = False,
) -> FlowRun:
    run_dir, record = read_run(source, "encoder")
    codes, labels, split = read_codes(run_dir)
    src = _read_bound(run_dir)
    prior, dim = str(src["prior"]), codes.shape[1]
    _check_source_support(codes, prior)
    if to_codes:
        target: Target = _own_codes(codes, split, run_dir)
    elif to is not None:
        target = make_target(to, dim)
    else:
        target = load_target_samples(to_samples, dim)  # type: ignore[arg-type]

    method = cfg.method
    if method == "auto":
        method = "exact" if target.law is not None else "rqs"
    if method == "exact" and target.law is None:
        raise ConfigError(
            f"{target.spec} is not a product of 1-D laws, so no exact elementwise map reaches it; "
            "use --method rqs or maf"
        )
    spec: dict[str, Any] = {"dim": dim, "source_prior": prior, "target": target.spec,
                            "method": method, "source_run": str(run_dir.resolve())}  # fmt: skip
    if to_codes:  # and which encoder's codes: a GAN on another encoder is refused at sampling
        spec["code_model"] = True
        spec["source_encoder_sha256"] = artefact_digest(run_dir, "encoder.safetensors", record)
    if method == "gmm":
        return _mixture_code_model(codes, labels, split, target, src, cfg, spec, out_dir)
    y_train, y_test = _target_samples(target, cfg, train=method != "exact")
    fit: dict[str, Any] = {}
    flow = None
    if method != "exact":
        from .backend import fit_flow

        flow, fit = fit_flow(y_train, y_test, cfg, method, progress=progress)
        spec["weights"] = WEIGHTS
        spec["arch"] = flow.arch
    t_map = time.perf_counter()
    prior_obj = Prior(build_map(spec, flow), prior, None if isinstance(target, SampleTarget) else target,
                      spec, out_dir)  # fmt: skip
    new_codes = prior_obj.forward(codes).numpy()
    if not np.isfinite(new_codes).all():
        raise DataError("some codes map to non-finite values in the new prior")
    back = prior_obj.to_source(new_codes, dtype=torch.float64).numpy()
    map_seconds = time.perf_counter() - t_map

    metrics = _kl_report(
        codes, new_codes, split, y_test, target, prior, src, fit, method, cfg, prior_obj
    )
    metrics.update(
        dim=dim, source_prior=prior, target=target.spec, method=method,
        source_run=str(run_dir.resolve()), round_trip_max_abs_error=float(np.abs(back - codes).max()),
        map_seconds=map_seconds, n_codes=len(codes),
    )  # fmt: skip
    if flow is not None:
        metrics["arch"] = flow.arch
        metrics["n_target_train"], metrics["n_target_test"] = len(y_train), len(y_test)
    if to_codes:
        metrics["code_model"] = True
        gain, on = _code_model_gain(prior_obj, codes, split, prior)
        metrics["code_model_gain_nats"], metrics["code_model_gain_codes"] = gain, on
    if prior == "uniform":
        from .transforms import UNIFORM_FLOOR

        p = np.minimum(codes, 1 - codes)
        metrics["n_clamped"] = int((p < UNIFORM_FLOOR).sum())
    run = FlowRun(prior_obj, new_codes, labels, split, metrics, out_dir)
    if out_dir is not None:
        _write(run, out_dir, spec, flow, y_test)
    return run


def _kl_report(
    codes: np.ndarray, new_codes: np.ndarray, split: np.ndarray, y_test: np.ndarray,
    target: Target, prior: str, src: dict[str, Any], fit: dict[str, Any], method: str,
    cfg: FlowConfig, prior_obj: Prior,
) -> dict[str, Any]:  # fmt: skip
    test = split == "test"
    if test.sum() <= cfg.knn_k + 1:  # no held-out split recorded: use every code
        test = np.ones(len(codes), dtype=bool)
    k = cfg.knn_k
    bound = float(src[KL_BOUND])
    m: dict[str, Any] = {
        KL_BOUND: bound,
        "kl_bound_applies_to": NOISY_SCOPE,
        "encoder_capacity_nats": src["capacity_nats"],
        "encoder_mi_lower_bound_nats": src["mi_lower_bound_nats"],
        "encoder_mi_lower_bound_stderr": src["mi_lower_bound_stderr"],
        "kl_estimate_knn_nats": knn_kl_divergence(new_codes[test], y_test, k),
        "kl_estimate_knn_source_nats": knn_kl_divergence(
            codes[test], _prior_samples(prior, len(y_test), codes.shape[1], cfg.seed + 2), k
        ),
        "knn_k": k,
        "n_codes_evaluated": int(test.sum()),
        "n_reference": len(y_test),
    }  # fmt: skip
    ent = target.entropy()
    m["target_entropy_nats"], m["target_entropy_stderr"] = ent.nats, ent.stderr
    m["target_entropy_method"] = ent.method
    if method == "exact":
        m["kl_estimate_fit_nats"] = 0.0  # T#prior equals the target by construction
        fit_for_tv = 0.0
    else:
        m.update(fit)
        y = torch.as_tensor(y_test, dtype=torch.float64)
        log_q = prior_obj.log_prob(y).numpy()
        if target.has_density:
            diff = target.log_prob(y_test) - log_q  # paired: far less noisy than NLL - H
            m["kl_estimate_fit_nats"] = float(diff.mean())
            m["kl_estimate_fit_stderr"] = float(diff.std(ddof=1) / math.sqrt(len(diff)))
        else:
            m["kl_estimate_fit_nats"] = fit["heldout_nll_nats"] - ent.nats
            m["kl_estimate_fit_stderr"] = float("nan")
        fit_for_tv = max(m["kl_estimate_fit_nats"], 0.0)
    # Pinsker, sqrt(KL / 2) per term; a total variation never exceeds 1.
    m["tv_bound_from_kl"] = min(1.0, math.sqrt(max(bound, 0.0) / 2) + math.sqrt(fit_for_tv / 2))
    return m


def _own_codes(codes: np.ndarray, split: np.ndarray, run_dir: Path) -> SampleTarget:
    """The run's training codes as a sample target (every code if no split was recorded).

    Raises:
        DataError: fewer than 20 distinct training codes (checked before any training).
    """
    train = split == "train"
    if not train.any():  # no split recorded: every code (the gain is then in-sample)
        train = np.ones(len(codes), dtype=bool)
    distinct = len(np.unique(codes[train], axis=0))
    if distinct < 20:
        raise DataError(
            f"{run_dir}/codes.npz: a code model needs at least 20 distinct training codes, "
            f"got {distinct}"
        )
    return SampleTarget(codes[train].astype(np.float64), f"{run_dir.name}/codes.npz[train]")


def _code_model_gain(
    prior_obj: Prior | MixtureCodeModel, codes: np.ndarray, split: np.ndarray, prior: str
) -> tuple[float, str]:
    """Mean over held-out codes of log q_T(c) - log p_prior(c), nats per code (a code model's
    gain over the prior; an estimate of KL(codes || prior) - KL(codes || T#prior)), and the
    codes it was measured on: ``held-out``, or ``in-sample`` where the run recorded no split."""
    test = split == "test"
    held_out = bool(test.any() and (split == "train").any())
    c = codes[test] if held_out else codes
    log_q = prior_obj.log_prob(torch.as_tensor(c, dtype=torch.float64)).numpy()
    log_p = source_law(prior).logpdf(np.asarray(c, dtype=np.float64)).sum(1)
    return float(np.mean(log_q - log_p)), "held-out" if held_out else "in-sample"


def _mixture_code_model(
    codes: np.ndarray, labels: np.ndarray | None, split: np.ndarray, target: Target,
    src: dict[str, Any], cfg: FlowConfig, spec: dict[str, Any], out_dir: Path | None,
) -> FlowRun:  # fmt: skip
    """``--to-codes --method gmm``: a Gaussian mixture fitted to the training codes (held-out
    part of them for its NLL), its gain over the prior on the run's held-out codes, kNN KL of
    those codes to the mixture's draws and to the prior's; the codes themselves are unchanged."""
    y_train, y_test = _target_samples(target, cfg, train=True)
    mixture, fit = fit_mixture(y_train, cfg.components, cfg.seed)
    spec.update(weights=MIXTURE_WEIGHTS, components=cfg.components)
    model = MixtureCodeModel(mixture, spec["source_prior"], spec, out_dir)
    prior, dim = spec["source_prior"], codes.shape[1]
    test = split == "test"
    if test.sum() <= cfg.knn_k + 1:  # no held-out split recorded: use every code
        test = np.ones(len(codes), dtype=bool)
    n_ref = max(len(y_test), KNN_REFERENCE)  # draws are free: a large reference, less kNN bias
    drawn = model.sample(n_ref, seed=cfg.seed + 3).numpy()
    nll = -mixture(torch.from_numpy(y_test)).numpy()
    k = cfg.knn_k
    m: dict[str, Any] = {
        KL_BOUND: float(src[KL_BOUND]),
        "kl_bound_applies_to": "KL(codes + Z || prior * noise)",
        "encoder_capacity_nats": src["capacity_nats"],
        "encoder_mi_lower_bound_nats": src["mi_lower_bound_nats"],
        "kl_estimate_knn_model_nats": knn_kl_divergence(codes[test], drawn, k),
        "kl_estimate_knn_source_nats": knn_kl_divergence(
            codes[test], _prior_samples(prior, n_ref, dim, cfg.seed + 2), k
        ),
        "knn_k": k, "n_codes_evaluated": int(test.sum()), "n_reference": n_ref,
        **fit,
        "heldout_nll_nats": float(nll.mean()),
        "heldout_nll_stderr": float(nll.std(ddof=1) / math.sqrt(len(nll))),
        "dim": dim, "source_prior": prior, "target": target.spec, "method": "gmm",
        "components": cfg.components, "source_run": spec["source_run"], "n_codes": len(codes),
        "n_target_train": len(y_train), "n_target_test": len(y_test), "code_model": True,
    }  # fmt: skip
    m["code_model_gain_nats"], m["code_model_gain_codes"] = _code_model_gain(
        model, codes, split, prior
    )
    run = FlowRun(model, codes, labels, split, m, out_dir)
    if out_dir is None:
        return run

    def fill(tmp: Path) -> None:
        from ..plots import plot_transformed

        arrays: dict[str, np.ndarray] = {"codes": codes, "split": split}
        if labels is not None:
            arrays["labels"] = labels
        save_npz(tmp / "codes.npz", **arrays)
        meta = {"kind": "mixture", "components": cfg.components, "dim": dim,
                "source_prior": prior, "source_run": spec["source_run"]}  # fmt: skip
        save_weights(tmp / MIXTURE_WEIGHTS, mixture.state_dict(), meta)
        write_json(tmp / "metrics.json", m)
        plot_transformed(codes[test], None if labels is None else labels[test], drawn,
                         tmp / "codes.png", title="held-out codes over the mixture's draws",
                         reference_label="mixture draws")  # fmt: skip
        write_text(tmp / "report.md", mixture_report(m))
        RunFolder(tmp).complete("flow", spec=spec)

    fill_folder(out_dir, fill, "the flow run")
    return run


def mixture_report(m: dict[str, Any]) -> str:
    """report.md of a ``gmm`` code model: the fit's estimates (no map, so no carried bound)."""
    return "\n".join(
        [
            "# dimgen code model: a Gaussian mixture",
            "",
            f"The training codes of `{m['source_run']}` ({m['source_prior']} prior, d = {m['dim']}) "
            f"modelled by {m['components']} full-covariance Gaussians (EM, {m['n_iter']} iterations, "
            f"{'converged' if m['converged'] else 'not converged'}; {m['train_seconds']:.1f} s), "
            f"fitted to {m['n_target_train']} codes, {m['n_target_test']} held back.",
            "",
            "| quantity | nats | kind | meaning |",
            "|---|---|---|---|",
            f"| gain over the prior | {m['code_model_gain_nats']:.4f} | estimate | mean log q(c) − log "
            f"prior(c) over {m['code_model_gain_codes']} codes: KL(codes ‖ prior) − KL(codes ‖ q) |",
            f"| held-out NLL | {m['heldout_nll_nats']:.4f} ± {m['heldout_nll_stderr']:.4f} | estimate | "
            "−E log q(c) of the held-back training codes |",
            f"| kNN, codes to the mixture | {m['kl_estimate_knn_model_nats']:.4f} | estimate | "
            f"KL(codes ‖ q), {m['n_codes_evaluated']} held-out codes vs {m['n_reference']} draws |",
            f"| kNN, codes to the prior | {m['kl_estimate_knn_source_nats']:.4f} | estimate | "
            "KL(codes ‖ prior) |",
            f"| encoder's bound | {m['kl_upper_bound_nats']:.4f} | **bound** | {m['kl_bound_applies_to']}, "
            "carried from the encoder run: about its noisy codes, not about this model |",
            "",
            "A mixture puts no mass between its components, where a flow (a continuous, invertible "
            "map of N(0, I)) leaves bridges between the codes' class blobs.",
            "",
            "![codes](codes.png)",
            "",
            "Use it: `dimgen sample GAN --unconditional --prior <this folder>` (add `--temperature T` "
            'to scale each component\'s spread), or `dimgen.flows.load_prior("<this folder>")'
            ".sample(n, seed)` for the codes.",
            "",
        ]
    )


def _prior_samples(prior: str, n: int, dim: int, seed: int) -> np.ndarray:
    return source_law(prior).sample((n, dim), np.random.default_rng(seed))


def _write(run: FlowRun, out: Path, spec: dict[str, Any], flow: Any, y_test: np.ndarray) -> None:
    """Write the flow run folder ``out`` whole (:func:`~dimgen.io.fill_folder`): an interrupted
    command leaves it as it was, never half-written."""
    fill_folder(out, lambda tmp: _write_files(run, tmp, spec, flow, y_test), "the flow run")


def _write_files(
    run: FlowRun, out: Path, spec: dict[str, Any], flow: Any, y_test: np.ndarray
) -> None:
    from ..plots import plot_transformed

    arrays: dict[str, np.ndarray] = {"codes": run.codes, "split": run.split}
    if run.labels is not None:
        arrays["labels"] = run.labels
    save_npz(out / "codes.npz", **arrays)
    if flow is not None:
        meta = {"kind": "flow", "arch": flow.arch, "source_prior": spec["source_prior"],
                "target": spec["target"], "source_run": spec["source_run"]}  # fmt: skip
        save_weights(out / WEIGHTS, flow.state_dict(), meta)
    write_json(out / "metrics.json", run.metrics)
    steps, nll = run.metrics.get("train_nll_steps"), run.metrics.get("train_nll_history")
    if flow is not None and steps and nll:  # the same log.csv / curves.png as every trainer
        from ..training.logs import CURVES, LOG, ScalarLog, plot_curves

        ScalarLog(out, "step", [{"step": s, "nll": v} for s, v in zip(steps, nll, strict=True)])
        plot_curves(out / LOG, out / CURVES)
    test = run.split == "test"
    if not test.any():
        test = np.ones(len(run.codes), dtype=bool)
    plot_transformed(run.codes[test], None if run.labels is None else run.labels[test], y_test,
                     out / "codes.png", title=f"held-out codes -> {spec['target']}")  # fmt: skip
    write_text(out / "report.md", flow_report(run.metrics))
    RunFolder(out).complete("flow", spec=spec)


def flow_report(m: dict[str, Any]) -> str:
    """A short human-readable account of a flow run, bound and estimates kept apart (report.md)."""
    exact = m["method"] == "exact"
    how = (
        "the exact elementwise map y = G⁻¹(F(x)) (F the prior's CDF, G the target's; no training)"
        if exact
        else f"a trained {m['method'].upper()} flow ({m['arch']['layers']} layers, width "
        f"{m['arch']['hidden']}; {m.get('train_seconds', 0):.1f} s)"
    )
    bound = kl_upper_bound(m)
    assert bound is not None
    lines = [
        "# dimgen flow run",
        "",
        f"Codes of `{m['source_run']}` ({m['source_prior']} prior, d = {m['dim']}) mapped to "
        f"`{m['target']}` by {how}.",
        "",
        "## KL: one bound, several estimates",
        "",
        "| quantity | nats | kind | meaning |",
        "|---|---|---|---|",
        f"| carried bound | {bound:.4f} | **bound** | {NOISY_SCOPE} <= KL(codes + Z ‖ prior * noise) "
        "<= capacity − MI of the encoder run (data processing): the *noisy* codes f(X) + Z, like "
        "the encoder's certificate; the clean codes can be further off (kNN rows) |",
        f"| kNN, new space | {m['kl_estimate_knn_nats']:.4f} | estimate | KL(T#codes ‖ target): "
        f"{m['n_codes_evaluated']} held-out codes vs {m['n_reference']} target samples (k = {m['knn_k']}) |",
        f"| kNN, encoder space | {m['kl_estimate_knn_source_nats']:.4f} | estimate | KL(codes ‖ prior), "
        "the quantity the bound covers |",
    ]
    if exact:
        lines.append(
            "| fit of T#prior to the target | 0 | exact | T#prior is the target by construction |"
        )
    else:
        se = m.get("kl_estimate_fit_stderr")
        pm = f" ± {se:.4f}" if se is not None and math.isfinite(se) else ""
        lines += [
            f"| fit of the flow | {m['kl_estimate_fit_nats']:.4f}{pm} | estimate | KL(target ‖ T#prior) "
            f"on {m['n_target_test']} held-out target samples |",
            f"| held-out NLL | {m['heldout_nll_nats']:.4f} ± {m['heldout_nll_stderr']:.4f} | estimate | "
            "−E log q(y) of held-out target samples under the flow |",
        ]
    ent_se = m["target_entropy_stderr"]
    ent_pm = (
        f" ± {ent_se:.4f}" if ent_se is not None and math.isfinite(ent_se) and ent_se > 0 else ""
    )
    lines += [
        f"| target entropy | {m['target_entropy_nats']:.4f}{ent_pm} | "
        f"{'exact' if ent_se == 0 else 'estimate'} | h(target), {m['target_entropy_method']} |",
        "",
        "Only the first row is a bound (up to the MI estimate's own error, ± "
        f"{m.get('encoder_mi_lower_bound_stderr') or 0:.4f}); kNN estimates are consistent but biased "
        "at small n and can be slightly negative.",
    ]
    lines.append(
        "Scope: like the encoder's certificate, the bound covers the *noisy* codes f(X) + Z "
        "(channel noise Z) against the prior convolved with the noise, mapped by T; by data "
        "processing the clean codes can be further from the prior, so for them read the kNN "
        "estimates and the tests of `dimgen evaluate`. By Pinsker the mapped noisy codes are "
        f"within total variation {m['tv_bound_from_kl']:.3f} of T#(prior * noise)"
        + ("." if exact else " plus the flow's own misfit (part bound, part estimate).")
    )
    if bound < 0:
        lines.append(
            "\n**Warning:** the carried bound is negative: the encoder's MI estimate exceeds its capacity."
        )
    if m.get("code_model"):
        lines += [
            "",
            "**A code model** (`--to-codes`): T#prior is fitted to the run's own training codes, "
            "so `dimgen sample GAN --unconditional --prior THIS_RUN` draws codes T(z), z ~ "
            f"{m['source_prior']}, that follow the codes the GAN was trained on. "
            f"{m.get('code_model_gain_codes', 'held-out').capitalize()} codes are "
            f"{m['code_model_gain_nats']:.3f} nats per code more likely under T#prior than under "
            "the prior (an estimate of KL(codes ‖ prior) − KL(codes ‖ T#prior)). The bound above "
            "and the kNN rows are about the map T of the codes, not about this use.",
        ]
    lines += [
        "",
        f"Round trip T⁻¹(T(codes)): max error {m['round_trip_max_abs_error']:.2e}."
        + (
            f" {m['n_clamped']} uniform code value(s) at the float32 limit of [0, 1] were clamped."
            if m.get("n_clamped")
            else ""
        ),
        "",
        "![codes](codes.png)",
        "",
        (
            'Use it: `dimgen.flows.load_prior("<this folder>").sample(n, seed, from_model=True)` '
            "draws codes for the encoder's generator (`dimgen sample GAN --unconditional --prior "
            "<this folder>`); `to_source` would map them back to prior draws."
            if m.get("code_model")
            else 'Use it: `dimgen.flows.load_prior("<this folder>")` gives `sample(n, seed)` in '
            "the new prior and `to_source(z)` back to encoder codes."
        ),
        "",
    ]
    if m.get("train_nll_history"):
        lines += ["The flow's training NLL per 50 steps (`log.csv`):", "",
                  "![training curves](curves.png)", ""]  # fmt: skip
    return "\n".join(lines)
