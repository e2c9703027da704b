"""The reference classifier and its features read a streamed folder a batch at a time and give
what they give on the in-memory array: the same fingerprint, weights, accuracy and features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dimgen.data import load_data
from dimgen.data.stream import load_stream
from dimgen.fidelity.extractor import data_fingerprint, reference_extractor
from dimgen.fidelity.metrics import classifier_outputs, load_classifier, predict
from dimgen.io import load_weights


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of 40 grey 16x16 PNGs: a bright square (0) or a bright bar (1) on noise."""
    root = tmp_path_factory.mktemp("feat") / "imgs"
    rng = np.random.default_rng(3)
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(40):
            px = rng.integers(0, 90, (16, 16), dtype=np.uint8)
            r = int(rng.integers(1, 10))
            if c == 0:
                px[r : r + 5, r : r + 5] = 240
            else:
                px[:, r : r + 3] = 240
            Image.fromarray(px).save(root / f"c{c}" / f"{i:03d}.png")
    return root


def test_reference_classifier_on_a_stream_equals_in_memory(folder: Path, tmp_path: Path) -> None:
    mem = load_data(f"folder:{folder},side=16", test_fraction=0.25, seed=0)
    st = load_stream(f"folder:{folder},side=16,stream=1,workers=2", 0.25, 0)
    x_mem, y = mem.split("all")
    x_st = st.x_train.joined(st.x_test)
    assert np.array_equal(y, np.concatenate([st.y_train, st.y_test]))
    assert data_fingerprint(x_st, y) == data_fingerprint(x_mem, y)
    assert data_fingerprint(x_st.select(range(79)), y[:79]) != data_fingerprint(x_mem, y)

    a = reference_extractor(x_mem, y, "imgs", epochs=2, path=tmp_path / "mem.safetensors")
    b = reference_extractor(x_st, y, "imgs", epochs=2, path=tmp_path / "st.safetensors")
    assert a.trained and b.trained and a.accuracy == b.accuracy
    assert a.sha256 == b.sha256  # the same weights and metadata, byte for byte
    wa, _ = load_weights(a.path)
    assert any(v.abs().sum() > 0 for v in wa.values())

    # features, probabilities and labels: batched from the stream == the whole array at once
    clf, _ = load_classifier(a.path)
    f_all, p_all = classifier_outputs(clf, x_mem, batch_size=len(x_mem))
    f_st, p_st = classifier_outputs(clf, x_st, batch_size=16)
    assert f_all.shape == (80, 128) and p_all.shape == (80, 2)
    torch.testing.assert_close(f_st, f_all, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(p_st, p_all, rtol=1e-5, atol=1e-6)
    assert np.array_equal(predict(clf, x_st, batch_size=7), predict(clf, x_mem))
    assert (predict(clf, x_mem) == y).mean() > 0.5  # features of a trained classifier
