"""Time dimgen's training step against a straightforward reference loop, in one run.

The reference is written here, the way a first implementation of the paper's MNIST set-up looks:
a torch ``DataLoader`` over a per-sample ``Dataset`` whose ``__getitem__`` adds the pixel noise,
host-to-device copies per batch, fp32, the encoder run once per view, the critic applied to the
explicit B x B x 2d concatenation of pairs, InfoNCE as a cross-entropy, and ``loss.item()``
logged every step. dimgen's step is the one ``dimgen encode`` runs (`dimgen.infomax.trainer.make_step`):
data resident on the device, batched augmentation, one encoder pass for both views, the fused
split-first-layer critic, optional row chunks, bf16 autocast and ``torch.compile`` as configured.

Both start from the same weights (the reference copies dimgen's modules) and see the same data.
Blocks of steps alternate between the two (the order flips every round) and the ratio is taken per
round, so a machine whose load changes during the run still gives a fair ratio.

Usage:
    python benchmarks/train_step.py                          # CUDA if present, else a CPU run
    python benchmarks/train_step.py --device cuda --batch-size 1024 --steps 50 --rounds 5
    python benchmarks/train_step.py --device cuda --compile --memory-batch 4096
    python benchmarks/train_step.py --device cpu --config configs/digits-gaussian.yaml --batch-size 128
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dimgen.config import load_config, replace
from dimgen.data import TensorBatches
from dimgen.infomax.critics import ConcatCritic
from dimgen.infomax.objectives import NoisyInfoMax
from dimgen.infomax.trainer import build_model, make_step

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_EPOCHS, PROTOCOL_N = 2000, 60_000


# ---------------------------------------------------------------------------------------------
# the straightforward reference


class PerSampleNoisy(torch.utils.data.Dataset):
    """(x, x + std * noise) one sample at a time, as a per-sample augmentation pipeline does."""

    def __init__(self, x: Tensor, std: float) -> None:
        self.x, self.std = x, std

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x = self.x[i]
        return x, x + self.std * torch.randn_like(x)


class ReferenceInfoMax(nn.Module):
    """The same encoder, normalisation and critic weights as dimgen's model, computed plainly."""

    def __init__(self, model: NoisyInfoMax) -> None:
        super().__init__()
        critic = model.critic
        if not isinstance(critic, ConcatCritic):
            raise SystemExit("the reference loop implements the paper's MLP critic only")
        self.encoder = copy.deepcopy(model.encoder)
        self.norm = copy.deepcopy(model.channel.norm)
        self.sigma = float(getattr(model.channel, "sigma", 0.0))
        if getattr(model.channel, "eps", None) is not None and not hasattr(model.channel, "sigma"):
            raise SystemExit("the reference loop implements the Gaussian channel only")
        self.critic = nn.Sequential(copy.deepcopy(critic.first), *copy.deepcopy(critic.rest))

    def forward(self, x: Tensor, x_aug: Tensor) -> Tensor:
        b = x.shape[0]
        noisy = self.norm(self.encoder(x))
        noisy = noisy + self.sigma * torch.randn_like(noisy)
        clean_aug = self.norm(self.encoder(x_aug))
        d = noisy.shape[1]
        pairs = torch.cat(  # (B, B, 2d): row i = f(x'_i), column j = f(x_j) + z_j
            [clean_aug[:, None, :].expand(b, b, d), noisy[None, :, :].expand(b, b, d)], dim=-1
        )
        scores = self.critic(pairs).squeeze(-1)  # (B, B)
        target = torch.arange(b, device=x.device)
        return math.log(b) - F.cross_entropy(scores, target)  # InfoNCE


def reference_step(
    model: ReferenceInfoMax, opt: torch.optim.Optimizer, device: torch.device
) -> Callable[[tuple[Tensor, Tensor]], float]:
    def step(batch: tuple[Tensor, Tensor]) -> float:
        x, x_aug = (t.to(device, non_blocking=True) for t in batch)
        bound = model(x, x_aug)
        opt.zero_grad()
        (-bound).backward()
        opt.step()
        return bound.item()  # logged every step, as such loops do (one host sync per step)

    return step


# ---------------------------------------------------------------------------------------------
# harness


