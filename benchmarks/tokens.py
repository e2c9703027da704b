"""dimgen's uniform-prior tokens against FSQ at equal bits per image.

Both sides train the same encoder (``EncoderConfig``'s, batch-normed) with the same InfoMax
objective (InfoNCE with the same MLP critic on I(f(X'); f(X) + Z), Z ~ U[-eps, eps]^d), the same
optimiser, batch, epochs and seeds. They differ only in the map from the standardised output s
to the code in [0, 1]^d:

- ``dimgen-<squash>``: the uniform channel's squash (``sigmoid`` by default, ``steps``: the
  annealed soft staircase); its tokens are the codes rounded to the grid {0, 2 eps, ..., 1}
  (``Tokenizer.quantize``);
- ``fsq``: finite scalar quantization (Mentzer et al., ICLR 2024; ``vector_quantize_pytorch.FSQ``:
  tanh bound, rounding with a straight-through gradient) with K levels per axis, K = 1/(2 eps) + 1,
  so both have K^d codes per image (d log2 K bits) and the same capacity d log K nats; its levels
  are mapped onto the same grid, and the same noise is added (lossless on the grid).

Columns, on the held-out split: ``MI`` the InfoNCE bound with the trained critic (nats; the
capacity is d log K), ``MI_tok`` the same bound with both views' codes snapped to their tokens
(what a generator on the tokens keeps; equal to ``MI`` for FSQ), ``grid`` the fraction of codes
within eps/2 of the grid (mean over axes), ``H/logK`` the per-axis token entropy over log K
(mean), ``ppl`` the mean per-axis perplexity (K for uniform use), ``joint`` the distinct token
tuples used out of K^d, ``kNN`` the 5-NN label accuracy on the token codes (grid values; train
tokens -> held-out tokens), ``cpu_s`` the training CPU seconds.

With ``--gan``, each side also trains dimgen's GAN (``configs/digits-gan.yaml``: G(z, c), D with
the code, the same steps, batch and seed for both sides) conditioned on its *token codes* (the grid
values of the training images' tokens), generates one image per held-out image from that image's
tokens, and scores them with dimgen's reference classifier (the one ``dimgen train-gan`` uses):
``consist`` the % of samples classified as their source image's label, ``FID`` in the classifier's
feature space against the held-out images (torch-fidelity).

FSQ needs the optional dev extra ``vector-quantize-pytorch`` (``pip install 'dimgen[dev]'``);
without it the fsq rows are skipped and say so.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/tokens.py                     # digits, eps 0.25, 2 seeds
    python benchmarks/tokens.py --eps 0.1 --squashes sigmoid,steps --epochs 200
    python benchmarks/tokens.py --gan                                 # + token-conditioned GANs
    python benchmarks/tokens.py --data mnist --eps 0.1 --epochs 3 --max-train 10000  # MNIST
    python benchmarks/tokens.py --data mnist --eps 0.1 --epochs 10 --max-train 10240 \
        --curve-every 0 --gan --gan-steps 1500 --seeds 0,1,2      # MNIST table, docs/tokenizer.md
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn
from unittest import mock

import numpy as np
import torch
from torch import Tensor

from dimgen.config import EncoderConfig
from dimgen.infomax import trainer as trainer_module
from dimgen.infomax.channel import NoiseChannel, UniformChannel, grid_points, token_ids
from dimgen.infomax.trainer import estimate_mi, train_encoder

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("MI", "MI_tok", "cap", "grid", "H/logK", "ppl", "joint", "kNN", "cpu_s")


def fsq_available() -> bool:
    """Whether ``vector_quantize_pytorch`` (the FSQ reference implementation) imports."""
    try:
        import vector_quantize_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


class FSQChannel(NoiseChannel):
    """Batch-norm, then FSQ with K levels per axis mapped onto the grid {0, 1/(K-1), ..., 1},
    then U[-eps, eps] noise while training: dimgen's uniform channel with FSQ as the squash."""

    def __init__(self, dim: int, eps: float) -> None:
        from vector_quantize_pytorch import FSQ

        super().__init__(dim)
        self.eps = float(eps)
        self.k = len(grid_points(eps))
        self.fsq = FSQ(levels=[self.k] * dim)

    def squash(self, s: Tensor) -> Tensor:
        q, _ = self.fsq(s.float()[:, None, :])  # (B, 1, d) codes in [-1, 1], straight-through
        half = self.k // 2  # FSQ's integer levels -half .. k - 1 - half, onto 0 .. 1
        return ((q[:, 0] * half + half) / (self.k - 1)).clamp(0.0, 1.0)

    def noise(self, c: Tensor) -> Tensor:
        return (2.0 * torch.rand_like(c) - 1.0) * self.eps

    def capacity(self) -> float:
        return self.dim * math.log1p(1.0 / (2.0 * self.eps))


@contextmanager
def fsq_channel() -> Iterator[None]:
    """Train with :class:`FSQChannel` in place of the uniform channel (encoder, critic, bound,
    optimiser and loop unchanged)."""

    def make(prior: str, dim: int, sigma: float, eps: float, *args: Any) -> NoiseChannel:
        return FSQChannel(dim, eps)

    with mock.patch.object(trainer_module, "make_channel", make):
        yield


