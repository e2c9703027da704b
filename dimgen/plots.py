"""PNG plots of codes (matplotlib with the Agg backend, imported only when plotting)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import atomic_path

__all__ = ["plot_codes"]


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
