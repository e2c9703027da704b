"""Evaluate a run folder or a codes file and write the results: JSON, a readable report, plots.

``evaluate_run(run_dir)`` is the library behind ``dimgen evaluate RUN_DIR``: it tests the
held-out codes of an encoder run, writes ``evaluation.json`` (the full result), adds it to
``metrics.json`` under ``evaluation``, appends a diagnostics section to ``report.md`` and draws
``qq.png`` and ``codes.png``. Re-running replaces these, never appends twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, RunFolderError
from . import EvalConfig, Evaluation, evaluate, to_gaussian

__all__ = [
    "evaluate_file",
    "evaluate_run",
    "evaluation_markdown",
    "load_codes",
    "paper_line",
    "summary_lines",
    "write_outputs",
]


def load_codes(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Read ``codes`` and the optional ``labels`` and ``split`` arrays of a codes ``.npz``.

    The one codes loader (:func:`dimgen.data.npz.read_codes`); raises :class:`DataError`.
    """
    from ..data.npz import read_codes

    return read_codes(path)


def evaluate_run(
    run: str | Path,
    *,
    prior: str | None = None,
    write: bool = True,
    plots: bool = True,
    probes: bool = True,
    config: EvalConfig | None = None,
    progress: bool = False,
    **overrides: Any,
) -> Evaluation:
    """Evaluate the codes of a complete encoder run folder (held-out part) and write the results.

    A ``dimgen pretrain`` run folder works too: its ``codes.npz`` holds the probe split's
    embeddings after the channel's normalisation (Gaussian prior).

    Args:
        run: the run folder, or a path to one of its files.
        prior: if given, must match the run's prior (a guard against evaluating the wrong run).
        write: write ``evaluation.json``, ``metrics.json["evaluation"]`` and ``report.md``.
        plots: also draw ``qq.png`` and ``codes.png`` (only with ``write``).
        probes: train the downstream classifiers.
        config: :class:`EvalConfig`; ``overrides`` replace single fields.
        progress: one line per phase on stderr (``dimgen evaluate`` without ``--quiet``).
    """

    from ..io import read_run
    from ..parsing import read_json

    run_dir, _ = read_run(run, ("encoder", "pretrain"))
    metrics_path = run_dir / "metrics.json"
    metrics = read_json(metrics_path)
    if not isinstance(metrics, dict) or metrics.get("prior") not in ("gaussian", "uniform"):
        raise RunFolderError(f"{metrics_path} does not name the prior (gaussian or uniform)")
    if prior is not None and prior != metrics["prior"]:
        raise ConfigError(f"{run_dir} has a {metrics['prior']} prior, not {prior}")
    codes, labels, split = load_codes(run_dir / "codes.npz")
    ev = evaluate(
        codes,
        labels,
        metrics["prior"],
        split=split,
        training=metrics,
        probes=probes,
        config=config,
        progress=progress,
        **overrides,
    )
    if write:
        from ..io import folder_lock, refresh_digests

        with folder_lock(run_dir):  # one writer; run.json's digests follow the new artefacts
            write_outputs(ev, run_dir, codes, labels, split, plots=plots, run_metrics=metrics)
            refresh_digests(run_dir)
    return ev


def evaluate_file(
    path: str | Path,
    prior: str = "gaussian",
    *,
    out: str | Path | None = None,
    plots: bool = True,
    probes: bool = True,
    config: EvalConfig | None = None,
    progress: bool = False,
    **overrides: Any,
) -> Evaluation:
    """Evaluate any codes ``.npz`` (``codes``, optional ``labels``, ``split``); write to ``out``.
    ``progress``: one line per phase on stderr."""
    codes, labels, split = load_codes(path)
    ev = evaluate(codes, labels, prior, split=split, probes=probes, config=config,
                  progress=progress, **overrides)  # fmt: skip
    if out is not None:
        write_outputs(ev, Path(out), codes, labels, split, plots=plots)
    return ev