@contextmanager
def snapped(channel: NoiseChannel, eps: float) -> Iterator[None]:
    """Codes snapped to the nearest grid point (the tokens) inside ``channel``'s squash."""
    step = float(grid_points(eps)[1])
    k = len(grid_points(eps))
    squash = channel.squash

    def snap(s: Tensor) -> Tensor:
        return (torch.round(squash(s) / step).clamp(0, k - 1) * step).clamp(0.0, 1.0)

    channel.squash = snap  # type: ignore[method-assign]
    try:
        yield
    finally:
        del channel.squash


def token_gan(enc_dir: Path, c_train: Tensor, gan_cfg: Any) -> Any:
    """dimgen's GAN (``dimgen.gan``'s trainer, nothing else changed) trained on ``c_train``,
    (n_train, d) token codes, in place of the encoder's codes; returns its EMA generator.
    ``enc_dir`` supplies the data and the code dimension."""
    from dimgen.config import replace
    from dimgen.gan.trainer import GANTrainer
    from dimgen.training import fit
    from dimgen.training.devices import resolve_device

    class TokenTrainer(GANTrainer):
        def setup(self, ctx: Any) -> Any:
            state = super().setup(ctx)
            if c_train.shape != self.c_train.shape:
                raise ValueError(
                    f"token codes {tuple(c_train.shape)} != {tuple(self.c_train.shape)}"
                )
            self.c_train = c_train.to(self.c_train.device)
            return state

    cfg = replace(gan_cfg, encoder_run=str(enc_dir))
    return fit(TokenTrainer(cfg), resolve_device(cfg.device), None).gan


def gan_scores(
    gan: Any, c_test: Tensor, ds: Any, data: str, gan_cfg: Any, seed: int
) -> dict[str, float]:
    """``consist`` (% of G(z, token codes of held-out image i) classified as label i) and ``FID``
    against the held-out images, both with dimgen's reference classifier for ``ds``."""
    from dimgen.fidelity import (
        FID_CLASSIFIER,
        classifier_outputs,
        extractor_name,
        fidelity_metrics,
        load_classifier,
    )
    from dimgen.fidelity.extractor import reference_extractor

    x_all, y_all = ds.split("all")
    ext = reference_extractor(x_all, y_all, data, epochs=gan_cfg.classifier_epochs)
    clf, _ = load_classifier(ext.path)
    images = gan.generate(c_test, seed=1000 + seed)
    _, probs = classifier_outputs(clf, images)
    consist = 100.0 * float((probs.argmax(1).numpy() == ds.y_test).mean())
    fid = fidelity_metrics(ds.x_test, images, ext.path, extractor_name(data), seed=seed)
    return {"consist": consist, "FID": fid[FID_CLASSIFIER]}


def measure(
    cfg: EncoderConfig, fsq: bool, gan_cfg: Any = None, work: Path | None = None
) -> dict[str, Any]:
    """Train one side and return its row (see the module docstring for the columns).

    With ``gan_cfg``, also train a GAN on its token codes; ``work / f"seed{seed}"`` holds the
    seed's dimgen encoder run (written by the first dimgen side, reused by FSQ for its data)."""
    from sklearn.neighbors import KNeighborsClassifier

    enc_dir = None if work is None else work / f"seed{cfg.seed}"
    t0 = time.process_time()
    if fsq:
        with fsq_channel():
            run = train_encoder(cfg, None, progress=False)
    else:
        out = enc_dir if enc_dir is not None and not enc_dir.exists() else None
        run = train_encoder(cfg, out, progress=False)
    cpu = time.process_time() - t0
    m, eps, model = run.metrics, cfg.eps, run.model
    k = len(grid_points(eps))
    from dimgen.data import load_data

    ds = load_data(cfg.data, cfg.data_root, cfg.test_fraction, cfg.split_seed)
    x_test = torch.from_numpy(np.ascontiguousarray(ds.x_test))
    with snapped(model.channel, eps):
        mi_tok, _ = estimate_mi(model, x_test, cfg.batch_size, cfg.eval_batches, cfg.seed + 1)
    tr, te = run.split == "train", run.split == "test"
    ids_tr, ids_te = token_ids(run.codes[tr], eps), token_ids(run.codes[te], eps)
    grid = grid_points(eps)
    t = m["tokens"]
    knn = KNeighborsClassifier(n_neighbors=5).fit(grid[ids_tr], run.labels[tr])
    row: dict[str, Any] = {}
    if gan_cfg is not None and enc_dir is not None:
        # every training image's tokens (the GAN trains on the whole split, even with max_train)
        with torch.no_grad():
            x_train = torch.from_numpy(np.ascontiguousarray(ds.x_train))
            codes_all = torch.cat([model.channel.normalise(model.encoder(x_train[i : i + 4096]))
                                   for i in range(0, len(x_train), 4096)])  # fmt: skip
        c_tr = torch.from_numpy(grid[token_ids(codes_all, eps)].astype(np.float32))
        c_te = torch.from_numpy(grid[ids_te].astype(np.float32))
        t0 = time.process_time()
        gan = token_gan(enc_dir, c_tr, gan_cfg)
        row = {
            **gan_scores(gan, c_te, ds, cfg.data, gan_cfg, cfg.seed),
            "gan_cpu_s": time.process_time() - t0,
        }
    return {
        **row,
        "MI": m["mi_lower_bound_nats"],
        "MI_tok": mi_tok,
        "cap": m["capacity_nats"],
        "grid": float(np.mean(t["grid_fraction"])),
        "H/logK": float(np.mean(t["entropy_ratio"])),
        "ppl": t["perplexity_mean"],
        "joint": f"{len(np.unique(ids_te, axis=0))}/{k**cfg.dim}",
        "kNN": float(knn.score(grid[ids_te], run.labels[te])),
        "cpu_s": cpu,
        "_squash_ok": isinstance(model.channel, UniformChannel) != fsq,
    }


