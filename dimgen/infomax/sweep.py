"""Noise sweep: train encoders at several noise levels, evaluate each, draw the paper's Figure 1.

``run_sweep(config, sigmas, runs, out)`` trains ``runs`` encoders (seeds ``config.seed + r``) per
noise level into ``out/sigma-S/run-R`` (each a complete encoder run folder with its own
evaluation), then writes ``sweep.csv`` (one row per run), ``sweep_summary.csv`` (mean and 99%
interval per level), ``sweep.png`` and ``report.md``, and marks ``out`` complete (kind
``sweep``). Completed runs are reused and interrupted ones resumed, so rerunning the same command
continues a sweep.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import EncoderConfig, bounded, replace, to_dict, validate
from ..diagnostics import EvalConfig, Evaluation
from ..errors import ConfigError, RunFolderError
from ..training import smoke

__all__ = [
    "SWEEP_METRICS",
    "SweepConfig",
    "SweepResult",
    "interval99",
    "parse_levels",
    "run_sweep",
    "runs_for_halfwidth",
]

#: Per-run columns of sweep.csv (besides the noise level, seed and path); dotted names are
#: fields of :meth:`dimgen.diagnostics.Evaluation.to_dict`.
SWEEP_METRICS = (
    "capacity_nats",
    "mi_lower_bound_nats",
    "kl_upper_bound_nats",
    "normality.dagostino_p",
    "normality.shapiro_p",
    "normality.henze_zirkler_p",
    "normality.marginal_p",
    "normality.p",
    "paper.dagostino_p",
    "paper.shapiro_p",
    "paper.henze_zirkler_p",
    "prior_match.ks_p",
    "prior_match.projection_ks_p",
    "prior_match.mean_p",
    "prior_match.cov_p",
    "prior_match.p",
    "p",
    "passes",
    "probes.knn_acc",
    "probes.gnb_acc",
    "probes.mlp_acc",
    "probes.linear_acc",
    "silhouette",
)


@dataclass
class SweepConfig:
    """Settings of a sweep beyond its encoder config; checked by :func:`dimgen.config.validate`.

    The noise levels are checked by :func:`parse_levels` and, one by one, against the encoder
    config's range for ``sigma`` / ``eps``.
    """

    runs: int = bounded(5, 1, 1000)
    """Encoders trained per noise level."""


@dataclass
class SweepResult:
    """Rows per run, summary per noise level, and the sweep folder."""

    path: Path
    param: str
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    n_classes: int | None


def parse_levels(text: str, name: str) -> list[float]:
    """``"0.05,0.1,0.2"`` -> ``[0.05, 0.1, 0.2]`` (distinct, finite, > 0)."""
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated numbers, got {text!r}") from None
    if not vals:
        raise ConfigError(f"{name}: give at least one value")
    if any(not math.isfinite(v) or v <= 0 for v in vals):
        raise ConfigError(f"{name} must all be finite numbers > 0, got {text!r}")
    if len(set(vals)) != len(vals):
        raise ConfigError(f"{name} has repeated values: {text!r}")
    return vals


def interval99(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 99% Student-t confidence interval of the mean (lo = hi = mean for one value)."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if len(v) == 1:
        return mean, mean, mean
    scale = float(np.abs(v).max())  # tiny p-values (1e-240) would underflow when squared
    sd = float((v / scale).std(ddof=1)) * scale if scale > 0 else 0.0
    half = float(stats.t.ppf(0.995, len(v) - 1) * sd / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def runs_for_halfwidth(sd: float, half: float, level: float = 0.99, max_runs: int = 10_000) -> int:
    """Fewest runs n whose Student-t interval of the mean, t((1 + level) / 2, n - 1) sd / sqrt(n),
    is at most ``half`` wide on each side, for a per-run standard deviation ``sd``.

    Returns ``max_runs`` when even that many would not do, 2 when ``sd`` is 0.

    Raises:
        ValueError: ``sd`` < 0 or not finite, ``half`` <= 0, ``level`` outside (0, 1).
    """
    from scipy import stats

    if not (math.isfinite(sd) and sd >= 0) or not half > 0 or not 0 < level < 1:
        raise ValueError(f"need sd >= 0, half > 0, 0 < level < 1; got {sd}, {half}, {level}")
    q = 0.5 + level / 2
    for n in range(2, max_runs + 1):
        if stats.t.ppf(q, n - 1) * sd / math.sqrt(n) <= half:
            return n
    return max_runs


def run_sweep(
    config: EncoderConfig,
    sigmas: Sequence[float] | None = None,
    runs: int = SweepConfig.runs,
    out: str | Path = "runs/sweep",
    *,
    epses: Sequence[float] | None = None,
    eval_config: EvalConfig | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> SweepResult:
    """Train and evaluate ``runs`` encoders per noise level; write the sweep folder.

    Args:
        config: the base encoder config (its ``sigma``/``eps`` and ``seed`` are overridden).
        sigmas: Gaussian channel noise levels (for ``config.prior == "gaussian"``).
        runs: encoders per level, seeds ``config.seed``, ``config.seed + 1``, ...
        out: the sweep folder.
        epses: uniform channel half-widths (for ``config.prior == "uniform"``).
        eval_config: settings of the evaluation of every run.
        progress: show training progress bars and phases on stderr (default True, as the CLI).
            A smoke run (``DIMGEN_SMOKE``) trains at most 2 runs per level, each capped, and
            marks every artefact (CSVs, report, figure title, ``run.json``).
        log: called with one line per finished run.

    Example:
        >>> res = run_sweep(EncoderConfig(epochs=5), [0.1, 1.0], runs=1, out="runs/s")  # doctest: +SKIP
    """
    from ..diagnostics.runs import evaluate_run
    from ..io import read_run, write_run
    from ..plots import plot_sweep
    from ..training import CHECKPOINT
    from .trainer import train_encoder

    cfg = validate(config, EncoderConfig)
    param, levels = _levels(cfg, sigmas, epses)
    runs = configured = validate(SweepConfig(runs=runs), SweepConfig).runs
    runs = smoke.cap_size(runs, 2)  # DIMGEN_SMOKE: 2 runs per level (each marked as smoke)
    out = Path(out)
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    n_classes = None
    for level in levels:
        for r in range(runs):
            run_cfg = replace(cfg, **{param: float(level), "seed": cfg.seed + r})
            run_dir = out / f"{param}-{level:g}" / f"run-{r}"
            if (run_dir / "run.json").is_file():
                read_run(run_dir, "encoder")
                _check_same_config(run_dir, run_cfg)
            elif (run_dir / CHECKPOINT).is_file():
                _check_same_config(run_dir, run_cfg)
                train_encoder(run_cfg, run_dir, progress=progress, resume=True)
            else:
                train_encoder(run_cfg, run_dir, progress=progress)
            ev = evaluate_run(run_dir, plots=False, config=eval_config, progress=progress)
            n_classes = ev.n_classes or n_classes
            row = {
                "param": param,
                "noise": float(level),
                "run": r,
                "seed": run_cfg.seed,
                "split_seed": run_cfg.split_seed,
                "path": str(run_dir.relative_to(out)),
            }
            row.update(_flat(ev))
            if smoke.active():
                row["smoke"] = 1
            rows.append(row)
            if log is not None:
                log(_run_line(row))
    summary = _summarise(rows, levels)
    if smoke.active():
        for entry in summary:
            entry["smoke"] = 1
    _write_csv(out / "sweep.csv", rows)
    _write_csv(out / "sweep_summary.csv", summary)
    title = f"{cfg.data}, {cfg.prior} prior, d = {cfg.dim}, {runs} run(s) per level"
    if smoke.active():
        title = f"SMOKE RUN (not results): {title}"
    ecfg = eval_config or EvalConfig()
    alpha = ecfg.alpha
    plot_sweep(
        summary,
        out / "sweep.png",
        rows=rows,
        n_classes=n_classes,
        alpha=alpha,
        title=title,
        protocol=ecfg.protocol,
    )
    from ..io import write_text

    report = sweep_report(cfg, param, runs, summary, n_classes, alpha, rows=rows)
    extra: dict[str, Any] = {}
    if smoke.active():
        extra["smoke"] = mark = smoke.marker("run", configured, runs)
        report = (f"> **Smoke run** ({mark['env']}): {runs} of {configured} runs per level, "
                  "each capped (training steps, data, evaluation); these numbers are not "
                  "results.\n\n" + report)  # fmt: skip
    write_text(out / "report.md", report)
    write_run(
        out,
        "sweep",
        param=param,
        levels=[float(v) for v in levels],
        runs=runs,
        base_config=to_dict(cfg),
        **extra,
    )
    return SweepResult(out, param, rows, summary, n_classes)


def _levels(
    cfg: EncoderConfig, sigmas: Sequence[float] | None, epses: Sequence[float] | None
) -> tuple[str, list[float]]:
    if cfg.prior == "gaussian":
        if epses is not None:
            raise ConfigError("--epses is for a uniform prior; this config's prior is gaussian")
        if not sigmas:
            raise ConfigError("give the Gaussian noise levels to sweep (--sigmas 0.1,0.3,1)")
        levels, param = list(sigmas), "sigma"
    else:
        if sigmas is not None:
            raise ConfigError("--sigmas is for a Gaussian prior; this config's prior is uniform")
        if not epses:
            raise ConfigError("give the uniform noise half-widths to sweep (--epses 0.05,0.1,0.25)")
        levels, param = list(epses), "eps"
    if len(set(levels)) != len(levels):
        raise ConfigError(f"repeated noise levels: {levels}")
    for v in levels:
        replace(cfg, **{param: float(v)})  # validates the range (eps <= 0.5, sigma > 0)
    return param, levels


def _check_out(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise RunFolderError(f"{out} exists and is not a folder")
    if (out / "run.json").is_file():
        from ..io import read_run

        read_run(out, "sweep")  # a folder of another kind is refused; a sweep is continued


def _check_same_config(run_dir: Path, cfg: EncoderConfig) -> None:
    from ..config import load_run_config

    if not (run_dir / "config.yaml").is_file():
        raise RunFolderError(f"{run_dir} has no config.yaml; remove it or choose another --out")
    old = to_dict(load_run_config(run_dir / "config.yaml"))
    new = to_dict(cfg)
    # data_root is where the data lives, not a setting: a sweep continued from elsewhere
    diff = sorted(k for k in new if old.get(k) != new[k] and k != "data_root")
    if diff:
        raise RunFolderError(
            f"{run_dir} was trained with a different config ({', '.join(diff)} differ); "
            "choose a fresh --out to sweep other settings"
        )


def _get(d: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _flat(ev: Evaluation) -> dict[str, Any]:
    res = ev.to_dict()
    training = res.get("training") or {}
    out: dict[str, Any] = {}
    for key in SWEEP_METRICS:
        val = training.get(key) if key in training else _get(res, key)
        out[key] = float(val) if isinstance(val, bool) else val
    return out


def _summarise(rows: list[dict[str, Any]], levels: Sequence[float]) -> list[dict[str, Any]]:
    summary = []
    for level in levels:
        group = [r for r in rows if r["noise"] == float(level)]
        entry: dict[str, Any] = {
            "noise": float(level),
            "runs": len(group),
            "capacity_nats": group[0]["capacity_nats"],
        }
        for key in SWEEP_METRICS:
            if key == "capacity_nats":
                continue
            mean, lo, hi = interval99([r[key] for r in group])
            if _is_p(key) or key == "passes" or key.endswith("_acc"):
                lo, hi = max(lo, 0.0), min(hi, 1.0)
            entry[f"{key}_mean"], entry[f"{key}_lo"], entry[f"{key}_hi"] = mean, lo, hi
            if _is_p(key):  # p-values span decades: also summarise log10 p (a geometric mean)
                logs = [math.log10(max(r[key], 1e-300)) for r in group if r[key] is not None]
                m, lo, hi = interval99(logs)
                entry[f"{key}_gmean"], entry[f"{key}_glo"], entry[f"{key}_ghi"] = (
                    10.0**m,
                    10.0 ** max(lo, -300.0),
                    10.0 ** min(hi, 0.0),
                )
        summary.append(entry)
    return summary


def _is_p(key: str) -> bool:
    return key == "p" or key.endswith(("_p", ".p"))


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    from ..io import write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    write_text(path, buf.getvalue())


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if abs(v) < 1e-3 and v != 0:
        return f"{v:.1e}"
    return f"{v:.{digits}g}" if abs(v) < 1 else f"{v:.{digits}f}"


def _run_line(row: dict[str, Any]) -> str:
    acc = row.get("probes.knn_acc")
    return (
        f"{row['param']} = {row['noise']:g}, run {row['run']}: capacity {row['capacity_nats']:.3f}, "
        f"MI >= {_fmt(row['mi_lower_bound_nats'])}, normality p {_fmt(row['normality.p'])}, "
        f"prior p {_fmt(row['prior_match.p'])}" + ("" if acc is None else f", kNN acc {acc:.3f}")
    )


def sweep_report(
    cfg: EncoderConfig,
    param: str,
    runs: int,
    summary: list[dict[str, Any]],
    n_classes: int | None,
    alpha: float,
    rows: list[dict[str, Any]] | None = None,
) -> str:
    """The sweep's report.md: one line per noise level, what the curve says, and (given the
    per-run ``rows``) how many runs a readable 99% interval would need at the observed spread."""
    need = math.log(n_classes) if n_classes and n_classes > 1 else None
    lines = [
        "# dimgen noise sweep",
        "",
        f"Data `{cfg.data}`, {cfg.prior} prior, d = {cfg.dim}, {cfg.epochs} epoch{'' if cfg.epochs == 1 else 's'}; {runs} run(s) "
        f"per noise level (seeds {cfg.seed}..{cfg.seed + runs - 1}); tests at alpha = {alpha:g} "
        "on each run's held-out codes. Means over runs; every run is a complete, evaluated "
        f"encoder run folder under `{param}-LEVEL/run-R/`.",
        "",
        f"| {param} | capacity C | MI lower bound | KL upper bound | normality p | prior-match p "
        "| runs passing | paper mean p (DA / SW / HZ) | k-NN acc | MLP acc |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in sorted(summary, key=lambda r: -r["capacity_nats"]):
        passing = round(e["passes_mean"] * e["runs"]) if e["passes_mean"] == e["passes_mean"] else 0
        lines.append(
            f"| {e['noise']:g} | {e['capacity_nats']:.3f} | {_fmt(e['mi_lower_bound_nats_mean'])} | "
            f"{_fmt(e['kl_upper_bound_nats_mean'])} | {_fmt(e['normality.p_gmean'])} | "
            f"{_fmt(e['prior_match.p_gmean'])} | {passing}/{e['runs']} | "
            f"{_fmt(e['paper.dagostino_p_mean'])} / {_fmt(e['paper.shapiro_p_mean'])} / "
            f"{_fmt(e['paper.henze_zirkler_p_mean'])} | "
            f"{_fmt(e['probes.knn_acc_mean'])} | {_fmt(e['probes.mlp_acc_mean'])} |"
        )
    lines += [
        "",
        "![Figure 1](sweep.png)",
        "",
        "How to read it (the paper's Figure 1): more noise (lower capacity C) should make the codes "
        "pass the tests (p-values rise above alpha, the KL bound C - MI shrinks), while accuracy "
        "holds until C drops below log(#classes)"
        + ("" if need is None else f" = {need:.3f} nats (dotted line)")
        + ", where the codes can no longer carry the labels. The MI estimate can never exceed C "
        "(dashed diagonal). p-values are geometric means over runs (means of log10 p), other "
        "numbers arithmetic means (the paper's statistic, the mean p-value over small "
        "subsamples of each run (`paper.*` columns), is descriptive and not a test; `--protocol paper` draws it); intervals are 99% Student-t intervals of the mean. "
        "`sweep.csv` has every run, `sweep_summary.csv` the plotted numbers.",
        "",
    ]
    if rows:
        lines += [_runs_needed(runs, summary, rows), ""]
    return "\n".join(lines)


#: Half-widths of a "readable" 99% interval: metric -> (half-width, unit).
READABLE = {"probes.knn_acc": (0.05, "accuracy"), "mi_lower_bound_nats": (0.1, "nats")}


def _runs_needed(runs: int, summary: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    """One paragraph: the t factor at ``runs`` and the runs a readable interval needs."""
    from scipy import stats

    parts = []
    for key, (half, unit) in READABLE.items():
        sds = []
        for e in summary:
            vals = [r[key] for r in rows if r["noise"] == e["noise"] and r.get(key) is not None]
            vals = [v for v in vals if math.isfinite(v)]
            if len(vals) >= 2:
                sds.append(float(np.std(vals, ddof=1)))
        if sds:
            n = runs_for_halfwidth(max(sds), half)
            parts.append(
                f"{key} (largest run-to-run sd {max(sds):.3g}): {n} runs for a half-width of "
                f"{half:g} {unit}"
            )
    if runs >= 2:
        t = float(stats.t.ppf(0.995, runs - 1))
        head = (
            f"With {runs} runs per level the 99% interval is the mean +- {t:.3g} sd / sqrt({runs}); "
            "the figure draws no interval from fewer than 3 runs nor any wider than half its "
            "panel, and shows every run as a point."
        )
    else:
        head = "With 1 run per level there is no interval; the figure shows the run itself."
    if not parts:
        return head
    return head + " At the observed spread, a readable interval needs " + "; ".join(parts) + "."
