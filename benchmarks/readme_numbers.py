"""Regenerate every figure the docs quote for the digits default (README, docs/encoders.md,
docs/flows.md), and print them.

What it runs (CPU, a few minutes; `nice -n 5 python benchmarks/readme_numbers.py`; `--gan`
adds the digits GAN, a few minutes more):

1. the digits default, `dimgen.EncoderConfig()` (d = 2, sigma = 0.2, 100 epochs), as
   `dimgen encode --out runs/digits` does: capacity, held-out MI bound ± its standard error,
   the KL certificate, the held-out code covariance, 5-NN accuracy, chance, wall time;
2. the flows of *Other priors* from that run (`dimgen.flows.runs.transform_codes`): kNN estimates
   in the encoder's space and after the maps to uniform, Laplace and `mixture:8` (flow fit and
   wall time);
3. the augmentation table: aug_noise 0.1, 0.2 and 0.3 (the default) at the default settings.

4. with ``--gan``: ``dimgen train-gan runs/digits`` at the default ``GANConfig`` (the README's
   Generation block; ``configs/digits-gan.yaml`` trains the same model), then its row of
   docs/diffusion.md's table (``dimgen evaluate-generator RUN -n 500``).

Every number is printed with the sentence of the docs it belongs to. Times are given as CPU seconds
(``time.process_time``: what this process computed, all its threads; about the same on a busy
or a quiet machine) beside wall seconds (what a user waits: up to the CPU time divided by the
cores it could use, more under load), and the first line states the machine (CPU, cores, torch
threads, load average). With `DIMGEN_SMOKE=1` the run is refused: smoke numbers are not
results.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dimgen.config import EncoderConfig, replace
from dimgen.training import smoke


class Timed:
    """CPU and wall seconds of a call: ``Timed(f, *args)``; ``.result``, ``.cpu``, ``.wall``."""

    def __init__(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        c0, w0 = time.process_time(), time.perf_counter()
        self.result = f(*args, **kwargs)
        self.cpu, self.wall = time.process_time() - c0, time.perf_counter() - w0

    def __str__(self) -> str:
        return f"{self.cpu:.1f} s CPU, {self.wall:.1f} s wall"


def machine() -> str:
    """One line naming the machine the times were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:  # the model name, where Linux tells it
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__} with "
            f"{torch.get_num_threads()} thread(s), load average {load} (1/5/15 min)")  # fmt: skip


def encoder(cfg: EncoderConfig, out: Path) -> tuple[dict, Timed]:
    from dimgen.infomax.trainer import train_encoder

    t = Timed(train_encoder, cfg, out, progress=False)
    return t.result.metrics, t


def print_gan_row(run: Path) -> None:
    """The GAN row of docs/diffusion.md's table: ``dimgen evaluate-generator RUN -n 500`` (seed 0)
    and the wall time of 500 unconditional samples."""
    from dimgen.gan import evaluate_run
    from dimgen.generators.runs import load_generator

    e = evaluate_run(run, n=500, seed=0)
    gen = load_generator(run, device="cpu")
    gen.sample_unconditional(8, seed=0)  # warm-up
    t = Timed(gen.sample_unconditional, 500, seed=0)
    print("docs/diffusion.md, `dimgen evaluate-generator RUN -n 500 --json` "
          f"({e['n_eval']} held-out images):")  # fmt: skip
    print(
        f"| GAN (MLP, hinge) | {e['conditional_consistency']:.1f} "
        f"| {e['fid_dimgen_classifier_conditional']:.2f} "
        f"| {e['fid_dimgen_classifier_unconditional']:.2f} "
        f"| {e['kid_dimgen_classifier_unconditional']:.2f} | {e['class_tv_unconditional']:.3f} "
        f"| {e['class_coverage_unconditional']} | {t.wall:.2f} s |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-augmentation", action="store_true")
    parser.add_argument("--gan", action="store_true", help="also time the digits GAN (minutes)")
    args = parser.parse_args(argv)
    if smoke.active():
        print("refusing to measure README numbers with DIMGEN_SMOKE set", file=sys.stderr)
        return 2
    from dimgen.flows.runs import transform_codes

    cfg = replace(EncoderConfig(), seed=args.seed)
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        m, secs = encoder(cfg, root / "digits")
        cov = m["code_cov"]
        print("## Quick tour: the digits default")
        print(
            f"capacity {m['capacity_nats']:.3f} nats, held-out InfoNCE bound "
            f"{m['mi_lower_bound_nats']:.3f} ± {m['mi_lower_bound_stderr']:.3f} nats, "
            f"KL <= {m['kl_upper_bound_nats']:.3f} nats; held-out code covariance "
            f"[[{cov[0][0]:.2f}, {cov[0][1]:.2f}], [{cov[1][0]:.2f}, {cov[1][1]:.2f}]]; "
            f"5-NN accuracy {m['knn_acc']:.3f} (chance {m['chance_acc']:.3f}); "
            f"{m['epochs']} epochs, {secs} end to end (train {m['train_seconds']:.1f} s wall)"
        )
        print("\n## Other priors: bound versus estimates (from the run above)")
        parts = []
        for target in ("uniform", "laplace", "mixture:8"):
            t = Timed(transform_codes, root / "digits", target,
                      out=root / target.replace(":", "-"), progress=False)  # fmt: skip
            f, secs_f = t.result, t
            fm = f.metrics
            src = fm["kl_estimate_knn_source_nats"]
            fit = f", flow fit {fm['kl_estimate_fit_nats']:.2f}" if fm["method"] != "exact" else ""
            parts.append(f"{target} {fm['kl_estimate_knn_nats']:.2f}{fit} ({secs_f})")
        print(
            f"bound {m['kl_upper_bound_nats']:.2f} nats; kNN estimates {src:.2f} (encoder space), "
            + ", ".join(parts)
        )
        if not args.skip_augmentation:
            print("\n## The augmentation decides what the codes keep")
            rows = {cfg.aug_noise: m}
            for aug in (0.1, 0.2, 0.3):
                if aug not in rows:
                    rows[aug], _ = encoder(replace(cfg, aug_noise=aug), root / f"aug-{aug}")
            print(
                f"(d = {cfg.dim}, sigma = {cfg.sigma}, batch {cfg.batch_size}, {cfg.epochs} epochs) "
                + "; ".join(
                    f"aug_noise {a} -> MI bound {r['mi_lower_bound_nats']:.2f} nats, "
                    f"5-NN accuracy {r['knn_acc']:.2f}"
                    for a, r in sorted(rows.items())
                )
            )
        if args.gan:
            from dimgen.gan import GANConfig, train_gan

            print("\n## Generation: dimgen train-gan runs/digits (the default GANConfig)")
            t = Timed(train_gan, GANConfig(encoder_run=str(root / "digits")), root / "gan",
                      progress=False)  # fmt: skip
            g = t.result.metrics
            print(f"{g['steps']} steps, {t} end to end (train {g['train_seconds']:.1f} s wall); "
                  f"conditional consistency {g.get('conditional_consistency', float('nan')):.1f}%, "
                  f"unconditional class TV {g.get('class_tv_unconditional', float('nan')):.3f}")  # fmt: skip
            print_gan_row(root / "gan")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