def _fmt(v: Any) -> str:
    return v if isinstance(v, str) else f"{float(v):.3f}" if abs(float(v)) < 100 else f"{v:.0f}"


class _OneLineParser(argparse.ArgumentParser):
    """A bad option is one line and exit 2, like dimgen's CLI (not argparse's usage block)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see benchmarks/tokens.py --help)", file=sys.stderr)
        raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    ap = _OneLineParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="digits", help="digits (default) or mnist")
    ap.add_argument("--eps", type=float, default=0.25)
    ap.add_argument("--dim", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--squashes", default="sigmoid,steps", help="dimgen squashes to compare")
    ap.add_argument("--squash-temp", type=float, default=None, help="steps: final temperature")
    ap.add_argument("--gan", action="store_true", help="also a GAN on each side's token codes")
    ap.add_argument("--gan-steps", type=int, default=None, help="GAN steps (default: the preset's)")
    ap.add_argument("--max-train", type=int, default=0, help="encoders: first N training images")
    ap.add_argument(
        "--lr-schedule",
        default="constant",
        choices=("constant", "cosine"),
        help="encoders' learning rate, both sides (configs/digits-tokens.yaml: cosine)",
    )
    ap.add_argument("--curve-every", type=int, default=1,
                    help="encoders: held-out certificate every N epochs (0: only the final "
                    "metrics; on MNIST each costs ~5 CPU s)")  # fmt: skip
    args = ap.parse_args(argv)
    columns = COLUMNS + (("consist", "FID", "gan_cpu_s") if args.gan else ())
    gan_cfg = None
    if args.gan:
        from dimgen.config import load_config, replace
        from dimgen.gan import GANConfig

        preset = "digits-gan.yaml" if args.data == "digits" else "mnist-gan-cpu.yaml"
        gan_cfg = load_config(ROOT / "configs" / preset, GANConfig)
        gan_cfg = replace(gan_cfg, eval_samples=0, sample_every=0, checkpoint_every=0, threads=1,
                          **({"steps": args.gan_steps} if args.gan_steps else {}))  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="tokens-bench-"))
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    sides = [(f"dimgen-{s}", s) for s in args.squashes.split(",")] + [("fsq", None)]
    have_fsq = fsq_available()
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in sides}
    t0 = time.perf_counter()
    for seed in seeds:
        for name, squash in sides:
            if squash is None and not have_fsq:
                continue
            extra = {"squash_temp": args.squash_temp} if args.squash_temp else {}
            cfg = EncoderConfig(data=args.data, prior="uniform", eps=args.eps, dim=args.dim,
                                epochs=args.epochs, seed=seed, squash=squash or "sigmoid",
                                max_train=args.max_train, curve_every=args.curve_every,
                                lr_schedule=args.lr_schedule, **extra)  # fmt: skip
            row = measure(cfg, squash is None, gan_cfg, work if args.gan else None)
            assert row.pop("_squash_ok")
            rows[name].append(row)
            print(f"# {name} seed {seed}: " + ", ".join(f"{c}={_fmt(row[c])}" for c in columns),
                  flush=True)  # fmt: skip
    k = len(grid_points(args.eps))
    print(f"\n{args.data}, d = {args.dim}, eps = {args.eps:g}: K = {k} tokens per axis, "
          f"{args.dim * math.log2(k):.2f} bits per image; {args.epochs} epochs, seeds "
          f"{args.seeds}; {time.perf_counter() - t0:.0f} s wall. Means over seeds "
          "(joint: first seed).\n")  # fmt: skip
    print("| method | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, _ in sides:
        if not rows[name]:
            print(f"| {name} | skipped: vector-quantize-pytorch is not installed |")
            continue
        cells = [rows[name][0][c] if isinstance(rows[name][0][c], str)
                 else float(np.mean([r[c] for r in rows[name]])) for c in columns]  # fmt: skip
        print(f"| {name} | " + " | ".join(_fmt(v) for v in cells) + " |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    from dimgen.errors import DimgenError

    try:
        main()
    except DimgenError as exc:  # bad options: one line, exit 2, as the CLI does
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
