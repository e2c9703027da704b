"""One check to run wherever a GPU is available: speed, MNIST codes and the MNIST GAN, in one table.

Three parts, each through dimgen's own entry points (fresh processes, so each part starts clean):

1. ``benchmarks/train_step.py`` on the paper's set-up (``configs/mnist-gaussian.yaml``): ms/step
   of dimgen and of the reference loop, their ratio, peak GPU memory and the projected time of
   the paper's protocol, at batch 1024 and 4096 (critic rows in chunks of 512).
2. ``dimgen encode --config configs/mnist-gaussian.yaml`` for a fixed step budget at sigma 0.1
   and 0.3, then ``dimgen evaluate`` on the held-out codes: kNN accuracy, MI lower bound,
   capacity, KL bound (= capacity - MI), the calibrated p-values and the paper's Figure-1
   statistic (mean p-values over small subsamples; both protocols).
3. ``dimgen train-gan`` with ``configs/mnist-gan.yaml`` on the sigma-0.3 codes for a fixed
   budget: conditional consistency, class-histogram total variation, sample grids.

Writes ``gpu_check.md`` (a Markdown table) and ``gpu_check.json`` to OUT_DIR, plus every run
folder under it. ``--smoke`` (implied without CUDA) runs the same parts at toy budgets on the
CPU in about a minute on a quiet 2-core machine, to check the script itself; its numbers say
nothing about quality. The smoke run trains on scikit-learn's 8x8 digits (part 1 on random
28x28 images), so it needs no MNIST download.

    bash benchmarks/gpu_check.sh OUT_DIR            # < 9 minutes on one H100/H200
    bash benchmarks/gpu_check.sh OUT_DIR --smoke    # CPU, < 1 minute
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[1]
SIGMAS = (0.1, 0.3)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


@dataclass(frozen=True)
class Budget:
    """How much each part runs: the GPU check or its CPU smoke version."""

    device: str
    step_args: tuple[tuple[str, ...], ...]  # one train_step.py call per entry
    encoder_steps: int
    encoder_sets: tuple[str, ...]
    gan_sets: tuple[str, ...]


GPU = Budget(
    device="cuda",
    step_args=(
        _words("--batch-size 1024 --steps 30 --rounds 3 --memory-batch 0"),
        _words("--batch-size 4096 --chunk 512 --steps 10 --rounds 3 --memory-batch 4096"),
    ),
    encoder_steps=6000,
    encoder_sets=("batch_size=1024", "checkpoint_every=0"),
    gan_sets=_words(
        "steps=3000 sample_every=1000 checkpoint_every=0 log_every=100 eval_samples=5000 "
        "classifier_epochs=3"
    ),
)
SMOKE = Budget(
    device="cpu",
    step_args=(
        _words(
            "--batch-size 32 --steps 1 --rounds 1 --warmup 1 --n 256 --threads 1 --memory-batch 0"
        ),
    ),
    encoder_steps=40,
    encoder_sets=_words("batch_size=64 max_train=512 eval_batches=2 checkpoint_every=0 threads=1"),
    gan_sets=_words(
        "steps=20 batch_size=32 sample_every=0 checkpoint_every=0 log_every=5 eval_samples=200 "
        "classifier_epochs=2 threads=1"
    ),
)


def _run(cmd: list[str], log: Path) -> str:
    """Run ``cmd`` from the repository root; its output goes to ``log``; stop on failure."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise click.ClickException(f"{cmd[2] if len(cmd) > 2 else cmd[0]} failed: {tail[0]} "
                                   f"(full output in {log})")  # fmt: skip
    return proc.stdout


def _dimgen(*args: str) -> list[str]:
    return [sys.executable, "-m", "dimgen.cli", *args]


