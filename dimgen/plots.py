"""PNG plots of codes (matplotlib with the Agg backend, imported only when plotting)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import atomic_path

__all__ = ["plot_codes", "plot_transformed"]


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
) -> None:
    """Codes mapped to a new prior over samples of that prior (grey): first two coordinates
    for d >= 2, overlaid histograms for d = 1."""
    plt = _pyplot()
    codes, reference = np.asarray(codes, dtype=float), np.asarray(reference, dtype=float)
    rng = np.random.default_rng(0)
    if len(reference) > max_points:
        reference = reference[rng.choice(len(reference), max_points, replace=False)]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    if codes.shape[1] == 1:
        ax.hist(reference[:, 0], bins=60, density=True, color="0.7", label="target samples")
        ax.hist(codes[:, 0], bins=40, density=True, histtype="step", lw=1.5, label="codes")
        ax.legend()
    else:
        ax.scatter(reference[:, 0], reference[:, 1], s=2, c="0.8", label="target samples")
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
