"""``folder:PATH,stream=1`` in every trainer that reads images (``pretrain``, ``train-gan``,
``train-diffusion``): the streamed run trains bit for bit as the in-memory one, an interrupted
streamed run resumes bit-exact, and ``run.json`` says which path ran and records the source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dimgen.io import load_weights


class _Stop(Exception):
    pass


def make_pngs(root: Path, n_per_class: int = 16, side: int = 12, grey: bool = False) -> Path:
    """Two classes of PIL-written PNGs (``side`` + 4 pixels wide: resized on reading): a bright
    square on dark noise (class 0) or a bright bar (class 1)."""
    rng = np.random.default_rng(0)
    w = side + 4
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(n_per_class):
            px = rng.integers(0, 80, (w, w, 3), dtype=np.uint8)
            r = int(rng.integers(2, w - 6))
            if c == 0:
                px[r : r + 5, r : r + 5] = 230
            else:
                px[:, r : r + 3] = 230
            img = Image.fromarray(px)
            (img.convert("L") if grey else img).save(root / f"c{c}" / f"{i:03d}.png")
    return root


def same_weights(a: Path, b: Path) -> None:
    ta, _ = load_weights(a)
    tb, _ = load_weights(b)
    assert ta.keys() == tb.keys() and ta
    bad = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not bad, f"{len(bad)} tensors differ, e.g. {bad[:3]}"


def run_json(path: Path) -> dict:
    return json.loads((path / "run.json").read_text())


# ---------------------------------------------------------------------------------------------
# dimgen pretrain


def _pretrain_cfg(data: str, **kw: object):
    from dimgen.ssl.config import PretrainConfig

    base = dict(method="simclr", sigma=0.3, width=2, proj_hidden=16, proj_dim=8, batch_size=8,
                epochs=2, lr=0.3, warmup_epochs=0.0, aug_groups=2, image_size=12,
                test_fraction=0.25, device="cpu", threads=1, log_every=1, checkpoint_every=4,
                data=data)  # fmt: skip
    return PretrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_streamed_pretrain_equals_in_memory_and_resumes_bit_exact(tmp_path: Path) -> None:
    from dimgen.ssl.trainer import pretrain

    root = make_pngs(tmp_path / "imgs")  # 32 images: 24 to pre-train on, 3 steps an epoch
    stream = _pretrain_cfg(f"folder:{root},stream=1,workers=2")
    whole = pretrain(stream, tmp_path / "whole", progress=False)
    assert len(whole.history) == 6

    def stop(done: int, _values: dict[str, float]) -> None:
        if done == 5:  # after the checkpoint of step 4: batch 1 of the second epoch is next
            raise _Stop

    with pytest.raises(_Stop):
        pretrain(stream, tmp_path / "cut", progress=False, on_scalars=stop)
    _, meta = load_weights(tmp_path / "cut" / "checkpoint.safetensors")
    assert meta["step"] == 4
    resumed = pretrain(stream, tmp_path / "cut", progress=False, resume=True)
    assert resumed.history == whole.history
    same_weights(tmp_path / "whole" / "model.safetensors", tmp_path / "cut" / "model.safetensors")

    # the in-memory run on the same folder: the same batches, the same weights and codes
    memory = pretrain(_pretrain_cfg(f"folder:{root}"), tmp_path / "mem", progress=False)
    assert memory.history == whole.history
    same_weights(tmp_path / "whole" / "model.safetensors", tmp_path / "mem" / "model.safetensors")
    codes = [np.load(tmp_path / p / "codes.npz") for p in ("whole", "mem")]
    assert np.array_equal(codes[0]["codes"], codes[1]["codes"])
    assert np.array_equal(codes[0]["labels"], codes[1]["labels"]) and len(codes[0]["labels"]) == 8

    rec = {p: run_json(tmp_path / p) for p in ("whole", "mem")}
    assert rec["whole"]["data_mode"] == {"mode": "stream", "workers": 2}
    assert rec["mem"]["data_mode"] == {"mode": "memory"}
    assert rec["whole"]["data_digest"]["files"] == rec["mem"]["data_digest"]["files"] == 32

    # another seed gives other numbers (the comparisons above can fail)
    other = pretrain(_pretrain_cfg(f"folder:{root},stream=1,workers=0", seed=1), progress=False)
    assert other.history != whole.history
