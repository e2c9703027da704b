"""Your own images: the ``folder:PATH`` data source (torchvision ``ImageFolder`` or a flat folder).

Two layouts are read:

* **ImageFolder** (torchvision's layout): ``PATH/<class>/<image>``; each sub-folder is a class,
  labelled 0..K-1 in sorted name order (as :class:`torchvision.datasets.ImageFolder` does).
* **flat**: ``PATH/<image>``, no sub-folders; the images have no labels.

Every image (any size, any mode PIL reads) is resized so its shorter side is ``side`` and
centre-cropped to ``side`` x ``side`` (torchvision's ``Resize`` + ``CenterCrop``), converted to
grey (``L``) or ``RGB``, and scaled by :func:`dimgen.data.unit_images` (the one image-scale rule:
uint8 / 255). Options follow the path, comma-separated: ``folder:PATH,side=64,mode=grey``
(``side``: 4..512, default 32; ``mode``: ``grey`` | ``rgb`` | ``auto``, default ``auto``: grey
when every image is grey, else RGB). The train/test split is a seeded random permutation, as for
``npz:`` sources without a ``split`` array.

Images are decoded one at a time (JPEGs near the target size, with PIL's ``draft``) and only the
uint8 result is kept, so peak memory is the result plus a few images. A folder whose in-memory
size does not fit the available memory is refused before any pixel is read; ``stream=1`` reads it
on the fly instead (:mod:`dimgen.data.stream`, no image-count cap), with ``workers=N`` DataLoader
worker processes (default 2).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = [
    "DEFAULT_SIDE",
    "FolderSpec",
    "available_memory",
    "check_fits_memory",
    "decode_image",
    "folder_mode",
    "parse_folder_source",
    "read_folder",
]

DEFAULT_SIDE = 32
"""Side (pixels) of the square images a folder source yields unless ``side=`` is given."""
MAX_SIDE = 512
MAX_WORKERS = 64
DEFAULT_WORKERS = 2
"""DataLoader worker processes of a streamed folder unless ``workers=`` is given."""
_FLOAT_TOLERANCE = 1e-3  # dimgen.data.SCALE_TOLERANCE (not imported: data imports this module)
_MODES = ("auto", "grey", "rgb")
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F", "P")  # P: checked against its palette below


@dataclass(frozen=True)
class FolderSpec:
    """A parsed ``folder:PATH[,side=N][,mode=M]`` source."""

    path: Path
    side: int = DEFAULT_SIDE
    mode: str = "auto"
    stream: bool = False
    workers: int = DEFAULT_WORKERS


def parse_folder_source(source: str) -> FolderSpec:
    """Parse ``folder:PATH[,side=N][,mode=grey|rgb|auto][,stream=0|1][,workers=N]`` (options
    only at the end; ``stream=1`` reads the images on the fly, ``workers``: its DataLoader
    worker processes, 0..64, 0 decodes in the training process).

    Raises:
        DataError: not a ``folder:`` source, an empty path, an unknown option or a bad value.
    """
    if not source.startswith("folder:"):
        raise DataError(f"not a folder source: {source!r}")
    parts = source[len("folder:") :].split(",")
    options: dict[str, str] = {}
    while len(parts) > 1 and "=" in parts[-1]:  # trailing key=value items are options
        key, _, value = parts.pop().partition("=")
        key = key.strip()
        if key not in ("side", "mode", "stream", "workers"):
            raise DataError(
                f"{source}: unknown folder option {key!r} (known: side, mode, stream, workers)"
            )
        options.setdefault(key, value.strip())
    path = ",".join(parts)
    if not path:
        raise DataError(f"{source}: no folder path (use folder:PATH)")
    side = DEFAULT_SIDE
    if "side" in options:
        try:
            side = int(options["side"])
        except ValueError:
            raise DataError(f"{source}: side must be an integer, got {options['side']!r}") from None
        if not 4 <= side <= MAX_SIDE:
            raise DataError(f"{source}: side must lie in [4, {MAX_SIDE}], got {side}")
    mode = options.get("mode", "auto").lower().replace("gray", "grey")
    if mode not in _MODES:
        raise DataError(f"{source}: mode must be one of {', '.join(_MODES)}, got {mode!r}")
    stream_text = options.get("stream", "0").lower()
    if stream_text not in ("0", "1", "true", "false"):
        raise DataError(f"{source}: stream must be 0 or 1, got {options['stream']!r}")
    workers = DEFAULT_WORKERS
    if "workers" in options:
        try:
            workers = int(options["workers"])
        except ValueError:
            raise DataError(
                f"{source}: workers must be an integer, got {options['workers']!r}"
            ) from None
        if not 0 <= workers <= MAX_WORKERS:
            raise DataError(f"{source}: workers must lie in [0, {MAX_WORKERS}], got {workers}")
    stream = stream_text in ("1", "true")
    return FolderSpec(Path(path).expanduser(), side, mode, stream, workers)


def _image_files(folder: Path) -> list[Path]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)


def _layout(spec: FolderSpec) -> tuple[list[Path], np.ndarray | None, list[str]]:
    """Image files, labels (None for a flat folder) and class names, in a deterministic order."""
    root = spec.path
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    flat = _image_files(root)
    if classes and flat:
        raise DataError(
            f"{root}: holds both images and sub-folders; use class sub-folders only "
            f"(ImageFolder layout) or images only (a flat folder, no labels)"
        )
    if not classes:
        if not flat:
            raise DataError(f"{root}: no image files found")
        return flat, None, []
    files: list[Path] = []
    labels: list[int] = []
    for k, name in enumerate(classes):
        found = _image_files(root / name)
        if not found:
            raise DataError(f"{root / name}: class folder holds no image files")
        files += found
        labels += [k] * len(found)
    return files, np.asarray(labels, dtype=np.int64), classes


def _open(path: Path):  # -> PIL.Image.Image
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return img.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:  # fmt: skip
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable image ({reason})") from None


def _is_grey(img) -> bool:  # img: PIL.Image.Image
    if img.mode == "P":
        return (
            img.convert("RGB").convert("L").convert("RGB").tobytes() == img.convert("RGB").tobytes()
        )
    return img.mode in _GREY_MODES


def _to_8bit(img, path: Path):  # PIL.Image.Image -> PIL.Image.Image (mode L)
    """A 16-bit or float grey image as 8 bits, scaled by its mode (bit depth), never by content.

    ``I;16*`` and ``I`` (PNG's 16-bit grey) are divided by 65535, as a dark 16-bit image must stay
    dark; ``F`` (float) must lie in [0, 1], the rule for float ``npz:`` arrays. Values outside the
    mode's range are refused, naming the file (never clipped silently).
    """
    from PIL import Image

    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        top, lo_ok, hi_ok = 1.0, -_FLOAT_TOLERANCE, 1.0 + _FLOAT_TOLERANCE
        what = "a float image; its values must lie in [0, 1]"
    else:
        top, lo_ok, hi_ok = 65535.0, 0.0, 65535.0
        what = f"a 16-bit image (mode {img.mode}); its values must lie in [0, 65535]"
    if arr.size:
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < lo_ok or hi > hi_ok:
            raise DataError(f"{path}: {what}, got [{lo:.6g}, {hi:.6g}]")
    return Image.fromarray(np.rint(np.clip(arr / top, 0, 1) * 255.0).astype(np.uint8), "L")


def _scan_grey(path: Path) -> bool:
    """Whether the image at ``path`` is grey, from its header (a palette image is decoded)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.mode != "P":
                    return img.mode in _GREY_MODES
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:  # fmt: skip
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable image ({reason})") from None
    return _is_grey(_open(path))


def folder_mode(spec: FolderSpec, files: list[Path]) -> str:
    """``grey`` or ``rgb``: the spec's mode, or for ``auto`` grey when every image's header says
    grey (palette images are checked pixel-wise), read one file at a time."""
    if spec.mode != "auto":
        return spec.mode
    return "grey" if all(_scan_grey(p) for p in files) else "rgb"


def decode_image(path: Path, side: int, mode: str) -> np.ndarray:
    """One image as uint8 (C, side, side): shorter side resized to ``side`` (bilinear,
    antialiased), centre-cropped, grey (C=1) or RGB (C=3).

    A JPEG is decoded near the target size (PIL's ``Image.draft``: a 12-MP photo at side 64 is
    decoded at 1/8 scale), so memory per image stays small whatever the file's resolution.

    Raises:
        DataError: the file is not a readable image, or a 16-bit / float image out of range.
    """
    from PIL import Image
    from torchvision.transforms.functional import InterpolationMode, center_crop, resize

    pil_mode = "L" if mode == "grey" else "RGB"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.format == "JPEG":
                    img.draft(img.mode, (side, side))  # scale >= side on both axes
                img.load()
                img = img.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:  # fmt: skip
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable image ({reason})") from None
    if img.mode.startswith(("I", "F")):  # 16-bit / float grey: scale to 8 bits explicitly
        img = _to_8bit(img, path)
    img = resize(img.convert(pil_mode), [side], InterpolationMode.BILINEAR, antialias=True)
    arr = np.asarray(center_crop(img, [side, side]), dtype=np.uint8)
    if arr.shape[:2] != (side, side):
        raise DataError(f"{path}: could not be cropped to {side}x{side}")
    return np.ascontiguousarray(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))


