"""Encoder runs: the result of a training run, its artefacts on disk and a summary of its codes.

Below :mod:`dimgen.infomax.trainer` in the layering: the trainer imports this module, never the reverse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..config import EncoderConfig, save_config
from ..io import save_npz, save_weights, write_json, write_text
from .channel import NoiseChannel
from .encoders import resolve_encoder_kind
from .objectives import NoisyInfoMax

__all__ = [
    "EncoderRun",
    "code_metrics",
    "encoder_report",
    "model_spec",
    "write_encoder_artefacts",
]


@dataclass
class EncoderRun:
    """The result of :func:`dimgen.infomax.trainer.train_encoder`: modules, codes, metrics and run folder.

    ``codes`` (n, d) with ``split`` (n,) ``train`` / ``test`` and ``labels`` (n,) when known;
    ``history``: the training bound (nats) of every epoch. In data-parallel training only rank
    0 evaluates and writes; other processes get their trained modules and history with empty
    metrics and codes.
    """

    config: EncoderConfig
    model: NoisyInfoMax
    metrics: dict[str, Any]
    codes: np.ndarray
    labels: np.ndarray | None
    split: np.ndarray
    history: list[float] = field(default_factory=list)
    path: Path | None = None

    @property
    def encoder(self) -> nn.Module:
        return self.model.encoder

    @property
    def channel(self) -> NoiseChannel:
        return self.model.channel


def model_spec(cfg: EncoderConfig, in_shape: tuple[int, ...]) -> dict[str, Any]:
    """Everything needed to rebuild the encoder and channel (stored in the weights' metadata)."""
    return {
        "in_shape": list(in_shape),
        "encoder": resolve_encoder_kind(cfg.encoder, in_shape),
        "encoder_hidden": cfg.encoder_hidden,
        "dim": cfg.dim,
        "prior": cfg.prior,
        "sigma": cfg.sigma,
        "eps": cfg.eps,
        "squash": cfg.squash,
        "whiten": cfg.whiten,
    }


def code_metrics(
    codes_tr: np.ndarray,
    codes_te: np.ndarray,
    y_tr: np.ndarray | None,
    y_te: np.ndarray | None,
    prior: str,
) -> dict[str, Any]:
    """Moments of the held-out codes and a kNN probe of how much label information they keep."""
    out: dict[str, Any] = {
        "code_mean": codes_te.mean(0).tolist(),
        "code_cov": np.atleast_2d(np.cov(codes_te, rowvar=False)).tolist(),
        "code_second_moment_train": (codes_tr**2).mean(0).tolist(),
        "code_second_moment_test": (codes_te**2).mean(0).tolist(),
    }
    if prior == "uniform":
        out["code_min"] = float(codes_te.min())
        out["code_max"] = float(codes_te.max())
    if y_tr is not None and y_te is not None and len(np.unique(y_tr)) > 1:
        from sklearn.neighbors import KNeighborsClassifier

        k = min(5, len(codes_tr))
        knn = KNeighborsClassifier(n_neighbors=k).fit(codes_tr, y_tr)
        out["knn_acc"] = float(knn.score(codes_te, y_te))
        from ..diagnostics.probes import chance_accuracy

        out["chance_acc"] = chance_accuracy(y_tr, y_te)
        out["n_classes"] = len(np.unique(y_tr))
    return out


def encoder_report(metrics: dict[str, Any], config: dict[str, Any]) -> str:
    """A short human-readable summary of an encoder run (report.md)."""
    cap, mi, kl = (
        metrics["capacity_nats"],
        metrics["mi_lower_bound_nats"],
        metrics["kl_upper_bound_nats"],
    )
    prior = metrics["prior"]
    noise = f"sigma = {config['sigma']}" if prior == "gaussian" else f"eps = {config['eps']}"
    target = "N(0, I)" if prior == "gaussian" else "U[0, 1]^d"
    lines = [
        "# dimgen encoder run",
        "",
        f"Data `{config['data']}`, {metrics['n_train']} train / {metrics['n_test']} held-out samples; "
        f"{prior} prior, d = {metrics['dim']}, {noise}; {config['epochs']} epoch{'' if config['epochs'] == 1 else 's'}, batch {config['batch_size']}.",
        "",
        "## Distribution matching",
        "",
        "| quantity | nats | meaning |",
        "|---|---|---|",
        f"| capacity | {cap:.4f} | upper bound on I(f(X'); f(X)+Z) for this channel |",
        f"| MI lower bound ({metrics['mi_bound_kind']}, held-out) | {mi:.4f} ± {metrics['mi_lower_bound_stderr']:.4f} | "
        f"estimated with the trained critic on batches of {metrics['mi_eval_batch']} |",
        f"| KL upper bound | {kl:.4f} | capacity - MI: the paper's KL(codes ‖ {target}) certificate; rigorously it bounds the KL of the *noisy* codes f(X)+Z to the noisy prior, so check the clean codes with `dimgen evaluate` |",
        "",
    ]
    if mi > cap:
        lines += ["**Warning:** the MI estimate exceeds the capacity, which no valid bound can do; "
                  "the estimate's sampling error is the likely cause.", ""]  # fmt: skip
    lines += [
        "The KL bound holds up to the estimation error of the MI lower bound (standard error above).",
        "",
        "## Codes (held-out)",
        "",
        f"- mean: {_fmt(metrics['code_mean'])}",
        f"- covariance: {_fmt(metrics['code_cov'])}",
        f"- E[f_i^2] on train / held-out: {_fmt(metrics['code_second_moment_train'])} / "
        f"{_fmt(metrics['code_second_moment_test'])}",
    ]
    if "knn_acc" in metrics:
        lines.append(f"- 5-NN accuracy on held-out codes: {metrics['knn_acc']:.3f} "
                     f"(chance {metrics['chance_acc']:.3f}, {metrics['n_classes']} classes)")  # fmt: skip
    tokens = metrics.get("tokens")
    if tokens:
        lines += _token_section(tokens)
    lines += ["", "![codes](codes.png)", ""]
    lines += _curve_section(metrics.get("curve") or [])
    lines += ["## Training curves", "",
              "Per epoch (`log.csv`): the training bound (batch statistics) and, where evaluated, "
              "the held-out certificate with fixed statistics.", "",
              "![training curves](curves.png)", ""]  # fmt: skip
    return "\n".join(lines)


def token_metrics(codes_te: np.ndarray, eps: float) -> dict[str, Any]:
    """The discrete tokens of held-out uniform codes: the vocabulary (K grid points per axis, d
    axes, bits per image d log2 K), the usage of each axis' K tokens
    (:func:`dimgen.infomax.channel.token_usage`: histogram, entropy, perplexity) and the
    fraction of codes within eps/2 of the grid per axis
    (:func:`dimgen.infomax.channel.grid_fraction`)."""
    from .channel import grid_fraction, grid_points, token_ids, token_usage

    k, d = len(grid_points(eps)), codes_te.shape[1]
    return {
        "grid_size": k,
        "axes": d,
        "bits_per_image": d * math.log2(k),
        **token_usage(token_ids(codes_te, eps), k),
        "grid_fraction": grid_fraction(codes_te, eps).tolist(),
    }


def _token_section(tokens: dict[str, Any]) -> list[str]:
    """The report's lines on the held-out codes' discrete tokens (``metrics['tokens']``)."""
    k = tokens["grid_size"]
    return [
        f"- tokens: K = {k} grid points per axis x d = {tokens['axes']} axes "
        f"({tokens['bits_per_image']:.2f} bits per image); per-axis perplexity "
        f"{_fmt(tokens['perplexity'])} of {k} (entropy / log K {_fmt(tokens['entropy_ratio'])}); "
        f"within eps/2 of the grid {_fmt(tokens['grid_fraction'])}",
    ]


def _curve_section(curve: list[dict[str, float]]) -> list[str]:
    """The held-out certificate over training (``metrics['curve']``) as a short table."""
    if not curve:
        return []
    step = max(1, -(-len(curve) // 12))
    rows = curve[::step] if curve[-1] in curve[::step] else [*curve[::step], curve[-1]]
    cols = [
        c for c in ("bound", "certified_mi", "kl_bound", "knn5", "prior_ratio") if c in curve[0]
    ]
    lines = ["## The certificate over training", "",
             "Held-out, with statistics fixed on training images (first 10,000), every "
             "evaluated epoch; `bound` is the training quantity (batch statistics), "
             "`prior_ratio` the sliced Epps-Pulley distance of the held-out codes to N(0, I) over "
             "that of an N(0, I) sample (~1: as Gaussian as Gaussian noise).", "",
             "| epoch | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]  # fmt: skip
    lines += [
        f"| {int(r['epoch'])} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |" for r in rows
    ]
    later = [r["certified_mi"] for r in curve if r["epoch"] >= 4]
    drops = [a - b for a, b in pairwise(later)]
    gap = curve[-1]["bound"] - curve[-1]["certified_mi"]
    fall = max(drops, default=0.0)
    fell = f"{fall:.3f} nats" if fall > 0 else "none (it never fell)"
    lines += ["", f"Largest fall of the certified bound between evaluations from epoch 4 on: "
              f"{fell}; training bound minus certified at the end: {gap:.3f} nats.", ""]  # fmt: skip
    return lines


def _fmt(v: Any) -> str:
    arr = np.asarray(v, dtype=float)
    return np.array2string(arr, precision=3, suppress_small=True, separator=", ").replace("\n", "")


def write_encoder_artefacts(run: EncoderRun, run_dir: Path) -> dict[str, Any]:
    """Write weights, codes, metrics, plot and report; return the model spec for ``run.json``.

    ``run.json`` itself is written by the training harness once this returns
    (:meth:`dimgen.training.RunFolder.complete`).
    """
    from ..plots import plot_codes

    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = run.config
    save_config(cfg, run_dir / "config.yaml")
    in_shape = tuple(run.model.encoder.in_shape)
    spec = model_spec(cfg, in_shape)
    enc = {f"encoder.{k}": v for k, v in run.model.encoder.state_dict().items()}
    enc.update({f"channel.{k}": v for k, v in run.model.channel.state_dict().items()})
    save_weights(run_dir / "encoder.safetensors", enc, {"kind": "encoder", "spec": spec})
    critic = {f"critic.{k}": v for k, v in run.model.critic.state_dict().items()}
    save_weights(run_dir / "critic.safetensors", critic,
                 {"kind": "critic", "critic": cfg.critic, "hidden": cfg.critic_hidden, "dim": cfg.dim})  # fmt: skip
    arrays: dict[str, np.ndarray] = {"codes": run.codes, "split": run.split}
    if run.labels is not None:
        arrays["labels"] = run.labels
    save_npz(run_dir / "codes.npz", **arrays)
    metrics = {**run.metrics, "history": run.history}
    write_json(run_dir / "metrics.json", metrics)
    test = run.split == "test"
    plot_codes(run.codes[test], None if run.labels is None else run.labels[test], run_dir / "codes.png",
               prior=cfg.prior, title=f"held-out codes ({cfg.prior}, d={cfg.dim})")  # fmt: skip
    write_text(run_dir / "report.md", encoder_report(run.metrics, _cfg_dict(cfg)))
    return spec


def _cfg_dict(cfg: Any) -> dict[str, Any]:
    from ..config import to_dict

    return to_dict(cfg)