def _num(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else None


def parse_train_step(text: str) -> dict[str, Any]:
    """ms/step, peak memory and speed-up from ``train_step.py``'s printed table."""
    out: dict[str, Any] = {}
    out["batch"] = _num(r"batch (\d+), critic", text)
    for key, label in (("reference", "reference"), ("dimgen", "dimgen")):
        m = re.search(rf"^{label}\s+([\d.]+)\s+(\d+)\s+(\S+)(?: MiB)?\s+(.+)$", text, re.MULTILINE)
        if m:
            mem = m.group(3)
            out[f"{key}_ms_per_step"] = float(m.group(1))
            out[f"{key}_peak_mib"] = float(mem) if mem != "n/a" else None
            out[f"{key}_projected"] = m.group(4).strip()
    out["speedup"] = _num(r"speed-up .*?: ([\d.]+)x", text)
    return out


def _encoder_part(budget: Budget, data: str, root: str | None, out: Path) -> list[dict[str, Any]]:
    config = (
        ROOT / "configs" / ("mnist-gaussian.yaml" if data == "mnist" else "digits-gaussian.yaml")
    )
    rows = []
    for sigma in SIGMAS:
        run = out / f"encoder-sigma{sigma}"
        sets = list(budget.encoder_sets)
        batch = int(next(s for s in sets if s.startswith("batch_size=")).split("=")[1])
        n = 60_000 if data == "mnist" else 1437
        for s in sets:
            if s.startswith("max_train="):
                n = min(n, int(s.split("=")[1]))
        per_epoch = max(1, n // batch)
        epochs = max(1, math.ceil(budget.encoder_steps / per_epoch))
        cmd = _dimgen("encode", "--config", str(config), "--sigma", str(sigma), "--epochs",
                      str(epochs), "--device", budget.device, "--out", str(run), "--quiet")  # fmt: skip
        cmd += [a for s in sets for a in ("--set", s)]
        if root:
            cmd += ["--data-root", root]
        t0 = time.perf_counter()
        _run(cmd, out / f"encode-sigma{sigma}.log")
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        ev = json.loads(
            _run(_dimgen("evaluate", str(run), "--json", "--no-probes"),
                 out / f"evaluate-sigma{sigma}.log").strip().splitlines()[-1]
        )  # fmt: skip
        eval_seconds = time.perf_counter() - t0
        m = json.loads((run / "metrics.json").read_text())
        normality = ev.get("normality") or {}
        paper = ev.get("paper") or {}
        rows.append({"sigma": sigma, "epochs": epochs, "steps": epochs * per_epoch,
                     "batch": batch, "n_train": m.get("n_train"),
                     "knn_acc": m.get("knn_acc"), "mi_nats": m["mi_lower_bound_nats"],
                     "capacity_nats": m["capacity_nats"], "kl_bound_nats": m["kl_upper_bound_nats"],
                     "p_value": ev.get("p"), "passes": ev.get("passes"),
                     "henze_zirkler_p": normality.get("henze_zirkler_p"),
                     "paper_dagostino_p": paper.get("dagostino_p"),
                     "paper_shapiro_p": paper.get("shapiro_p"),
                     "paper_henze_zirkler_p": paper.get("henze_zirkler_p"),
                     "encode_seconds": round(seconds, 1), "evaluate_seconds": round(eval_seconds, 1),
                     "run": str(run)})  # fmt: skip
    return rows


def _gan_part(
    budget: Budget, data: str, root: str | None, encoder: Path, out: Path
) -> dict[str, Any]:
    config = ROOT / "configs" / ("mnist-gan.yaml" if data == "mnist" else "digits-gan.yaml")
    run = out / "gan"
    cmd = _dimgen("train-gan", str(encoder), "--config", str(config), "--device", budget.device,
                  "--out", str(run), "--quiet")  # fmt: skip
    cmd += [a for s in budget.gan_sets for a in ("--set", s)]
    t0 = time.perf_counter()
    _run(cmd, out / "train-gan.log")
    seconds = time.perf_counter() - t0
    grids = {}
    where = ["--data-root", root] if root else []
    modes = (
        ("unconditional", ["--unconditional"]),
        ("conditional", ["--from-images", data, *where]),
    )
    for name, extra in modes:
        png = out / f"gan-{name}.png"
        try:
            _run(_dimgen("sample", str(run), *extra, "-n", "64", "--out", str(png)),
                 out / f"sample-{name}.log")  # fmt: skip
            grids[name] = str(png)
        except click.ClickException as exc:  # a grid is a picture, not a metric: note and go on
            grids[name] = f"failed: {exc.message}"
    m = json.loads((run / "metrics.json").read_text())
    keys = ("steps", "conditional_consistency", "encoder_knn_acc", "class_tv_unconditional",
            "class_tv_conditional", "classifier_accuracy_real")  # fmt: skip
    return {**{k: m.get(k) for k in keys}, "seconds": round(seconds, 1), "grids": grids,
            "run": str(run)}  # fmt: skip


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return format(v, spec) if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"
    return str(v)


def _verdict(passes: bool | None) -> str:
    return "n/a" if passes is None else ("yes" if passes else "no")


def markdown(report: dict[str, Any]) -> str:
    """The Markdown table(s) of a report dict (as written to gpu_check.json)."""
    lines = [f"# dimgen GPU check ({report['mode']})", "",
             f"Device: {report['device_name']}; torch {report['torch']}; data: {report['data']}; "
             f"total {report['total_seconds']:.0f} s.", ""]  # fmt: skip
    if report["mode"] == "smoke":
        lines += ["Smoke run: toy budgets that check the script, not the quality of anything.", ""]
    lines += ["## 1. Training step (paper's set-up)", "",
              "| batch | reference ms/step | dimgen ms/step | speed-up | dimgen peak MiB | "
              "projected protocol time (dimgen) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in report["train_step"]:
        lines.append(f"| {_fmt(r.get('batch'), '.0f')} | {_fmt(r.get('reference_ms_per_step'), '.2f')} "
                     f"| {_fmt(r.get('dimgen_ms_per_step'), '.2f')} | {_fmt(r.get('speedup'), '.2f')}x "
                     f"| {_fmt(r.get('dimgen_peak_mib'), '.0f')} | {r.get('dimgen_projected', 'n/a')} |")  # fmt: skip
    lines += ["", f"## 2. Encoder ({report['encoder_config']}, fixed step budget)", "",
              "| sigma | steps | kNN acc | MI (nats) | capacity | KL bound | calibrated p | matches N(0, I)? "
              "| HZ p | paper mean p (DA / SW / HZ) | encode s | evaluate s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in report["encoder"]:
        lines.append(f"| {r['sigma']} | {r['steps']} | {_fmt(r['knn_acc'])} | {_fmt(r['mi_nats'])} "
                     f"| {_fmt(r['capacity_nats'])} | {_fmt(r['kl_bound_nats'])} | {_fmt(r['p_value'])} "
                     f"| {_verdict(r['passes'])} | {_fmt(r['henze_zirkler_p'])} "
                     f"| {_fmt(r['paper_dagostino_p'])} / {_fmt(r['paper_shapiro_p'])} / "
                     f"{_fmt(r['paper_henze_zirkler_p'])} "
                     f"| {r['encode_seconds']} | {r['evaluate_seconds']} |")  # fmt: skip
    lines += ["", "Calibrated p: `dimgen evaluate`'s overall test (normality and prior match, "
              "Simes), its verdict at alpha = 0.05 beside it. The paper's mean p-values over "
              "subsamples of 100 are descriptive, not a test (near 0.5 under the prior)."]  # fmt: skip
    g = report["gan"]
    lines += ["", f"## 3. GAN on the sigma = {SIGMAS[-1]} codes", "",
              "| steps | consistency % | encoder kNN | TV uncond. | TV cond. | seconds |",
              "|---|---|---|---|---|---|",
              f"| {g['steps']} | {_fmt(g['conditional_consistency'], '.1f')} "
              f"| {_fmt(g['encoder_knn_acc'])} | {_fmt(g['class_tv_unconditional'])} "
              f"| {_fmt(g['class_tv_conditional'])} | {g['seconds']} |", ""]  # fmt: skip
    lines += [f"Grids: {', '.join(f'{k}: {v}' for k, v in g['grids'].items())}", ""]
    return "\n".join(lines)


def _has_mnist(root: str | None) -> bool:
    return bool(root) and (Path(root) / "MNIST" / "raw").is_dir()  # type: ignore[arg-type]


@click.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--smoke", is_flag=True, help="Toy budgets on the CPU (implied without CUDA).")
@click.option("--data-root", help="Folder holding MNIST/raw (else $DIMGEN_DATA).")
def main(out_dir: str, smoke: bool, data_root: str | None) -> None:
    """Run the three parts and write OUT_DIR/gpu_check.md and OUT_DIR/gpu_check.json."""
    import torch

    t_start = time.perf_counter()
    cuda = torch.cuda.is_available()
    if not cuda and not smoke:
        click.echo("no CUDA device: running the --smoke version on the CPU", err=True)
        smoke = True
    budget = SMOKE if smoke else GPU
    root = data_root or os.environ.get("DIMGEN_DATA")
    if smoke:
        data = "digits"
    elif _has_mnist(root):
        data = "mnist"
    else:
        raise click.ClickException(
            f"MNIST not found under {root!r}: give --data-root or DIMGEN_DATA"
        )
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise click.ClickException(f"{out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)

    steps = []
    click.echo(f"[1/3] train step: {len(budget.step_args)} timings ...", err=True)
    for i, args in enumerate(budget.step_args):
        cmd = [sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--device",
               budget.device, "--config", str(ROOT / "configs" / "mnist-gaussian.yaml"), *args]  # fmt: skip
        steps.append(parse_train_step(_run(cmd, out / f"train_step-{i}.log")))
    click.echo(f"[1/3] train step done ({time.perf_counter() - t_start:.0f} s)", err=True)
    click.echo("[2/3] encoders ...", err=True)
    encoder = _encoder_part(budget, data, root if data == "mnist" else None, out)
    click.echo(f"[2/3] encoders done ({time.perf_counter() - t_start:.0f} s)", err=True)
    click.echo("[3/3] GAN ...", err=True)
    gan = _gan_part(budget, data, root if data == "mnist" else None, Path(encoder[-1]["run"]), out)
    click.echo(f"[3/3] GAN done ({time.perf_counter() - t_start:.0f} s)", err=True)
    report = {
        "mode": "smoke" if smoke else "gpu",
        "device_name": torch.cuda.get_device_name(0) if cuda and not smoke else "CPU",
        "torch": torch.__version__,
        "data": data if not smoke else f"{data} (toy budget)",
        "encoder_config": f"configs/{'mnist' if data == 'mnist' else 'digits'}-gaussian.yaml",
        "train_step": steps,
        "encoder": encoder,
        "gan": gan,
        "total_seconds": time.perf_counter() - t_start,
    }
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    (out / "gpu_check.md").write_text(markdown(report))
    click.echo(markdown(report))


if __name__ == "__main__":
    main()