def available_memory() -> int:
    """Bytes of memory available to this process now (psutil if installed, else /proc/meminfo's
    ``MemAvailable``, else free pages from ``os.sysconf``)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))


def check_fits_memory(spec: FolderSpec, n: int, channels: int) -> None:
    """Refuse, before any pixel is read, a folder whose in-memory copy cannot fit.

    Held in memory the images take ``n * C * side**2`` bytes as uint8 and four times that as the
    float32 the trainers use, both at once while converting.

    Raises:
        DataError: one line with the sizes and the fix (``stream=1``).
    """
    u8 = n * channels * spec.side * spec.side
    need, have = 5 * u8, available_memory()
    if need > have:
        gb = lambda b: f"{b / 1e9:.1f} GB"  # noqa: E731
        raise DataError(
            f"folder:{spec.path}: {n} images at {channels}x{spec.side}x{spec.side} need "
            f"{gb(need)} in memory ({gb(u8)} uint8 + {gb(4 * u8)} float32), {gb(have)} available"
            + (
                "; load_data reads folders in memory (every dimgen command streams them; in "
                "Python use dimgen.data.stream.load_stream)"
                if spec.stream
                else f"; stream it instead: folder:{spec.path},side={spec.side},stream=1"
            )
        )


def read_folder(spec: FolderSpec) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Every image of the folder as uint8 pixels, shaped (N, C, side, side).

    :func:`dimgen.data.load_data` scales the result by :func:`dimgen.data.unit_images` (this
    module stays below :mod:`dimgen.data`: no import cycle). Images are decoded one at a time
    (:func:`decode_image`), so peak memory is the result plus a few images.

    Returns ``(x, y, classes)``: ``y`` (N,) int64 labels and the class names for an ImageFolder
    layout, ``None`` and ``[]`` for a flat folder. ``C`` is 1 (grey) or 3 (RGB).

    Raises:
        DataError: a missing or empty folder, a mixed layout, an empty class, more images than
            fit the available memory (:func:`check_fits_memory`), or an image PIL cannot read
            (the message names the file).
    """
    files, labels, classes = _layout(spec)
    check_fits_memory(spec, len(files), 1 if spec.mode == "grey" else 3)
    mode = folder_mode(spec, files)
    out = np.empty((len(files), 1 if mode == "grey" else 3, spec.side, spec.side), np.uint8)
    for i, path in enumerate(files):
        out[i] = decode_image(path, spec.side, mode)
    return out, labels, classes