def write_outputs(
    ev: Evaluation,
    folder: Path,
    codes: np.ndarray,
    labels: np.ndarray | None,
    split: np.ndarray | None,
    *,
    plots: bool = True,
    run_metrics: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``evaluation.json``, the markdown and (optionally) the plots into ``folder``.

    The markdown replaces everything below a marker line in ``report.md`` (the training summary
    above it is kept; a new file gets a title). With ``run_metrics`` (an encoder run folder) the
    result is also stored in ``metrics.json`` under ``evaluation``.
    """
    from ..io import write_json, write_text

    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "evaluation.json", folder / "report.md"]
    result = ev.to_dict()
    write_json(folder / "evaluation.json", result)
    if plots:
        written += _plots(ev, folder, codes, labels, split)
    md = evaluation_markdown(ev, images=plots)
    if run_metrics is not None:
        base = {k: v for k, v in run_metrics.items() if k != "evaluation"}
        write_json(folder / "metrics.json", {**base, "evaluation": result})
        written.append(folder / "metrics.json")
    write_text(folder / "report.md", _merge_report(folder / "report.md", md))
    return written


_MARK = "<!-- dimgen evaluate: everything below is rewritten by each run -->"


def _merge_report(path: Path, section: str) -> str:
    """Keep what ``report.md`` holds above our marker (the training summary), replace the rest."""
    head = "# dimgen evaluate\n"
    if path.is_symlink():  # never read (or publish) a link's target
        raise RunFolderError(f"{path} is a symbolic link; dimgen never follows links it rewrites")
    if path.is_file():
        head = path.read_text().split(_MARK, 1)[0]
    return head.rstrip("\n") + "\n\n" + _MARK + "\n\n" + section


def _plots(
    ev: Evaluation,
    folder: Path,
    codes: np.ndarray,
    labels: np.ndarray | None,
    split: np.ndarray | None,
) -> list[Path]:
    from ..plots import plot_code_pairs, plot_qq

    x = np.asarray(codes, dtype=float)
    y = None if labels is None else np.asarray(labels)
    if split is not None:
        s = np.asarray(split).astype(str)
        if (s == "test").any() and (s == "train").any():
            x = x[s == "test"]
            y = None if y is None else y[s == "test"]
    z = to_gaussian(x) if ev.prior == "uniform" else x
    what = "Phi^-1(codes)" if ev.prior == "uniform" else "codes"
    plot_qq(
        z,
        folder / "qq.png",
        seed=ev.settings.get("seed", 0),
        title=f"QQ: random projections of {what} vs N(0, 1) ({ev.tested_on}, n = {ev.n})",
    )
    plot_code_pairs(
        x,
        y,
        folder / "codes.png",
        prior=ev.prior,
        title=f"{ev.tested_on}, {ev.prior} prior, d = {ev.dim}",
    )
    return [folder / "qq.png", folder / "codes.png"]


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.3g}" if p >= 1e-3 else f"{p:.1e}"


def _mark(p: float | None, alpha: float) -> str:
    if p is None:
        return "skipped"
    return "pass" if p >= alpha else "**FAIL**"


def paper_line(ev: Evaluation) -> str | None:
    """One line with the paper's Figure-1 statistic (mean p-values over small subsamples)."""
    pp = ev.paper
    if pp is None:
        return None
    hz = (
        "n/a (subsample <= d + 1, or d beyond float64)"
        if pp.henze_zirkler_p is None
        else f"{pp.henze_zirkler_p:.3f}"
    )
    return (
        f"  paper protocol (mean p over {pp.n_resamples} subsamples of {pp.subsample_size} codes "
        f"x {pp.n_projections} directions; descriptive, not a test): D'Agostino "
        f"{pp.dagostino_p:.3f}, Shapiro {pp.shapiro_p:.3f}, Henze-Zirkler {hz}"
    )


def summary_lines(ev: Evaluation) -> list[str]:
    """A few plain lines for the terminal; the paper's statistic leads with ``protocol: paper``."""
    nm, pm = ev.normality, ev.prior_match
    paper = paper_line(ev)
    lead = ev.settings.get("protocol") == "paper" and paper is not None
    lines = [paper.strip()] if lead and paper is not None else []
    lines += [
        f"verdict: codes are {ev.verdict}",
        f"  normality (shape):  {'pass' if nm.passes else 'FAIL'}  p = {_p(nm.p)}  "
        f"[D'Agostino {_p(nm.dagostino_p)}, Shapiro {_p(nm.shapiro_p)}, "
        f"Henze-Zirkler {_p(nm.henze_zirkler_p)}, marginals {_p(nm.marginal_p)}]",
        f"  matches the prior:  {'pass' if pm.passes else 'FAIL'}  p = {_p(pm.p)}  "
        f"[KS vs {pm.ks_reference} {_p(pm.ks_p)}, projections {_p(pm.projection_ks_p)}, "
        f"mean {_p(pm.mean_p)}, covariance {_p(pm.cov_p)}]",
    ]
    if paper is not None and not lead:
        lines.append(paper)
    if ev.probes is not None:
        pr = ev.probes
        lines.append(
            f"  probes (held-out accuracy): k-NN {pr.knn_acc:.3f}, naive Bayes {pr.gnb_acc:.3f}, "
            f"MLP {pr.mlp_acc:.3f}, linear {pr.linear_acc:.3f} (chance {pr.chance_acc:.3f})"
        )
    if ev.silhouette is not None:
        lines.append(f"  silhouette of the labels: {ev.silhouette:.3f}")
    if ev.training is not None:
        t = ev.training
        lines.append(
            f"  training: capacity {t.capacity_nats:.3f} nats, MI >= {t.mi_lower_bound_nats:.3f}, "
            f"KL <= {t.kl_upper_bound_nats:.3f}"
            + (
                f"; labels need log {ev.n_classes} = {ev.log_n_classes:.3f}"
                if ev.log_n_classes is not None
                else ""
            )
        )
    return lines


def evaluation_markdown(ev: Evaluation, images: bool = True) -> str:
    """The human-readable report section: a verdict per test at ``alpha``, with the numbers."""
    nm, pm, a = ev.normality, ev.prior_match, ev.alpha
    target = "N(0, I)" if ev.prior == "gaussian" else "U[0, 1]^d"
    z = "the codes" if ev.prior == "gaussian" else "z = Phi^-1(codes)"
    sub = (
        f"in each of {nm.n_subsamples} disjoint random subsamples of {nm.subsample_size}"
        if nm.n_subsamples > 1 or nm.subsample_size < nm.n
        else f"on all {nm.n} codes"
    )
    lines = [
        "## Distribution-matching diagnostics (`dimgen evaluate`)",
        "",
        f"Tested: {ev.tested_on} (n = {ev.n}), d = {ev.dim}, prior {target}; alpha = {a:g}; "
        f"seed {ev.settings.get('seed', 0)}.",
        "",
        f"**Verdict: {ev.verdict}.**",
        "",
        "A p-value is the probability of a deviation at least this large if the codes truly "
        f"followed the hypothesis; a test *passes* when p >= {a:g} (no evidence against it). "
        "Passing is not proof of a match, and with many codes even tiny, harmless deviations "
        "fail; the training certificate below bounds *how far* the codes can be from the prior.",
        "",
        "### 1. Is the shape Gaussian? (normality: any mean and covariance)",
        "",
        "| test | p-value | verdict |",
        "|---|---|---|",
        f"| D'Agostino-Pearson on {nm.n_projections} random orthonormal projections of the "
        f"whitened codes, {sub} | "
        f"{_p(nm.dagostino_p)} | {_mark(nm.dagostino_p, a)} |",
        f"| Shapiro-Wilk on the same projections and subsamples | {_p(nm.shapiro_p)} | "
        f"{_mark(nm.shapiro_p, a)} |",
        (
            f"| Henze-Zirkler, multivariate ({nm.hz_n} codes, HZ = {nm.henze_zirkler_stat:.4g}) | "
            if nm.henze_zirkler_stat is not None
            else "| Henze-Zirkler, multivariate (skipped: see notes) | "
        )
        + f"{_p(nm.henze_zirkler_p)} | {_mark(nm.henze_zirkler_p, a)} |",
        f"| D'Agostino-Pearson and Shapiro-Wilk on each coordinate | {_p(nm.marginal_p)} | "
        f"{_mark(nm.marginal_p, a)} |",
        f"| **normality, combined** | **{_p(nm.p)}** | {_mark(nm.p, a)} |",
        "",
        f"Tests run on {z}. Each p-value is read off a simulated null at this sample size: exact "
        "up to Monte Carlo error down to about 1e-3, approximate below (the simulated tail is "
        "extrapolated there, and may be up to ~2x too small); the "
        "many p-values of one test (projections x subsamples, coordinates) are independent under "
        "the prior, because the projections are orthonormal and the subsamples disjoint, and are "
        "merged by Fisher's method. Averaging p-values, as often done, would not be a valid test.",
        "",
        f"### 2. Is it the prior {target} itself? (location, scale, correlation)",
        "",
        "| test | p-value | verdict |",
        "|---|---|---|",
        f"| Kolmogorov-Smirnov of each coordinate vs {pm.ks_reference} | {_p(pm.ks_p)} | "
        f"{_mark(pm.ks_p, a)} |",
        f"| Kolmogorov-Smirnov of random projections of {z} vs N(0, 1) | "
        f"{_p(pm.projection_ks_p)} | {_mark(pm.projection_ks_p, a)} |",
        f"| mean = 0 (chi-square, n·|mean|² ~ chi²_d) | {_p(pm.mean_p)} | {_mark(pm.mean_p, a)} |",
        f"| covariance = I (likelihood ratio, simulated null) | {_p(pm.cov_p)} | "
        f"{_mark(pm.cov_p, a)} |",
        f"| **prior match, combined** | **{_p(pm.p)}** | {_mark(pm.p, a)} |",
        "",
        "A Gaussian with the wrong mean or covariance passes section 1 and fails section 2. "
        "Each *combined* row merges the tests above it by Simes' method (valid for dependent "
        "tests of the same codes); the overall verdict merges the two sections the same way: "
        f"p = min(2 min(p₁, p₂), max(p₁, p₂)) = {_p(ev.p)}.",
        "",
    ]
    k = min(ev.dim, 16)
    lines += [
        "Per coordinate" + (f" (first {k} of {ev.dim})" if k < ev.dim else "") + ":",
        "",
        f"| coordinate | mean | variance | KS vs {pm.ks_reference} p | D'Agostino p | Shapiro p |",
        "|---|---|---|---|---|---|",
    ]
    for i in range(k):
        lines.append(
            f"| {i + 1} | {pm.mean[i]:.3f} | {pm.var[i]:.3f} | {_p(pm.coordinate_ks_p[i])} | "
            f"{_p(nm.coordinate_dagostino_p[i])} | {_p(nm.coordinate_shapiro_p[i])} |"
        )
    if ev.prior == "uniform":
        lines.append("")
        lines.append("(mean and variance of z = Phi^-1(codes); the prior has 0 and 1.)")
    lines.append("")
    if ev.paper is not None:
        pp = ev.paper
        hz = "n/a" if pp.henze_zirkler_p is None else f"{pp.henze_zirkler_p:.3f}"
        hz_sd = "" if pp.henze_zirkler_p_sd is None else f" (sd {pp.henze_zirkler_p_sd:.3f})"
        lines += [
            "### The paper's Figure-1 statistic (descriptive, not a test)",
            "",
            f"Mean p-value over {pp.n_resamples} random subsamples of {pp.subsample_size} of the "
            f"{pp.n} tested codes (each drawn without replacement; subsamples overlap), "
            f"{pp.n_projections} random directions uniform on the sphere per subsample, scipy's "
            f"p-values as reported: D'Agostino-Pearson {pp.dagostino_p:.3f} "
            f"(sd {pp.dagostino_p_sd:.3f}), Shapiro-Wilk {pp.shapiro_p:.3f} "
            f"(sd {pp.shapiro_p_sd:.3f}), Henze-Zirkler {hz}{hz_sd}. Under the null the "
            "D'Agostino and Shapiro p-values are uniform, so their means are near 0.5 (Henze-"
            "Zirkler's approximate p-value is conservative on small subsamples at larger d: its "
            "mean on N(0, I) codes is about 0.5 at d = 2, 0.37 at d = 16, 0.25 at d = 32); clearly "
            "non-Gaussian codes drive them to 0. It is the paper's reading, put here for comparison with its Figure 1: a mean of "
            "p-values is not a p-value, and small subsamples have little power, so codes the "
            "calibrated tests above reject can score well here.",
            "",
        ]
    if ev.training is not None:
        t = ev.training
        se = f" ± {t.mi_lower_bound_stderr:.3f}" if t.mi_lower_bound_stderr is not None else ""
        lines += [
            "### 3. The certificate from training",
            "",
            "| capacity C | MI lower bound | KL upper bound | log(#classes) |",
            "|---|---|---|---|",
            f"| {t.capacity_nats:.3f} | {t.mi_lower_bound_nats:.3f}{se} | "
            f"{t.kl_upper_bound_nats:.3f} | "
            + ("n/a" if ev.log_n_classes is None else f"{ev.log_n_classes:.3f}")
            + " |",
            "",
            f"All in nats{'' if t.noise is None else f', channel {t.noise}'}. "
            "C - MI is the paper's KL bound. Strictly, the argument bounds the divergence of the "
            f"*noisy* codes f(X) + Z from {target} passed through the same channel (up to the MI "
            "estimate's error); by data processing that is at most the clean codes' divergence, "
            "so the clean codes tested above can be further from the prior (discrete codes are "
            "infinitely far). Read the bound and the tests together. The codes can keep the "
            "labels only if C > log(#classes)"
            + (
                ""
                if ev.log_n_classes is None
                else (
                    ": here it does."
                    if t.capacity_nats > ev.log_n_classes
                    else ": here it does **not**, so accuracy must suffer."
                )
            ),
            "",
        ]
    if ev.probes is not None or ev.silhouette is not None:
        lines += ["### 4. Downstream quality", ""]
        if ev.probes is not None:
            pr = ev.probes
            how = (
                "trained on the train split"
                if pr.protocol == "split"
                else "trained on a stratified random half"
            )
            lines += [
                f"Classifiers {how} ({pr.n_train} codes), scored on {pr.n_test} held-out codes, "
                f"{pr.n_classes} classes:",
                "",
                "| probe | accuracy |",
                "|---|---|",
                f"| k-nearest neighbours (k = 5) | {pr.knn_acc:.3f} |",
                f"| Gaussian naive Bayes | {pr.gnb_acc:.3f} |",
                f"| MLP (64 hidden units) | {pr.mlp_acc:.3f} |",
                f"| linear (logistic regression) | {pr.linear_acc:.3f} |",
                f"| chance (majority class) | {pr.chance_acc:.3f} |",
                "",
            ]
        if ev.silhouette is not None:
            lines += [
                f"Silhouette score of the labels on the tested codes: {ev.silhouette:.3f} "
                "(1: tight separated classes, 0: overlapping, < 0: mixed up).",
                "",
            ]
    if ev.notes:
        lines += ["Notes: " + "; ".join(ev.notes) + ".", ""]
    if images:
        lines += ["![QQ plots](qq.png)", "", "![codes](codes.png)", ""]
    return "\n".join(lines)
