"""Held-out kNN accuracy of an encoder config against training time: the curve behind a preset.

Trains ``config`` exactly as ``dimgen encode`` does (same model, optimiser, batches, seed) and
probes the codes every ``--every`` epochs: held-out 5-NN accuracy (codes of ``--probe-train``
training images as references, all test images as queries, each coordinate standardised on the
references, as the channel's normalisation does) and the training bound. Probe time is excluded
from the clock. Writes one JSON line per probe to stdout (and ``--out`` as JSON).

    python benchmarks/mnist_curve.py configs/mnist-cpu.yaml --set epochs=4 --every 1
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np
import torch


@torch.no_grad()
def knn_probe(model: torch.nn.Module, x_ref: torch.Tensor, y_ref: np.ndarray,
              x_te: torch.Tensor, y_te: np.ndarray) -> float:  # fmt: skip
    """5-NN accuracy on standardised encoder outputs (references -> queries)."""
    from sklearn.neighbors import KNeighborsClassifier

    was = model.training
    model.eval()
    h_ref = torch.cat([model.encoder(x_ref[i : i + 2048]) for i in range(0, len(x_ref), 2048)])
    h_te = torch.cat([model.encoder(x_te[i : i + 2048]) for i in range(0, len(x_te), 2048)])
    model.train(was)
    mu, sd = h_ref.mean(0), h_ref.std(0).clamp_min(1e-12)
    a, b = ((h_ref - mu) / sd).numpy(), ((h_te - mu) / sd).numpy()
    return float(KNeighborsClassifier(n_neighbors=5).fit(a, y_ref).score(b, y_te))


@click.command()
@click.argument("config_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
@click.option("--every", type=int, default=1, show_default=True, help="Probe every N epochs.")
@click.option("--every-steps", type=int, default=0, help="Probe every N steps instead (0: off).")
@click.option("--probe-train", type=int, default=10000, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the curve as JSON here.")
def main(config_path: str, sets: tuple[str, ...], every: int, every_steps: int,
         probe_train: int, out: str | None) -> None:  # fmt: skip
    from dimgen.cli.options import parse_sets

    from dimgen.config import load_config, replace, to_dict
    from dimgen.data import Dataset, TensorBatches, load_data
    from dimgen.infomax.trainer import build_model, make_step

    cfg = replace(load_config(config_path), **parse_sets(sets))
    torch.set_num_threads(cfg.threads or torch.get_num_threads())
    ds = load_data(cfg.data, cfg.data_root, cfg.test_fraction, cfg.seed)
    if cfg.max_train and cfg.max_train < len(ds.x_train):
        y = None if ds.y_train is None else ds.y_train[: cfg.max_train]
        ds = Dataset(ds.name, ds.x_train[: cfg.max_train], y, ds.x_test, ds.y_test)
    assert ds.y_train is not None and ds.y_test is not None
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, ds.shape)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    x_tr, x_te = torch.from_numpy(ds.x_train), torch.from_numpy(ds.x_test)
    n_ref = min(probe_train, len(x_tr))
    loader = TensorBatches(x_tr, batch_size=min(cfg.batch_size, len(x_tr)), generator=gen)
    step = make_step(model, model, opt, cfg, torch.device("cpu"))
    rows: list[dict[str, float]] = []
    clock = cpu = 0.0
    steps = 0

    def probe(epoch: int, bound: float) -> None:
        acc = knn_probe(model, x_tr[:n_ref], ds.y_train[:n_ref], x_te, ds.y_test)
        row = {"epoch": epoch, "steps": steps, "minutes": round(clock / 60, 3),
               "s_per_step": round(clock / steps, 4), "cpu_s_per_step": round(cpu / steps, 4),
               "train_bound": bound, "knn_acc_probe": acc}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
        if out:
            Path(out).write_text(json.dumps({"config": to_dict(cfg), "curve": rows}, indent=1))

    model.train()
    for epoch in range(cfg.epochs):
        total, count = torch.zeros(()), 0
        t0, c0 = time.perf_counter(), time.process_time()
        for (xb,) in loader:
            total += step(xb)
            steps, count = steps + 1, count + 1
            if every_steps and steps % every_steps == 0:
                clock += time.perf_counter() - t0
                cpu += time.process_time() - c0
                probe(epoch + 1, float(total) / count)
                t0, c0 = time.perf_counter(), time.process_time()
        clock += time.perf_counter() - t0
        cpu += time.process_time() - c0
        if not every_steps and ((epoch + 1) % every == 0 or epoch + 1 == cfg.epochs):
            probe(epoch + 1, float(total) / count)
    if out:
        Path(out).write_text(json.dumps({"config": to_dict(cfg), "curve": rows}, indent=1))


if __name__ == "__main__":
    main()
