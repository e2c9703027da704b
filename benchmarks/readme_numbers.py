"""Regenerate every figure the docs quote for the digits default (README, docs/encoders.md,
docs/flows.md), and print them.

What it runs (CPU, a few minutes; `nice -n 5 python benchmarks/readme_numbers.py`):

1. the digits default, `dimgen.EncoderConfig()` (d = 2, sigma = 0.2, 100 epochs), as
   `dimgen encode --out runs/digits` does: capacity, held-out MI bound ± its standard error,
   the KL certificate, the held-out code covariance, 5-NN accuracy, chance, wall time;
2. the flows of *Other priors* from that run (`dimgen.flows.runs.transform_codes`): kNN estimates
   in the encoder's space and after the maps to uniform, Laplace and `mixture:8` (flow fit and
   wall time);
3. the augmentation table: aug_noise 0.1, 0.2 and 0.3 (the default) at the default settings.

Every number is printed with the sentence of the docs it belongs to. With `DIMGEN_SMOKE=1` the run
is refused: smoke numbers are not results.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from dimgen.config import EncoderConfig, replace
from dimgen.training import smoke


def encoder(cfg: EncoderConfig, out: Path) -> tuple[dict, float]:
    from dimgen.infomax.trainer import train_encoder

    t0 = time.perf_counter()
    run = train_encoder(cfg, out)
    return run.metrics, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-augmentation", action="store_true")
    args = parser.parse_args(argv)
    if smoke.active():
        print("refusing to measure README numbers with DIMGEN_SMOKE set", file=sys.stderr)
        return 2
    from dimgen.flows.runs import transform_codes

    cfg = replace(EncoderConfig(), seed=args.seed)
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
            f"{m['epochs']} epochs, {secs:.1f} s end to end (train {m['train_seconds']:.1f} s)"
        )
        print("\n## Other priors: bound versus estimates (from the run above)")
        parts = []
        for target in ("uniform", "laplace", "mixture:8"):
            t0 = time.perf_counter()
            f = transform_codes(root / "digits", target, out=root / target.replace(":", "-"))
            secs_f = time.perf_counter() - t0
            fm = f.metrics
            src = fm["kl_estimate_knn_source_nats"]
            fit = f", flow fit {fm['kl_estimate_fit_nats']:.2f}" if fm["method"] != "exact" else ""
            parts.append(f"{target} {fm['kl_estimate_knn_nats']:.2f}{fit} ({secs_f:.1f} s)")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
