"""One image-scale rule for every entry point that takes images (``dimgen.data.unit_images``).

uint8 is divided by 255; float must lie in [0, 1] (up to a rounding tolerance); every other dtype,
and float outside [0, 1], is refused with the same one-line DataError. The property test feeds
random dtypes and value ranges through every entry point and checks they agree with each other
and with an independent statement of the rule.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dimgen import fidelity as fd
from dimgen.data import Dataset, load_data, read_npz
from dimgen.errors import DataError
from dimgen.gan import GAN
from dimgen.infomax.tokenizer import Tokenizer

DTYPES = [np.uint8, np.uint16, np.int8, np.int32, np.int64, np.bool_,
          np.float16, np.float32, np.float64]  # fmt: skip
# value ranges: [0, 1], rounding error just past 1, digits' 0..16, 0..255, 0..65535, shifted
SCALES = [1.0, 1.0 + 5e-4, 1.0 + 5e-3, 16.0, 255.0, 65535.0]
OFFSETS = [0.0, -5e-4, -0.5]


def _expected(x: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """The documented rule, stated independently: (float32 [0, 1] images, None) or (None, phrase)."""
    if x.dtype == np.uint8:
        return x.astype(np.float64).astype(np.float32) / np.float32(255), None
    if x.dtype.kind != "f":
        return None, f"images of dtype {x.dtype}"
    f = x.astype(np.float32)
    if not np.isfinite(f).all():
        return None, "NaN or Inf"
    if f.min() < -1e-3 or f.max() > 1 + 1e-3:
        return None, "must lie in [0, 1]"
    return np.clip(f, 0, 1), None


@pytest.fixture(scope="module")
def models(digits_run: Path, digits_gan_run: Path) -> dict[str, Any]:
    ds = load_data("digits")
    clf = fd.train_classifier(ds.x_train[:400], ds.y_train[:400], epochs=2, seed=0)
    return {"tok": Tokenizer.from_pretrained(digits_run), "gan": GAN.from_pretrained(digits_gan_run),
            "clf": clf}  # fmt: skip


def _entry_points(models: dict[str, Any]) -> dict[str, Callable[[np.ndarray], Any]]:
    """Every public entry point that takes images, each returning something comparable."""

    def npz(x: np.ndarray) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            np.savez(Path(tmp) / "d.npz", x=x)
            return read_npz(str(Path(tmp) / "d.npz"))[0]

    return {
        "npz data": npz,
        "Dataset": lambda x: Dataset("d", x, None, x, None).x_train,
        "Tokenizer.encode": lambda x: models["tok"].encode(x).numpy(),
        "GAN.sample_conditional": lambda x: torch.cat(
            [t.flatten(1) for t in models["gan"].sample_conditional(x, seed=0)], 1
        ).numpy(),
        "fidelity to_uint8": lambda x: fd.to_uint8(x).numpy(),
        "classifier predict": lambda x: fd.predict(models["clf"], x),
    }


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    dtype=st.sampled_from(DTYPES),
    scale=st.sampled_from(SCALES),
    offset=st.sampled_from(OFFSETS),
    n=st.integers(2, 5),
    seed=st.integers(0, 2**16),
    as_tensor=st.booleans(),
)
def test_every_image_entry_point_applies_the_same_rule(
    models: dict[str, Any], dtype: type, scale: float, offset: float, n: int, seed: int,
    as_tensor: bool,
) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    v = rng.random((n, 1, 8, 8)) * scale + offset
    v.flat[0], v.flat[1] = offset, scale + offset  # the extremes are always present
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        v = np.clip(np.round(v), info.min, info.max)
    x = v.astype(dtype)
    ref, phrase = _expected(x)
    points = _entry_points(models)
    tensor_ok = as_tensor and dtype not in (np.uint16,)  # torch has no uint16 arithmetic
    given_x = torch.from_numpy(x) if tensor_ok else x
    if ref is None:
        tails = set()
        for name, fn in points.items():
            with pytest.raises(DataError) as err:
                fn(x if name == "npz data" else given_x)
            msg = str(err.value)
            assert phrase in msg and "\n" not in msg, (name, msg)
            tails.add(msg.split(": ", 1)[1])
        assert len(tails) == 1, tails  # the same message, only the name of the input differs
    else:
        for name, fn in points.items():
            got = fn(x if name == "npz data" else given_x)
            want = fn(ref)
            assert np.array_equal(got, want), name
        assert np.array_equal(points["npz data"](x), ref)


def test_measured_example_float_0_255_is_refused_not_silently_used(models: dict[str, Any]) -> None:
    """The issue's reproduction: digits as float 0..255 used to give kNN 0.30 instead of 0.80."""
    x8 = (load_data("digits").x_test[:50] * 255).round().astype(np.uint8)
    codes = models["tok"].encode(x8)
    assert torch.equal(codes, models["tok"].encode(x8.astype(np.float32) / 255))
    with pytest.raises(DataError, match=r"got values in \[0, 255\]; pass uint8 0..255 or float"):
        models["tok"].encode(x8.astype(np.float32))
    with pytest.raises(DataError, match=r"dtype int64 with values in \[0, 255\]"):
        models["gan"].sample_conditional(x8.astype(np.int64))
