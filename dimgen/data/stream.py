"""Streamed ``folder:PATH,stream=1`` sources: images decoded on the fly, never all in memory.

:func:`load_stream` splits the folder's files as :func:`dimgen.data.load_data` splits its images
(the same seeded permutation), so a streamed run sees exactly the images, labels and split of the
in-memory one. :class:`StreamedImages` stands in for an image tensor (``len``, ``[slice]``,
``[index tensor]``, ``.device``): indexing decodes just those images
(:func:`dimgen.data.folder.decode_image`) and returns float32 in [0, 1] on the device, as
``uint8 / 255`` (the image-scale rule, bit-identical to the in-memory path). :class:`StreamBatches`
is :class:`dimgen.data.TensorBatches` for it: the same seeded per-epoch order drawn from the same
generator (so the checkpointed generator is the data position), each process decoding only its
shard of every global batch in torch ``DataLoader`` worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .folder import FolderSpec, _layout, decode_image, folder_mode, parse_folder_source

__all__ = [
    "FolderImages",
    "StreamBatches",
    "StreamedData",
    "StreamedImages",
    "data_mode",
    "is_streamed",
    "load_stream",
    "memory_source",
    "take",
]

#: Images decoded in the calling process for one indexing; larger requests use the workers.
_INLINE = 64


class FolderImages(torch.utils.data.Dataset):
    """Map-style torch dataset of image files: item ``i`` is uint8 (C, side, side), decoded in
    whichever process asks (a DataLoader worker)."""

    def __init__(self, files: Sequence[Path], side: int, mode: str) -> None:
        self.files, self.side, self.mode = list(files), side, mode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor:
        return torch.from_numpy(decode_image(self.files[i], self.side, self.mode))


def _stack(items: list[Tensor]) -> Tensor:
    return torch.stack(items)


def _unit(x: Tensor, device: torch.device) -> Tensor:
    """uint8 -> float32 / 255 on ``device`` (as :func:`dimgen.data.unit_images`)."""
    return x.to(device, non_blocking=True).float() / 255.0


class _Batches:
    """A batch sampler whose index lists are set per epoch (read in the main process)."""

    def __init__(self) -> None:
        self.lists: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.lists)

    def __len__(self) -> int:
        return len(self.lists)


class _Loader:
    """One DataLoader over ``images``, its workers kept across epochs and indexings."""

    def __init__(self, images: FolderImages, workers: int) -> None:
        self.sampler = _Batches()
        # A private generator: the loader never draws from the global RNG, which the model's
        # noise and augmentations use (in-memory and streamed runs stay bit-identical).
        self.loader = torch.utils.data.DataLoader(
            images,
            batch_sampler=self.sampler,
            num_workers=workers,
            collate_fn=_stack,
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(0),
        )  # forked workers (the default): after a kill -9 of the trainer they see their parent
        # gone and exit within seconds (workers from a fork server would not, and leak)

    def batches(self, lists: list[list[int]]) -> Iterator[Tensor]:
        self.sampler.lists = lists
        yield from self.loader


class StreamedImages:
    """Images of a folder addressed like an (N, C, side, side) float32 tensor, decoded on demand.

    ``x[i:j]`` and ``x[index_tensor]`` decode those images (in the DataLoader workers when more
    than a few) and return float32 in [0, 1] on :attr:`device`; :meth:`subset` and :meth:`to`
    return new views without decoding anything (:meth:`select` and :meth:`joined` too);
    :meth:`chunks` decodes them all in order, a chunk at a time (codes, embeddings, features),
    and :meth:`batches` any index lists (a classifier's shuffled epoch), in the workers.
    """

    dtype = torch.float32
    """The dtype indexing returns (as the in-memory path's float32 images)."""

    def __init__(self, files: Sequence[Path], side: int, mode: str, workers: int,
                 device: torch.device | str = "cpu", loader: _Loader | None = None) -> None:  # fmt: skip
        self.dataset = FolderImages(files, side, mode)
        self.workers = workers
        self.device = torch.device(device)
        self.shape = (len(self.dataset), 1 if mode == "grey" else 3, side, side)
        self._loader = loader

    def __len__(self) -> int:
        return len(self.dataset)

    def loader(self) -> _Loader:
        if self._loader is None:
            self._loader = _Loader(self.dataset, self.workers)
        return self._loader

    def to(self, device: torch.device | str) -> StreamedImages:
        d = self.dataset
        return StreamedImages(d.files, d.side, d.mode, self.workers, device, self._loader)

    def subset(self, n: int) -> StreamedImages:
        """The first ``n`` images (a view; nothing is decoded)."""
        d = self.dataset
        return StreamedImages(d.files[:n], d.side, d.mode, self.workers, self.device)

    def select(self, rows: Sequence[int] | np.ndarray) -> StreamedImages:
        """Images ``rows`` in that order (a view; nothing is decoded)."""
        d = self.dataset
        files = [d.files[int(i)] for i in rows]
        return StreamedImages(files, d.side, d.mode, self.workers, self.device)

    def joined(self, other: StreamedImages) -> StreamedImages:
        """These images followed by ``other``'s (a view, as ``np.concatenate`` of the arrays)."""
        d, o = self.dataset, other.dataset
        if (d.side, d.mode) != (o.side, o.mode):
            raise ValueError("joined streamed images must share side and mode")
        return StreamedImages(d.files + o.files, d.side, d.mode, self.workers, self.device)

    def decode(self, idx: Sequence[int]) -> Tensor:
        """Images ``idx`` as float32 (len(idx), C, side, side) in [0, 1] on :attr:`device`."""
        idx = [int(i) for i in idx]
        if not idx:
            return torch.zeros((0, *self.shape[1:]), device=self.device)
        if len(idx) <= _INLINE or self.workers == 0:
            x = torch.stack([self.dataset[i] for i in idx])
        else:  # in the workers, a few chunks in flight
            step = -(-len(idx) // max(1, 2 * self.workers))
            lists = [idx[k : k + step] for k in range(0, len(idx), step)]
            x = torch.cat(list(self.loader().batches(lists)))
        return _unit(x, self.device)

    def chunks(self, size: int) -> Iterator[Tensor]:
        """Every image in order as float32 chunks of ``size`` (the last may be shorter) on
        :attr:`device`, decoded in the DataLoader workers, a few chunks ahead; so a pass over a
        folder of any size holds only a few chunks (``torch.cat`` of them equals ``x[:]``)."""
        lists = [list(range(k, min(k + size, len(self)))) for k in range(0, len(self), size)]
        return self.batches(lists)

    def batches(self, lists: Sequence[Sequence[int]]) -> Iterator[Tensor]:
        """Images ``x[list]`` for each index list in turn, float32 on :attr:`device`, decoded in
        the DataLoader workers a few lists ahead."""
        lists = [[int(i) for i in idx] for idx in lists]
        for xb in self.loader().batches(lists):
            yield _unit(xb, self.device)

    def __getitem__(self, key: slice | Tensor | Sequence[int]) -> Tensor:
        if isinstance(key, slice):
            return self.decode(range(len(self))[key])
        if isinstance(key, Tensor):
            key = key.cpu().tolist()
        return self.decode(key)


class StreamBatches:
    """Shuffled mini-batches decoded from files, as :class:`dimgen.data.TensorBatches` yields them.

    Every epoch draws ``randperm(n, generator)`` exactly as ``TensorBatches`` does, so with the
    same generator state the batches are the same images in the same order; the generator is the
    data position a checkpoint keeps. ``shard=(rank, world)``: this process decodes only its
    contiguous 1/world of every global batch (DistributedSampler-style; all processes share the
    seed). Batches are decoded in ``images.workers`` DataLoader worker processes and moved to
    ``images.device`` as float32 in [0, 1].
    """

    def __init__(
        self,
        images: StreamedImages,
        *,
        batch_size: int,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        rank, world = shard
        if world < 1 or not 0 <= rank < world or batch_size % world or batch_size < 1:
            raise ValueError(f"shard {shard} does not divide batches of {batch_size}")
        self.images, self.n = images, len(images)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.generator, self.shard = generator, shard

    def __len__(self) -> int:
        return self.n // self.batch_size  # the last partial batch is dropped

    def order(self) -> list[list[int]]:
        """This epoch's index lists for this process (draws from the generator once)."""
        if self.shuffle:
            idx = torch.randperm(self.n, generator=self.generator)
        else:
            idx = torch.arange(self.n)
        rank, world = self.shard
        part = self.batch_size // world
        out = []
        for b in range(len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            out.append(sel[rank * part : (rank + 1) * part].tolist())
        return out

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        return self.epoch()

    def epoch(self, start: int = 0) -> Iterator[tuple[Tensor, ...]]:
        """This epoch's batches from batch ``start`` on (draws the order once, decodes only the
        batches from ``start``): a run resumed part-way through an epoch goes on from there."""
        device = self.images.device
        for xb in self.images.loader().batches(self.order()[start:]):
            yield (_unit(xb, device),)


@dataclass
class StreamedData:
    """A streamed folder split as :class:`dimgen.data.Dataset` splits it (labels in memory)."""

    name: str
    x_train: StreamedImages
    y_train: np.ndarray | None
    x_test: StreamedImages
    y_test: np.ndarray | None
    workers: int

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample, (C, side, side)."""
        return tuple(self.x_train.shape[1:])

    def head(self, n_train: int, n_test: int) -> StreamedData:
        """The first ``n_train`` training and ``n_test`` held-out images (views, labels alike;
        nothing decoded): what :func:`dimgen.training.smoke.cap_data` keeps of a smoke run."""
        y_tr = None if self.y_train is None else self.y_train[:n_train]
        y_te = None if self.y_test is None else self.y_test[:n_test]
        return StreamedData(self.name, self.x_train.subset(n_train), y_tr,
                            self.x_test.subset(n_test), y_te, self.workers)  # fmt: skip


def is_streamed(source: str) -> bool:
    """Whether ``source`` is a ``folder:PATH,...,stream=1`` source (decoded on the fly).

    Raises:
        DataError: bad ``folder:`` options.
    """
    return source.startswith("folder:") and parse_folder_source(source).stream


def memory_source(source: str) -> str:
    """``source`` without its ``stream`` / ``workers`` options: the name of the data whatever
    path reads it (a streamed run shares the in-memory run's cached reference classifier)."""
    if not source.startswith("folder:"):
        return source
    parts = source.split(",")
    keep = len(parts)
    while keep > 1 and "=" in parts[keep - 1]:  # the options (parse_folder_source)
        keep -= 1
    options = [o for o in parts[keep:] if o.split("=", 1)[0].strip() not in ("stream", "workers")]
    return ",".join(parts[:keep] + options)


def data_mode(ds: object) -> dict[str, object]:
    """``run.json``'s ``data_mode``: ``{"mode": "stream", "workers": N}`` for a streamed source,
    ``{"mode": "memory"}`` otherwise."""
    if isinstance(ds, StreamedData):
        return {"mode": "stream", "workers": ds.workers}
    return {"mode": "memory"}


def take(x: np.ndarray | StreamedImages, rows: slice | np.ndarray | Sequence[int]) -> np.ndarray:
    """Rows ``rows`` of an in-memory image array or a streamed split, as a float32 numpy array
    (a streamed split decodes just those rows): for the bounded subsets evaluations read."""
    if isinstance(x, StreamedImages):
        return x[rows].cpu().numpy()
    return x[rows]


def load_stream(source: str, test_fraction: float = 0.2, seed: int = 0) -> StreamedData:
    """A ``folder:PATH,stream=1`` source, listed but not decoded, with the train/test split
    :func:`dimgen.data.load_data` would give (the same seeded permutation of the files).

    Raises:
        DataError: not a folder source, a bad layout, fewer than 4 images, or (``mode=auto``) an
            unreadable image header.
    """
    spec: FolderSpec = parse_folder_source(source)
    files, labels, _ = _layout(spec)
    name = spec.path.name or str(spec.path)
    n = len(files)
    if n < 4:
        raise DataError(f"{name}: need at least 4 samples, got {n}")
    mode = folder_mode(spec, files)
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(test_fraction * n))
    te, tr = perm[:n_test], perm[n_test:]

    def part(rows: np.ndarray) -> StreamedImages:
        return StreamedImages([files[i] for i in rows], spec.side, mode, spec.workers)

    y_tr = None if labels is None else labels[tr]
    y_te = None if labels is None else labels[te]
    return StreamedData(name, part(tr), y_tr, part(te), y_te, spec.workers)
