"""End to end: ``dimgen encode --out DIR`` on its default config (digits), timed from the shell.

Each run is a fresh process, as a user starts it. Reported per run: wall time, the CPU time the
process used (user + system; on a machine shared with other busy processes this is what the run
costs, and what its wall time would be on a quiet machine with the default single thread), the
training time the run itself records, and the quality figures (held-out MI bound, kNN accuracy),
so a speed change that costs quality shows up here.

``--compare PYTHON`` alternates runs with another installation (e.g. the main branch's venv) so
both see the same machine load.

Usage:
    python benchmarks/encode_default.py --repeats 3
    python benchmarks/encode_default.py --repeats 3 --compare ../main/.venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(python: str, extra: list[str], omp: str | None) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix="dimgen-e2e-")) / "run"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [python, "-m", "dimgen.cli", "encode", "--out", str(out), "--quiet", *extra],
        capture_output=True,
        text=True,
        env=_env(omp),
        cwd=out.parent,  # not the checkout: each Python must import its own installed dimgen
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{python}: exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
    m = json.loads((out / "metrics.json").read_text())
    shutil.rmtree(out.parent, ignore_errors=True)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "train_s": m.get("train_seconds", float("nan")),
        "mi": m["mi_lower_bound_nats"],
        "knn": m.get("knn_acc", float("nan")),
    }


def _env(omp: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if omp:
        env["OMP_NUM_THREADS"] = omp
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compare", help="another Python with dimgen installed (runs alternate)")
    ap.add_argument("--omp", help="OMP_NUM_THREADS for every run (default: unset, as a user runs)")
    ap.add_argument("extra", nargs="*", help="extra arguments for dimgen encode (after --)")
    args = ap.parse_args()
    pythons = {"this": sys.executable}
    if args.compare:
        pythons["compare"] = args.compare
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in pythons}
    for i in range(args.repeats):
        names = list(pythons) if i % 2 == 0 else list(reversed(pythons))
        for name in names:
            r = run_once(pythons[name], args.extra, args.omp)
            rows[name].append(r)
            print(f"{name:8s} run {i + 1}: wall {r['wall_s']:6.1f} s  cpu {r['cpu_s']:6.1f} s  "
                  f"train {r['train_s']:6.1f} s  MI {r['mi']:.3f}  kNN {r['knn']:.3f}",
                  flush=True)  # fmt: skip
    try:
        load = os.getloadavg()
        print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
              f"on {os.cpu_count()} cores")  # fmt: skip
    except OSError:
        pass
    for name, rs in rows.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(f"{name:8s} median: wall {med['wall_s']:.1f} s, cpu {med['cpu_s']:.1f} s, "
              f"train {med['train_s']:.1f} s, MI {med['mi']:.3f}, kNN {med['knn']:.3f}")  # fmt: skip
    if args.compare:
        ratios = [
            c["cpu_s"] / t["cpu_s"] for t, c in zip(rows["this"], rows["compare"], strict=True)
        ]
        print(f"cpu-time ratio compare / this: {statistics.median(ratios):.2f}x "
              f"[{min(ratios):.2f}-{max(ratios):.2f}]")  # fmt: skip


if __name__ == "__main__":
    main()
