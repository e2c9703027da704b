"""How the cost of an epoch grows with the dataset size n and the batch size B.

An epoch is n / B steps. A step costs an encoder pass over 2B images (linear in B) and a critic
over B x B pairs (quadratic in B), so an epoch should cost a * n + b * n * B: linear in n at a
fixed batch, and in B between flat (encoder-bound) and linear (critic-bound), i.e. a step
between linear and quadratic. This script measures it and fits the exponents by least squares on
log-log axes. Sizes are visited round-robin and repeated, so load changes hit all sizes alike; on
the CPU the clock is the process's CPU time (robust to other processes; one thread), on CUDA the
wall time with synchronisation.

Usage:
    python benchmarks/scaling.py                                    # CPU, digits-sized model
    python benchmarks/scaling.py --device cuda --config configs/mnist-gaussian.yaml \\
        --n 8192 16384 32768 65536 --batch 256 512 1024 2048 --fixed-n 32768 --fixed-batch 1024
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dimgen.config import load_config, replace
from dimgen.data import TensorBatches
from dimgen.infomax.trainer import build_model, make_step

ROOT = Path(__file__).resolve().parents[1]


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares exponent k in y ~ x^k."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--config", default=str(ROOT / "configs" / "digits-gaussian.yaml"))
    ap.add_argument("--n", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    ap.add_argument("--fixed-n", type=int, default=4096, help="n while B varies")
    ap.add_argument("--fixed-batch", type=int, default=128, help="B while n varies")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=0, help="critic row chunk (0: none)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cpu":
        from dimgen.training.speed import tune_cpu_allocator

        tune_cpu_allocator()
    cfg = replace(load_config(args.config), device=str(device), critic_chunk=args.chunk)
    shape = (1, 28, 28) if cfg.data.startswith("mnist") else (1, 8, 8)
    torch.manual_seed(0)
    model = build_model(cfg, shape).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step = make_step(model, model, opt, cfg, device)
    pool = torch.rand(max(*args.n, args.fixed_n), *shape, device=device)

    def clock() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            return time.perf_counter()
        return time.process_time()

    def epoch(n: int, b: int) -> Callable[[], float]:
        loader = TensorBatches(pool[:n], batch_size=b, generator=torch.Generator().manual_seed(0))

        def run() -> float:
            t0 = clock()
            for (xb,) in loader:
                step(xb)
            return clock() - t0

        run()  # warm-up at this shape
        return run

    cases = [("n", n, args.fixed_batch) for n in args.n]
    cases += [("B", args.fixed_n, b) for b in args.batch]
    runs = {c: epoch(c[1], c[2]) for c in cases}
    times: dict[tuple[str, int, int], list[float]] = {c: [] for c in cases}
    for _ in range(args.repeats):
        for c in cases:
            times[c].append(runs[c]())

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    clock_name = "wall" if device.type == "cuda" else f"process CPU time, {args.threads} thread(s)"
    print(f"device: {where}; config {Path(args.config).name} (critic hidden {cfg.critic_hidden}, "
          f"chunk {cfg.critic_chunk}); "
          f"clock: {clock_name}; median of {args.repeats}")  # fmt: skip
    print(f"\n{'n':>7s} {'B':>5s} {'steps':>6s} {'s/epoch':>9s} {'ms/step':>9s}")
    med = {c: statistics.median(v) for c, v in times.items()}
    for c in cases:
        _, n, b = c
        print(f"{n:7d} {b:5d} {n // b:6d} {med[c]:9.3f} {med[c] / (n // b) * 1e3:9.2f}")
    ns = [c for c in cases if c[0] == "n"]
    bs = [c for c in cases if c[0] == "B"]
    k_n = slope([c[1] for c in ns], [med[c] for c in ns])
    k_b_epoch = slope([c[2] for c in bs], [med[c] for c in bs])
    k_b_step = slope([c[2] for c in bs], [med[c] / (c[1] // c[2]) for c in bs])
    print(f"\nepoch time ~ n^{k_n:.2f} at B = {args.fixed_batch}")
    print(f"epoch time ~ B^{k_b_epoch:.2f}, step time ~ B^{k_b_step:.2f} at n = {args.fixed_n}")
    large = bs[len(bs) // 2 :]
    if len(large) >= 2:
        k_large = slope([c[2] for c in large], [med[c] / (c[1] // c[2]) for c in large])
        print(f"step time ~ B^{k_large:.2f} over the larger half (B >= {large[0][2]})")


if __name__ == "__main__":
    main()
