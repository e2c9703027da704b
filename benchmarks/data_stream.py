"""Reading a folder of large JPEGs: dimgen's streamed ``folder:`` path against torchvision.

Generates N JPEGs of ``--megapixels`` (random smooth colour fields) in a temporary folder, then
runs, each in a fresh process (so peak RSS is that reader's alone):

* ``stream``: :class:`dimgen.data.stream.StreamBatches` over the folder (``folder:...,stream=1``:
  JPEG ``draft`` decoding, resize + centre crop to ``--side``, uint8, batches moved to the CPU);
* ``torchvision``: ``ImageFolder`` + ``DataLoader`` with the same transforms (``Resize(side)``,
  ``CenterCrop(side)``, ``PILToTensor``), the same batch size and workers;
* ``memory``: :func:`dimgen.data.folder.read_folder` (the in-memory reader, one image at a time).

Reported: images/s over two epochs (persistent workers; their start-up included) and over the
second alone (steady state), peak RSS of the process (MB; and its growth over the RSS after
importing torch, torchvision and dimgen) and of its largest child process (a DataLoader worker; without workers, a helper torch starts at import).

Usage:
    python benchmarks/data_stream.py                           # 24 x 12 MP, side 64, 2 workers
    python benchmarks/data_stream.py -n 1000 --workers 8       # the issue's size
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_folder(root: Path, n: int, megapixels: float) -> None:
    import numpy as np
    from PIL import Image

    h = int((megapixels * 1e6 * 3 / 4) ** 0.5)
    w = h * 4 // 3
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)  # smooth: a realistic file size
        Image.fromarray(small).resize((w, h), Image.BILINEAR).save(d / f"{i:05d}.jpg", quality=90)


def child(mode: str, root: str, side: int, workers: int, batch: int) -> dict[str, float]:
    import torch
    import torchvision  # noqa: F401 - imported before the baseline, as every reader needs it

    import dimgen.data.folder
    import dimgen.data.stream  # noqa: F401

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # after the imports, before reading
    t0 = time.perf_counter()
    n, loader, images = 0, None, None
    if mode == "stream":
        from dimgen.data.folder import FolderSpec, _layout, folder_mode
        from dimgen.data.stream import StreamBatches, StreamedImages

        spec = FolderSpec(Path(root), side=side, stream=True, workers=workers)
        files = _layout(spec)[0]  # all of them, as ImageFolder reads them
        images = StreamedImages(files, side, folder_mode(spec, files), workers)
        loader = StreamBatches(images, batch_size=batch, generator=torch.Generator().manual_seed(0))
        for _ in range(2):
            t1 = time.perf_counter()
            for (xb,) in loader:
                n += len(xb)
    elif mode == "torchvision":
        from torchvision import datasets, transforms

        tf = transforms.Compose(
            [transforms.Resize(side), transforms.CenterCrop(side), transforms.PILToTensor()]
        )
        loader = torch.utils.data.DataLoader(
            datasets.ImageFolder(root, transform=tf),
            batch_size=batch,
            shuffle=True,
            num_workers=workers,
            drop_last=True,
            persistent_workers=workers > 0,
        )
        for _ in range(2):
            t1 = time.perf_counter()
            for xb, _ in loader:
                n += len(xb.float() / 255.0)  # as the streamed path scales it
    else:
        from dimgen.data.folder import FolderSpec, read_folder

        t1 = time.perf_counter()
        n = len(read_folder(FolderSpec(Path(root), side=side, mode="rgb"))[0])
    seconds = time.perf_counter() - t0
    last = n if mode == "memory" else n // 2  # images of the last epoch (timed from t1)
    steady = last / (time.perf_counter() - t1)
    import gc

    loader = images = None  # shuts the DataLoader workers down: their RSS is then counted
    gc.collect()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # largest worker
    return {"images": n, "seconds": seconds, "images_per_s": n / seconds, "steady_per_s": steady,
            "peak_rss_mb": rss / 1024, "baseline_rss_mb": base / 1024,
            "peak_worker_rss_mb": kids / 1024}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=24, help="JPEGs to generate")
    ap.add_argument("--megapixels", type=float, default=12.0)
    ap.add_argument("--side", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--modes", default="stream,torchvision,memory")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.root, args.side, args.workers, args.batch)))
        return
    with tempfile.TemporaryDirectory(prefix="dimgen-stream-") as tmp:
        t0 = time.perf_counter()
        make_folder(Path(tmp), args.n, args.megapixels)
        print(f"{args.n} JPEGs of {args.megapixels:g} MP generated in "
              f"{time.perf_counter() - t0:.1f} s; side {args.side}, {args.workers} workers, "
              f"batch {args.batch}")  # fmt: skip
        rows = {}
        for mode in args.modes.split(","):
            cmd = [sys.executable, __file__, "--child", mode, "--root", tmp, "--side",
                   str(args.side), "--workers", str(args.workers), "--batch", str(args.batch)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows[mode] = r = json.loads(out.strip().splitlines()[-1])
            grow = r["peak_rss_mb"] - r["baseline_rss_mb"]
            print(f"{mode:12s} {r['images']:6d} images  {r['images_per_s']:7.1f} images/s "
                  f"(2nd epoch {r['steady_per_s']:7.1f})  "
                  f"peak RSS {r['peak_rss_mb']:6.0f} MB (+{grow:.0f} MB over the imports; "
                  f"largest child process {r['peak_worker_rss_mb']:.0f} MB)")  # fmt: skip
        if "stream" in rows and "torchvision" in rows:
            ratio = rows["stream"]["images_per_s"] / rows["torchvision"]["images_per_s"]
            steady = rows["stream"]["steady_per_s"] / rows["torchvision"]["steady_per_s"]
            print(
                f"stream / torchvision throughput: {ratio:.2f} (worker start-up included), "
                f"{steady:.2f} (2nd epoch)"
            )


if __name__ == "__main__":
    main()
