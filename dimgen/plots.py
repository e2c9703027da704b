"""PNG plots of codes, QQ plots and noise sweeps (matplotlib with the Agg backend, imported lazily)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import atomic_path

__all__ = ["plot_code_pairs", "plot_codes", "plot_qq", "plot_sweep", "plot_transformed"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_codes(
    codes: np.ndarray,
    labels: np.ndarray | None,
    path: str | Path,
    prior: str = "gaussian",
    title: str = "codes",
    max_points: int = 5000,
) -> None:
    """Scatter coloured by label for d = 2; per-coordinate histograms against the prior otherwise."""
    plt = _pyplot()
    codes = np.asarray(codes, dtype=float)
    n, d = codes.shape
    if n > max_points:
        sel = np.random.default_rng(0).choice(n, max_points, replace=False)
        codes = codes[sel]
        labels = None if labels is None else labels[sel]
    if d == 2:
        fig, ax = plt.subplots(figsize=(5.5, 5))
        if labels is not None:
            sc = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=4, alpha=0.7)
            fig.colorbar(sc, ax=ax, label="label")
        else:
            ax.scatter(codes[:, 0], codes[:, 1], s=4, alpha=0.7)
        ax.set_xlabel("code 1")
        ax.set_ylabel("code 2")
        ax.set_aspect("equal")
    else:
        k = min(d, 16)
        cols = min(k, 4)
        rows = -(-k // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.4 * rows), squeeze=False)
        grid = np.linspace(-4, 4, 200) if prior == "gaussian" else np.linspace(0, 1, 200)
        dens = (
            np.exp(-(grid**2) / 2) / np.sqrt(2 * np.pi)
            if prior == "gaussian"
            else np.ones_like(grid)
        )
        for i, ax in enumerate(axes.flat):
            if i >= k:
                ax.axis("off")
                continue
            ax.hist(codes[:, i], bins=40, density=True, alpha=0.6)
            ax.plot(grid, dens, "k--", lw=1)
            ax.set_title(f"code {i + 1}", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def plot_transformed(
    codes: np.ndarray,
    labels: np.ndarray | None,
    reference: np.ndarray,
    path: str | Path,
    title: str = "codes in the new prior",
    max_points: int = 5000,
    reference_label: str = "target samples",
) -> None:
    """Codes mapped to a new prior over samples of that prior (grey, ``reference_label``):
    first two coordinates for d >= 2, overlaid histograms for d = 1."""
    plt = _pyplot()
    codes, reference = np.asarray(codes, dtype=float), np.asarray(reference, dtype=float)
    rng = np.random.default_rng(0)
    if len(reference) > max_points:
        reference = reference[rng.choice(len(reference), max_points, replace=False)]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    if codes.shape[1] == 1:
        ax.hist(reference[:, 0], bins=60, density=True, color="0.7", label=reference_label)
        ax.hist(codes[:, 0], bins=40, density=True, histtype="step", lw=1.5, label="codes")
        ax.legend()
    else:
        ax.scatter(reference[:, 0], reference[:, 1], s=2, c="0.8", label=reference_label)
        sc = ax.scatter(codes[:, 0], codes[:, 1], c=labels if labels is not None else "C0",
                        cmap="tab10", s=5, alpha=0.8, label="codes")  # fmt: skip
        if labels is not None:
            fig.colorbar(sc, ax=ax, label="label")
        lo, hi = np.percentile(reference[:, :2], [0.5, 99.5], axis=0)
        pad = 0.1 * (hi - lo)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_xlabel("coordinate 1")
        ax.set_ylabel("coordinate 2")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _prior_density(prior: str) -> tuple[np.ndarray, np.ndarray]:
    if prior == "gaussian":
        grid = np.linspace(-4, 4, 200)
        return grid, np.exp(-(grid**2) / 2) / np.sqrt(2 * np.pi)
    grid = np.linspace(0, 1, 200)
    return grid, np.ones_like(grid)


def _save(fig: object, path: str | Path) -> None:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)


def plot_code_pairs(
    codes: np.ndarray,
    labels: np.ndarray | None,
    path: str | Path,
    prior: str = "gaussian",
    title: str = "codes",
    max_dims: int = 5,
    max_points: int = 3000,
) -> None:
    """Codes coloured by label: a scatter for d <= 2, else a pair plot of the first ``max_dims``
    coordinates (marginal histograms with the prior's density on the diagonal)."""
    codes = np.asarray(codes, dtype=float)
    if codes.shape[1] <= 2:
        if codes.shape[1] == 1:
            codes = np.concatenate([codes, np.zeros_like(codes)], axis=1)
        plot_codes(codes, labels, path, prior=prior, title=title, max_points=max_points)
        return
    plt = _pyplot()
    n, d = codes.shape
    if n > max_points:
        sel = np.random.default_rng(0).choice(n, max_points, replace=False)
        codes, labels = codes[sel], None if labels is None else labels[sel]
    k = min(d, max_dims)
    grid, dens = _prior_density(prior)
    fig, axes = plt.subplots(k, k, figsize=(2.1 * k, 2.1 * k), squeeze=False)
    colour = labels if labels is not None else "C0"
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if i == j:
                ax.hist(codes[:, i], bins=40, density=True, alpha=0.6)
                ax.plot(grid, dens, "k--", lw=1)
            else:
                ax.scatter(codes[:, j], codes[:, i], c=colour, cmap="tab10", s=2, alpha=0.5)
            ax.tick_params(labelsize=6)
            if i == k - 1:
                ax.set_xlabel(f"code {j + 1}", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"code {i + 1}", fontsize=8)
    shown = f" (first {k} of {d} coordinates)" if k < d else ""
    fig.suptitle(f"{title}{shown}; dashed: prior density")
    fig.tight_layout()
    _save(fig, path)


def plot_qq(
    z: np.ndarray,
    path: str | Path,
    n_projections: int = 6,
    seed: int = 0,
    title: str = "QQ plots of random projections against N(0, 1)",
) -> None:
    """QQ plots of random 1-D projections u'z (|u| = 1) against N(0, 1).

    Under z ~ N(0, I) every projection is exactly N(0, 1), so the points lie on the diagonal;
    a wrong scale shows as a different slope, a wrong shape as curvature. Pass Phi^-1(codes)
    for uniform codes.
    """
    from scipy import stats

    plt = _pyplot()
    z = np.asarray(z, dtype=float)
    n, d = z.shape
    rng = np.random.default_rng([seed, 7])
    g = rng.standard_normal((n_projections, d))
    dirs = g / np.linalg.norm(g, axis=1, keepdims=True)
    cols = min(3, n_projections)
    rows = -(-n_projections // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    q = stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)
    for i, ax in enumerate(axes.flat):
        if i >= n_projections:
            ax.axis("off")
            continue
        proj = np.sort(z @ dirs[i])
        ax.plot(q, proj, ".", ms=2, alpha=0.6)
        lim = max(4.0, float(np.abs(q).max()))
        ax.plot([-lim, lim], [-lim, lim], "k--", lw=1)
        ax.set_xlim(-lim, lim)
        ax.set_title(f"projection {i + 1}", fontsize=9)
        ax.tick_params(labelsize=7)
        if i % cols == 0:
            ax.set_ylabel("sample quantile", fontsize=8)
        if i >= n_projections - cols:
            ax.set_xlabel("N(0, 1) quantile", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


#: A 99% interval is drawn only where it is narrower than this fraction of its panel's span...
BAND_MAX_FRACTION = 0.5
#: ... and rests on at least this many runs (with 2, the standard deviation has 1 degree of
#: freedom: two close runs would give a narrow interval that means nothing).
MIN_INTERVAL_RUNS = 3


#: Label of the p-value panel under ``protocol="paper"`` (mean p-values, linear scale).
PAPER_PANEL = "mean p-value over small subsamples (paper; not a test)"


def plot_sweep(
    summary: list[dict[str, float]],
    path: str | Path,
    *,
    rows: list[dict[str, float]] | None = None,
    n_classes: int | None = None,
    alpha: float = 0.05,
    title: str = "noise sweep",
    protocol: str = "calibrated",
) -> dict[str, int]:
    """The paper's Figure 1: p-values, accuracies and the MI estimate against the capacity.

    ``protocol="calibrated"`` draws the calibrated p-values (geometric means, log scale);
    ``"paper"`` the paper's statistic instead, mean p-values over small subsamples (``paper.*``
    keys; arithmetic means, linear scale), which is descriptive and not a test.

    ``summary`` has one row per noise level with ``capacity_nats`` and, for each metric ``m``,
    ``m_mean``, ``m_lo``, ``m_hi`` (mean and 99% interval over runs); p-values are drawn from
    ``m_gmean``, ``m_glo``, ``m_ghi`` when present (the same on log10 p). ``rows`` (one per run,
    with ``capacity_nats`` and the metrics) adds every run as a point. A level's 99% interval is
    drawn (band or bar) only where it is informative: from at least :data:`MIN_INTERVAL_RUNS`
    runs (``runs`` in the summary row) and narrower than :data:`BAND_MAX_FRACTION` of the
    panel's span (1 for accuracies, the data's range in decades for p-values, in nats for the
    MI panel). With 2 runs the Student-t factor is t(0.995, 1) = 63.7: no interval is drawn and
    the points carry the figure. The capacity bound is the dashed
    diagonal of the MI panel; log(#classes), the capacity the labels need, is the dotted
    vertical line on every panel.

    Returns:
        counts of what was drawn: ``run_points`` (markers for individual runs), ``intervals``
        (levels x series whose interval was drawn) and ``hidden_intervals`` (left out as
        uninformative).
    """
    plt = _pyplot()
    levels = sorted(summary, key=lambda r: r["capacity_nats"])
    cap = np.array([r["capacity_nats"] for r in levels])
    enough = np.array([r.get("runs", MIN_INTERVAL_RUNS) for r in levels]) >= MIN_INTERVAL_RUNS
    p_panel = (
        (
            "p-value (geometric mean, log scale)",
            [
                ("normality.dagostino_p", "D'Agostino-Pearson"),
                ("normality.shapiro_p", "Shapiro-Wilk"),
                ("normality.henze_zirkler_p", "Henze-Zirkler"),
                ("prior_match.p", "prior match (N(0,I) / U)"),
            ],
        )
        if protocol == "calibrated"
        else (
            PAPER_PANEL,
            [
                ("paper.dagostino_p", "D'Agostino-Pearson"),
                ("paper.shapiro_p", "Shapiro-Wilk"),
                ("paper.henze_zirkler_p", "Henze-Zirkler"),
            ],
        )
    )
    panels = [
        p_panel,
        (
            "held-out accuracy",
            [
                ("probes.knn_acc", "k-NN"),
                ("probes.gnb_acc", "naive Bayes"),
                ("probes.mlp_acc", "MLP"),
                ("probes.linear_acc", "linear"),
            ],
        ),
        (
            "nats",
            [("mi_lower_bound_nats", "MI lower bound"), ("kl_upper_bound_nats", "KL upper bound")],
        ),
    ]
    counts = {"run_points": 0, "intervals": 0, "hidden_intervals": 0}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (ylabel, series) in zip(axes, panels, strict=True):
        is_p = ylabel.startswith("p-value")
        drawn = []
        for key, label in series:
            # p-values are summarised on the log scale (geometric mean), the rest arithmetically
            geo = f"{key}_gmean" in levels[0] and is_p
            suffixes = ("_gmean", "_glo", "_ghi") if geo else ("_mean", "_lo", "_hi")
            if f"{key}{suffixes[0]}" not in levels[0]:
                continue
            mean, lo, hi = (
                np.array([r[f"{key}{s}"] for r in levels], dtype=float) for s in suffixes
            )
            pts = _run_points(rows, key)
            if is_p:
                mean, lo, hi = (np.clip(v, 1e-30, 1) for v in (mean, lo, hi))
                pts = (pts[0], np.clip(pts[1], 1e-30, 1))
            if not np.isfinite(mean).any():
                continue
            drawn.append((label, mean, lo, hi, pts))
        span = _panel_span(ylabel, drawn)
        for label, mean, lo, hi, (px, py) in drawn:
            (line,) = ax.plot(cap, mean, "o-", ms=4, label=label)
            color = line.get_color()
            if len(px):
                ax.plot(px, py, "x", ms=5, color=color, alpha=0.8)
                counts["run_points"] += len(px)
            width = np.log10(hi) - np.log10(lo) if is_p else hi - lo
            show = np.isfinite(width) & (width > 0) & (width <= BAND_MAX_FRACTION * span) & enough
            counts["intervals"] += int(show.sum())
            counts["hidden_intervals"] += int((np.isfinite(width) & (width > 0) & ~show).sum())
            if show.any():
                ax.fill_between(cap, lo, hi, where=show, color=color, alpha=0.2, lw=0)
                ax.errorbar(cap[show], mean[show], yerr=[mean[show] - lo[show],
                            hi[show] - mean[show]], fmt="none", ecolor=color, capsize=3, lw=1)  # fmt: skip
        if is_p:
            ax.set_yscale("log")
            ax.set_ylim(top=2.0)
            ax.axhline(alpha, color="grey", ls=":", lw=1, label=f"alpha = {alpha:g}")
        if ylabel == PAPER_PANEL:
            ax.set_ylim(0.0, 1.0)
            ax.axhline(0.5, color="grey", ls=":", lw=1, label="0.5 (mean under the null)")
        if ylabel == "nats":
            ax.plot(cap, cap, "k--", lw=1, label="capacity (upper bound on MI)")
        if n_classes is not None and n_classes > 1:
            ax.axvline(
                np.log(n_classes), color="k", ls=":", lw=1.2, label=f"log {n_classes} (labels need)"
            )
        ax.set_xlabel("capacity C (nats)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    what = "mean (line)"
    if counts["run_points"]:
        what += ", each run (x)"
    what += (
        f", 99% interval where from >= {MIN_INTERVAL_RUNS} runs and narrower than half the panel"
    )
    if counts["hidden_intervals"]:
        what += f" ({counts['hidden_intervals']} left out)"  # too few runs or too wide
    fig.suptitle(f"{title}: {what}", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return counts


def _run_points(rows: list[dict[str, float]] | None, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) = (capacity, value) of every run with a finite ``key``."""
    if not rows:
        return np.zeros(0), np.zeros(0)
    pairs = [
        (float(r["capacity_nats"]), float(r[key]))
        for r in rows
        if r.get(key) is not None and np.isfinite(float(r[key]))
    ]
    arr = np.array(pairs, dtype=float).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def _panel_span(ylabel: str, drawn: list) -> float:
    """The range a panel shows: 1 for accuracies; else the range of its means and run points
    (in decades for p-values), at least 1 (decade or nat)."""
    if ylabel.startswith("held-out accuracy") or ylabel == PAPER_PANEL:
        return 1.0
    vals = [np.concatenate([d[1], d[4][1]]) for d in drawn]
    v = np.concatenate(vals) if vals else np.zeros(0)
    v = v[np.isfinite(v)]
    if ylabel.startswith("p-value"):
        v = np.log10(np.clip(v, 1e-30, 1))
    return max(1.0, float(v.max() - v.min())) if len(v) else 1.0