def cycle(make: Callable[[], Iterator]) -> Iterator:
    while True:
        yield from make()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_block(step: Callable, batches: Iterator, n: int, device: torch.device) -> float:
    """Seconds per step over ``n`` steps (data loading included)."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step(next(batches))
    sync(device)
    return (time.perf_counter() - t0) / n


def peak_memory(step: Callable, batches: Iterator, device: torch.device) -> float | None:
    """Peak GPU memory (MiB) of one step, or None on the CPU."""
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    step(next(batches))
    sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def load_images(source: str, data_root: str | None, n: int, seed: int) -> tuple[Tensor, str]:
    """Training images for the config's data source: MNIST (real with a root, else random
    MNIST-shaped images), or a bundled / npz source as dimgen loads it."""
    from dimgen.data import load_data

    if source.startswith("mnist") and not data_root:
        g = torch.Generator().manual_seed(seed)
        return torch.rand(n, 1, 28, 28, generator=g), f"random 1x28x28 x {n}"
    ds = load_data(source, data_root)
    return torch.from_numpy(ds.x_train), f"{source} train x {len(ds.x_train)}"


def build(
    cfg, x: Tensor, device: torch.device, fused: bool = True
) -> tuple[Callable, Iterator, NoisyInfoMax]:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, tuple(x.shape[1:])).to(device)
    if isinstance(model.critic, ConcatCritic):
        model.critic.fused = fused
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = x.to(device)
    loader = TensorBatches(data, batch_size=cfg.batch_size, generator=gen)
    step = make_step(model, model, opt, cfg, device)
    return (lambda b: step(b[0])), cycle(lambda: iter(loader)), model


def memory_check(cfg, x: Tensor, device: torch.device, batch: int, chunk: int) -> None:
    """Peak memory of dimgen's step at a large batch, with and without critic row chunks."""
    print(f"\nmemory at batch {batch} (dimgen step, amp={cfg.amp}):")
    for c in (0, chunk):
        big = replace(cfg, batch_size=batch, critic_chunk=c, compile=False)
        try:
            step, batches, _ = build(big, x[: max(2 * batch, batch + 1)], device)
            step(next(batches))
            mem = peak_memory(step, batches, device)
            sec = timed_block(step, batches, 3, device)
            print(f"  critic_chunk={c:<5d} peak {mem:9.0f} MiB   {sec * 1e3:8.1f} ms/step")
        except torch.cuda.OutOfMemoryError:
            print(f"  critic_chunk={c:<5d} out of memory")
        torch.cuda.empty_cache()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto | cuda | cpu")
    ap.add_argument("--config", default=str(ROOT / "configs" / "mnist-gaussian.yaml"))
    ap.add_argument("--batch-size", type=int, help="default: the config's on CUDA, 256 on CPU")
    ap.add_argument("--steps", type=int, help="steps per timed block (default 30 CUDA, 2 CPU)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (ratio = median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps of each loop first")
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, help="bf16 autocast (CUDA)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, help="torch.compile")
    ap.add_argument("--chunk", type=int, help="critic row chunk for dimgen (0: none)")
    ap.add_argument("--ref-workers", type=int, default=0, help="DataLoader workers (reference)")
    ap.add_argument("--data-root", help="real MNIST (torchvision layout); default random images")
    ap.add_argument("--n", type=int, default=PROTOCOL_N, help="images when random (default 60000)")
    ap.add_argument(
        "--memory-batch", type=int, default=4096, help="CUDA memory check batch (0: skip)"
    )
    ap.add_argument("--memory-chunk", type=int, default=512, help="critic chunk for that check")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    ap.add_argument(
        "--ablate", action="store_true", help="also time dimgen with a plain-autograd critic"
    )
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cpu":
        from dimgen.training.speed import tune_cpu_allocator

        tuned = (
            tune_cpu_allocator()
        )  # what `dimgen encode` does; process-wide, so both loops get it
    cfg = load_config(args.config)
    on_cpu = device.type == "cpu"
    cfg = replace(
        cfg,
        device=str(device),
        batch_size=args.batch_size or (min(256, cfg.batch_size) if on_cpu else cfg.batch_size),
        amp=args.amp,
        compile=args.compile,
        critic_chunk=args.chunk,
    )
    steps = args.steps or (2 if on_cpu else 30)
    x, data_desc = load_images(cfg.data, args.data_root, args.n, cfg.seed)

    dim_step, dim_batches, model = build(cfg, x, device)
    ref_model = ReferenceInfoMax(model).to(device).train()
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=cfg.lr)
    loader = torch.utils.data.DataLoader(
        PerSampleNoisy(x, cfg.aug_noise),
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.ref_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.ref_workers > 0,
    )
    ref_step, ref_batches = reference_step(ref_model, ref_opt, device), cycle(lambda: iter(loader))
    model.train()

    cpu = platform.processor() or platform.machine()
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"CPU ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    print(f"device: {where}; torch {torch.__version__}")
    print(
        f"config: {Path(args.config).name}, batch {cfg.batch_size}, critic hidden "
        f"{cfg.critic_hidden}, amp {cfg.amp and device.type == 'cuda'}, compile {cfg.compile}, "
        f"critic_chunk {cfg.critic_chunk}, data {data_desc}"
        + (f", allocator tuned {tuned}" if on_cpu else "")
    )

    t0 = time.perf_counter()
    for _ in range(args.warmup):  # includes compilation when --compile
        dim_step(next(dim_batches))
        ref_step(next(ref_batches))
    sync(device)
    print(f"warm-up: {time.perf_counter() - t0:.1f} s ({args.warmup} steps of each)")

    loops = [("ref", ref_step, ref_batches), ("dim", dim_step, dim_batches)]
    if args.ablate:
        plain_step, plain_batches, _ = build(cfg, x, device, fused=False)
        for _ in range(args.warmup):
            plain_step(next(plain_batches))
        loops.append(("plain", plain_step, plain_batches))
    times: dict[str, list[float]] = {k: [] for k, _, _ in loops}
    for r in range(args.rounds):
        order = loops if r % 2 == 0 else loops[::-1]
        for k, f, b in order:
            times[k].append(timed_block(f, b, steps, device))
    ref_t, dim_t = times["ref"], times["dim"]
    ratios = [a / b for a, b in zip(ref_t, dim_t, strict=True)]

    mem_ref = peak_memory(ref_step, ref_batches, device)
    mem_dim = peak_memory(dim_step, dim_batches, device)
    paper = tuple(x.shape[1:]) == (1, 28, 28)
    if paper:  # the paper's MNIST protocol at this batch size
        steps_total = PROTOCOL_EPOCHS * (PROTOCOL_N // cfg.batch_size)
        what = f"{PROTOCOL_EPOCHS} epochs x {PROTOCOL_N // cfg.batch_size} steps (60,000 images)"
    else:  # this config's own run
        steps_total = cfg.epochs * (len(x) // cfg.batch_size)
        what = f"{cfg.epochs} epochs x {len(x) // cfg.batch_size} steps ({len(x)} images)"

    def row(label: str, times: list[float], mem: float | None) -> str:
        sec = statistics.median(times)
        memtxt = f"{mem:9.0f} MiB" if mem is not None else "        n/a"
        return (
            f"{label:<10s} {sec * 1e3:10.2f} {cfg.batch_size / sec:12.0f} {memtxt} "
            f"{_duration(sec * steps_total):>14s}"
        )

    print(f"\n{'loop':<10s} {'ms/step':>10s} {'images/s':>12s} {'peak mem':>13s} "
          f"{'projected*':>14s}")  # fmt: skip
    print(row("reference", ref_t, mem_ref))
    print(row("dimgen", dim_t, mem_dim))
    if args.ablate:
        print(row("(plain)", times["plain"], None) + "   dimgen with a plain-autograd critic")
    lo, hi = min(ratios), max(ratios)
    print(
        f"\nspeed-up (reference / dimgen, median of {args.rounds} alternating rounds of {steps} "
        f"steps): {statistics.median(ratios):.2f}x  [range {lo:.2f}-{hi:.2f}]"
    )
    if args.ablate:
        fused = [a / b for a, b in zip(times["plain"], dim_t, strict=True)]
        print(f"fused critic: {statistics.median(fused):.2f}x faster than plain autograd "
              f"[range {min(fused):.2f}-{max(fused):.2f}]")  # fmt: skip
    print(f"* projected training time: {what} at batch {cfg.batch_size} = {steps_total:,} steps")
    if on_cpu:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of this process (both loops): {rss:.0f} MiB")
    h, b = cfg.critic_hidden, cfg.batch_size
    print(
        f"one B x B x H critic activation: {b * b * h * 4 / 2**20:.0f} MiB in fp32 "
        f"({b} x {b} x {h}); the reference also builds the B x B x 2d pairs"
    )
    if device.type == "cuda" and args.memory_batch:
        memory_check(cfg, x, device, args.memory_batch, args.memory_chunk)


if __name__ == "__main__":
    main()
