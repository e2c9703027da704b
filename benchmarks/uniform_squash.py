"""Uniform codes: the squashes of `dimgen.infomax.channel.UniformChannel` measured against the theory.

For every squash x eps x seed this trains a digits encoder (d = 2 by default) into a run folder,
evaluates it with `dimgen.diagnostics.runs.evaluate_run` (the uniformity tests of `dimgen evaluate`)
and measures on the held-out codes:

- ``MI``: the held-out InfoNCE lower bound, against the capacity d log(1 + 1/(2 eps));
- ``MI_ch``: the exact channel MI of the held-out codes, sum over axes of
  I(C_i; C_i + Z_i) (`dimgen.infomax.channel.axis_channel_mi`; no critic). The continuous uniform
  gives eps - log(2 eps) per axis, the grid log(1 + 1/(2 eps)) (the capacity);
- ``grid``: fraction of codes within eps/2 of the grid {0, 2 eps, ..., 1}, per axis
  (`dimgen.infomax.channel.grid_fraction`; uniform codes score 0.5), and ``grid_all``: on every axis;
- ``tokens``: distinct tokens used (`Tokenizer.tokens`) out of K^d, and the entropy of the
  token histogram in nats against log K^d;
- ``kNN``: 5-NN accuracy of the labels from the codes (`code_metrics`);
- ``prior_p``, ``pass``: the prior-match p-value and verdict of the uniformity tests;
- with ``--gan``: a GAN trained on the codes (`dimgen.gan.train_gan`, its defaults), its
  unconditional class coverage (classes among prior-drawn samples, of 10) and the total
  variation ``gan_tv`` between their class histogram and the data's.

Everything in the printed table was measured in this one invocation; the mean over seeds is
printed per (squash, eps), then every run.

Usage:
    python benchmarks/uniform_squash.py                          # 3 squashes x eps 0.25, 0.1 x 2 seeds
    python benchmarks/uniform_squash.py --epochs 200 --squashes phi,sigmoid --seeds 0,1,2
    python benchmarks/uniform_squash.py --epses 0.1 --seeds 0 --gan      # + GAN class coverage
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from dimgen.config import EncoderConfig
from dimgen.diagnostics.runs import evaluate_run
from dimgen.infomax.channel import axis_channel_mi, grid_fraction
from dimgen.infomax.tokenizer import Tokenizer
from dimgen.infomax.trainer import train_encoder

COLUMNS = ("MI", "cap", "MI_ch", "grid_x", "grid_y", "grid_all", "tokens", "tok_H", "kNN",
           "prior_p", "pass")  # fmt: skip


def measure(cfg: EncoderConfig, out: Path, gan: bool = False) -> dict[str, float]:
    """Train ``cfg`` into ``out``, evaluate it, and return one row of the table."""
    run = train_encoder(cfg, out)
    ev = evaluate_run(out, plots=False).to_dict()
    m = run.metrics
    test = run.split == "test"
    codes = run.codes[test]
    tok = Tokenizer.from_pretrained(out)
    x_test = _test_inputs(cfg)
    ids = tok.tokens(x_test).numpy()
    k = tok.grid_size
    _, counts = np.unique(ids, axis=0, return_counts=True)
    p = counts / counts.sum()
    frac = grid_fraction(codes, cfg.eps)
    near = np.abs(codes[:, :, None] - _grid(cfg.eps)[None, None]).min(-1) <= cfg.eps / 2 + 1e-9
    row = {
        "MI": m["mi_lower_bound_nats"],
        "cap": m["capacity_nats"],
        "MI_ch": float(axis_channel_mi(codes, cfg.eps).sum()),
        "grid_x": float(frac[0]),
        "grid_y": float(frac[1]) if len(frac) > 1 else math.nan,
        "grid_all": float(near.all(1).mean()),
        "tokens": f"{len(counts)}/{k**cfg.dim}",
        "tok_H": f"{-(p * np.log(p)).sum():.2f}/{cfg.dim * math.log(k):.2f}",
        "kNN": m.get("knn_acc", math.nan),
        "prior_p": (ev.get("prior_match") or {}).get("p", math.nan),
        "pass": float(bool(ev.get("passes"))),
    }
    if gan:
        from dimgen.gan import GANConfig, train_gan

        g = train_gan(GANConfig(encoder_run=str(out)), out.parent / f"{out.name}-gan").metrics
        row["gan_cov"] = float(g["class_coverage_unconditional"])
        row["gan_tv"] = float(g["class_tv_unconditional"])
    return row


def _grid(eps: float) -> np.ndarray:
    from dimgen.infomax.channel import grid_points

    return grid_points(eps)


def _test_inputs(cfg: EncoderConfig) -> np.ndarray:
    from dimgen.data import load_data

    return load_data(cfg.data, cfg.data_root, cfg.test_fraction, cfg.split_seed).x_test


def _fmt(v: object) -> str:
    if isinstance(v, str):
        return v
    v = float(v)  # type: ignore[arg-type]
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.1e}" if 0 < abs(v) < 1e-3 else f"{v:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--squashes", default="phi,sigmoid,clamp")
    ap.add_argument("--epses", default="0.25,0.1")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--dim", type=int, default=2)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--gan", action="store_true", help="also train a GAN on each run's codes")
    ap.add_argument("--out", default=None, help="keep the run folders here (default: a temp dir)")
    args = ap.parse_args()
    columns = COLUMNS + (("gan_cov", "gan_tv") if args.gan else ())
    squashes = args.squashes.split(",")
    epses = [float(v) for v in args.epses.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="uniform-squash-"))
    rows: list[tuple[str, float, int, dict]] = []
    t0 = time.perf_counter()
    for eps in epses:
        for squash in squashes:
            for seed in seeds:
                cfg = EncoderConfig(data=args.data, prior="uniform", eps=eps, dim=args.dim,
                                    squash=squash, seed=seed, epochs=args.epochs)  # fmt: skip
                row = measure(cfg, root / f"{squash}-eps{eps:g}-seed{seed}", args.gan)
                rows.append((squash, eps, seed, row))
                print(f"# {squash} eps={eps:g} seed={seed}: " + ", ".join(
                    f"{c}={_fmt(row[c])}" for c in columns), flush=True)  # fmt: skip
    print(f"\n{args.data}, d = {args.dim}, {args.epochs} epochs, seeds {args.seeds}; "
          f"{time.perf_counter() - t0:.0f} s; runs in {root}\n")  # fmt: skip
    head = "| squash | eps | " + " | ".join(columns) + " |"
    print("Mean over seeds (tokens, tok_H: first seed)\n")
    print(head)
    print("|" + "---|" * (len(columns) + 2))
    for eps in epses:
        for squash in squashes:
            group = [r for s, e, _, r in rows if s == squash and e == eps]
            cells = []
            for c in columns:
                vals = [r[c] for r in group]
                cells.append(vals[0] if isinstance(vals[0], str) else float(np.mean(vals)))
            print(f"| {squash} | {eps:g} | " + " | ".join(_fmt(v) for v in cells) + " |")
    print("\nEvery run\n")
    print("| squash | eps | seed | " + " | ".join(columns) + " |")
    print("|" + "---|" * (len(columns) + 3))
    for squash, eps, seed, r in rows:
        print(f"| {squash} | {eps:g} | {seed} | " + " | ".join(_fmt(r[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
