"""`folder:PATH` sources: ImageFolder and flat layouts, mixed sizes, grey/RGB, split, bad images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from dimgen.cli import cli
from PIL import Image

from dimgen.data import load_data, parse_source
from dimgen.data.folder import FolderSpec, parse_folder_source, read_folder
from dimgen.errors import DataError

SIZES = [(20, 30), (40, 40), (64, 48), (17, 23)]


def _image(label: int, size: tuple[int, int], rgb: bool, rng: np.random.Generator) -> Image.Image:
    """Class 0: bright left half; class 1: bright right half (any size), plus a little noise."""
    w, h = size
    arr = np.zeros((h, w), np.float64)
    if label == 0:
        arr[:, : w // 2] = 1.0
    else:
        arr[:, w // 2 :] = 1.0
    arr = np.clip(arr * 200 + rng.uniform(0, 40, arr.shape), 0, 255).astype(np.uint8)
    if rgb:
        return Image.fromarray(np.stack([arr, arr // 2, arr], -1), "RGB")
    return Image.fromarray(arr, "L")


def write_folder(
    root: Path, n_per_class: int = 12, classes: bool = True, rgb: bool = False
) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for label in (0, 1):
        sub = root / f"class{label}" if classes else root
        sub.mkdir(exist_ok=True)
        for i in range(n_per_class):
            img = _image(label, SIZES[i % len(SIZES)], rgb, rng)
            img.save(sub / f"{label}-{i}.png")
    return root


def test_image_folder_labels_sizes_and_scale(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "imgs")
    x, y, classes = read_folder(FolderSpec(root, side=16))
    assert x.shape == (24, 1, 16, 16) and x.dtype == np.uint8  # grey detected, all one size
    assert classes == ["class0", "class1"] and np.bincount(y).tolist() == [12, 12]
    # The labels follow the content: class 0 bright on the left, class 1 on the right.
    left, right = x[..., :6].mean(axis=(1, 2, 3)), x[..., 10:].mean(axis=(1, 2, 3))
    assert np.all((left > right) == (y == 0))
    # The one scale rule: a uint8 pixel v becomes v / 255 (an image of value 51 -> 0.2).
    one = tmp_path / "one"
    one.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8 + i), 51, np.uint8), "L").save(one / f"{i}.png")
    ds = load_data(f"folder:{one},side=4", test_fraction=0.25)
    assert ds.y_train is None and ds.x_train.dtype == np.float32
    assert np.allclose(np.concatenate([ds.x_train, ds.x_test]), 0.2)


def test_flat_folder_rgb_and_seeded_split(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "flat", classes=False, rgb=True)
    ds = load_data(f"folder:{root},side=8", test_fraction=0.25, seed=3)
    assert ds.y_train is None and ds.y_test is None
    assert ds.x_train.shape == (18, 3, 8, 8) and ds.x_test.shape == (6, 3, 8, 8)
    again = load_data(f"folder:{root},side=8", test_fraction=0.25, seed=3)
    assert np.array_equal(ds.x_test, again.x_test)  # same seed, same split
    other = load_data(f"folder:{root},side=8", test_fraction=0.25, seed=4)
    assert not np.array_equal(ds.x_test, other.x_test)
    grey = load_data(f"folder:{root},side=8,mode=grey")
    assert grey.x_train.shape[1] == 1


def test_parse_folder_source() -> None:
    spec = parse_folder_source("folder:/a,b/c,side=64,mode=RGB")
    assert spec == FolderSpec(Path("/a,b/c"), 64, "rgb")
    assert parse_source("folder:/x") == ("folder:/x", None)
    for bad, match in [
        ("folder:", "no folder path"),
        ("folder:/x,side=2", "side must lie in"),
        ("folder:/x,side=big", "side must be an integer"),
        ("folder:/x,mode=cmyk", "mode must be one of"),
        ("folder:/x,size=3", "unknown folder option"),
    ]:
        with pytest.raises(DataError, match=match):
            parse_source(bad)


def test_bad_folders_name_the_problem(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "imgs", n_per_class=2)
    (root / "class1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        load_data(f"folder:{root}")
    with pytest.raises(DataError, match="image folder not found"):
        load_data(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_data(f"folder:{tmp_path / 'empty'}")
    mixed = write_folder(tmp_path / "mixed", n_per_class=2)
    Image.new("L", (4, 4)).save(mixed / "stray.png")
    with pytest.raises(DataError, match="both images and sub-folders"):
        load_data(f"folder:{mixed}")
    (mixed / "stray.png").unlink()
    (mixed / "class2").mkdir()
    with pytest.raises(DataError, match="class folder holds no image files"):
        load_data(f"folder:{mixed}")


def _run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_one_source_string_for_encode_train_gan_and_sample(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "imgs", n_per_class=20)
    source = f"folder:{root},side=8"
    enc = tmp_path / "enc"
    res = _run("encode", "--data", source, "--out", enc, "--epochs", 30, "--quiet")
    assert res.exit_code == 0, res.output
    m = json.loads((enc / "metrics.json").read_text())
    assert m["knn_acc"] >= 0.8  # two visually distinct classes: the codes separate them
    codes = np.load(enc / "codes.npz")
    assert codes["codes"].shape == (40, 2) and set(codes["labels"]) == {0, 1}
    new = tmp_path / "new.npz"
    res = _run("encode", "--encoder", enc, "--data", source, "--out", new)
    assert res.exit_code == 0, res.output
    assert np.allclose(np.load(new)["codes"].shape, (40, 2))
    gan = tmp_path / "gan"
    res = _run("train-gan", enc, "--out", gan, "--steps", 10, "--quiet", "--set",
               "classifier_epochs=1", "--set", "eval_samples=0", "--set", "sample_every=10")  # fmt: skip
    assert res.exit_code == 0, res.output
    grid = tmp_path / "grid.png"
    res = _run("sample", gan, "--from-images", source, "-n", 4, "--out", grid)
    assert res.exit_code == 0, res.output
    assert grid.is_file()
    # A corrupt image: one line naming it, exit code 2, nothing written.
    (root / "class0" / "bad.png").write_bytes(b"garbage")
    res = _run("encode", "--data", source, "--out", tmp_path / "enc2", "--quiet")
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "bad.png: not a readable image" in res.output
    assert not (tmp_path / "enc2").exists()
