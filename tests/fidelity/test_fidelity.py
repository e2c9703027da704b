"""Fidelity metrics: the offline classifier extractor, FID / KID via torch-fidelity, label metrics."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dimgen import fidelity as fd
from dimgen.data import load_data
from dimgen.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def digits() -> object:
    return load_data("digits")


@pytest.fixture(scope="module")
def classifier(digits: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    clf = fd.train_classifier(digits.x_train, digits.y_train, epochs=15, seed=0)
    path = tmp_path_factory.mktemp("clf") / "classifier.safetensors"
    fd.save_classifier(path, clf, {"data": "digits"})
    return path


def test_classifier_learns_and_round_trips(digits: object, classifier: Path) -> None:
    clf, meta = fd.load_classifier(classifier)
    assert meta["data"] == "digits" and clf.n_classes == 10
    acc = float(np.mean(fd.predict(clf, digits.x_test) == digits.y_test))
    assert acc > 0.93  # chance is ~0.12
    x = torch.from_numpy(digits.x_test[:7])
    assert clf.features(x).shape == (7, 128) and clf(x).shape == (7, 10)


def test_fid_is_zero_on_identical_sets(digits: object, classifier: Path) -> None:
    m = fd.fidelity_metrics(digits.x_test, digits.x_test, classifier, "dimgen-classifier-digits")
    assert set(m) == {"fid_dimgen_classifier", "kid_dimgen_classifier", "kid_dimgen_classifier_std"}
    assert abs(m["fid_dimgen_classifier"]) < 1e-6


def test_fid_kid_separate_different_sets(digits: object, classifier: Path) -> None:
    x, y = digits.x_train, digits.y_train
    name = "dimgen-classifier-digits"
    same = fd.fidelity_metrics(digits.x_test, x[:359], classifier, name)  # two real samples
    split = fd.fidelity_metrics(x[y < 5], x[y >= 5], classifier, name)  # disjoint classes
    noise = np.random.default_rng(0).random((359, 1, 8, 8)).astype(np.float32)
    junk = fd.fidelity_metrics(digits.x_test, noise, classifier, name)
    assert same["fid_dimgen_classifier"] < 10
    assert split["fid_dimgen_classifier"] > 5 * same["fid_dimgen_classifier"] + 20
    assert junk["fid_dimgen_classifier"] > 5 * same["fid_dimgen_classifier"] + 20
    # KID: near 0 for two real samples, clearly positive (many standard deviations) otherwise.
    assert abs(same["kid_dimgen_classifier"]) < 3 * same["kid_dimgen_classifier_std"] + 0.5
    for far in (split, junk):
        assert far["kid_dimgen_classifier"] > 5 * far["kid_dimgen_classifier_std"]
        assert far["kid_dimgen_classifier"] > 10 * abs(same["kid_dimgen_classifier"])


def test_fid_matches_the_closed_form_on_the_features(digits: object, classifier: Path) -> None:
    """torch-fidelity's FID equals ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) on our features."""
    from scipy import linalg

    clf, _ = fd.load_classifier(classifier)
    a, b = digits.x_train[:400], digits.x_test

    def feats(x: np.ndarray) -> np.ndarray:  # what the extractor sees: uint8, then / 255
        with torch.no_grad():
            return clf.features(fd.to_uint8(x).float() / 255).double().numpy()

    fa, fb = feats(a), feats(b)
    mu, s1, s2 = fa.mean(0) - fb.mean(0), np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    with warnings.catch_warnings():  # dead ReLU units make the covariances singular
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(s1 @ s2).real
    ref = float(mu @ mu + np.trace(s1 + s2 - 2 * covmean))
    got = fd.fidelity_metrics(b, a, classifier, "dimgen-classifier-digits")["fid_dimgen_classifier"]
    assert got == pytest.approx(ref, rel=1e-3)


def test_extractor_registration_and_outputs(digits: object, classifier: Path) -> None:
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    from torch_fidelity.utils import create_feature_extractor

    assert fd.extractor_name("mnist:test") == "dimgen-classifier-mnist-test"
    name = fd.extractor_name("npz:/some/my data.npz")
    assert name == "dimgen-classifier-npz-my-data"
    assert fd.register_classifier_extractor(name) == name
    assert fd.register_classifier_extractor(name) == name  # twice is fine
    assert name in FEATURE_EXTRACTORS_REGISTRY
    ext = create_feature_extractor(name, ["logits", "penultimate"], cuda=False,
                                   feature_extractor_weights_path=str(classifier), verbose=False)  # fmt: skip
    x8 = fd.to_uint8(digits.x_test[:5])
    logits, pen = ext(x8)
    clf, _ = fd.load_classifier(classifier)
    with torch.no_grad():
        torch.testing.assert_close(pen, clf.features(x8.float() / 255))
        torch.testing.assert_close(logits, clf(x8.float() / 255))


def test_to_uint8_rounds_clips_rounding_error_and_refuses_other_scales() -> None:
    x = torch.tensor([[[[-0.0005, 0.0, 0.5, 1.0, 1.0005, 1 / 255 * 0.6]]]])
    assert fd.to_uint8(x).flatten().tolist() == [0, 0, 128, 255, 255, 1]
    with pytest.raises(DataError, match=r"must lie in \[0, 1\], got values in \[-0.5, 2\]"):
        fd.to_uint8(torch.tensor([[[[-0.5, 2.0]]]]))
    u = torch.tensor([[[[3]]]], dtype=torch.uint8)
    assert fd.to_uint8(u) is u or torch.equal(fd.to_uint8(u), u)


def test_label_metrics_by_hand() -> None:
    assert fd.conditional_consistency(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 75.0
    h = fd.class_histogram_tv(np.array([0, 0, 1, 1]), np.array([0, 1, 2, 2]), 3)
    # p = (.5, .5, 0), q = (.25, .25, .5): TV = 0.5 * (.25 + .25 + .5) = 0.5
    assert h["tv"] == pytest.approx(0.5)
    assert h["coverage"] == 2
    assert h["histogram"] == [0.5, 0.5, 0.0] and h["reference_histogram"] == [0.25, 0.25, 0.5]
    assert fd.class_histogram_tv(np.array([2, 1, 0]), np.array([0, 1, 2]), 3)["tv"] == 0.0
    with pytest.raises(DataError):
        fd.conditional_consistency(np.array([1, 2]), np.array([1]))
    with pytest.raises(DataError):
        fd.class_histogram_tv(np.array([], dtype=np.int64), np.array([0]), 2)


def test_shape_mismatch_and_inception_lookup(
    digits: object, classifier: Path, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match="one shape"):
        fd.fidelity_metrics(digits.x_test, np.zeros((10, 1, 4, 4), np.float32), classifier, "x")
    with pytest.raises(ConfigError, match="not found"):
        fd.find_inception_weights(tmp_path / "missing.pth")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    with pytest.raises(ConfigError, match="not a plain tensor file"):  # verified, never unpickled
        fd.find_inception_weights(weights)
    # The tests point TORCH_HOME at an empty temp folder: no cached Inception weights there.
    assert fd.find_inception_weights() is None
    with pytest.raises(DataError, match="two classes"):
        fd.train_classifier(digits.x_train[:10], np.zeros(10, np.int64), epochs=1)


def test_conv_classifier_for_larger_images(tmp_path: Path) -> None:
    """Images of side >= 16 get the conv classifier; it learns and serves as an extractor."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 600)
    x = rng.random((600, 1, 16, 16)).astype(np.float32) * 0.3
    for k in range(4):  # class k: a bright 4x16 band at rows 4k..4k+3
        x[y == k, :, 4 * k : 4 * k + 4, :] += 0.7
    clf = fd.train_classifier(x[:500], y[:500], epochs=4, seed=0)
    assert clf.kind == "conv" and clf.features(torch.from_numpy(x[:2])).shape == (2, 128)
    assert float(np.mean(fd.predict(clf, x[500:]) == y[500:])) > 0.95
    fd.save_classifier(tmp_path / "c.safetensors", clf)
    same = fd.fidelity_metrics(
        x[500:], x[500:], tmp_path / "c.safetensors", "dimgen-classifier-bands"
    )
    other = fd.fidelity_metrics(x[500:][y[500:] < 2], x[500:][y[500:] >= 2], tmp_path / "c.safetensors",
                                "dimgen-classifier-bands")  # fmt: skip
    assert abs(same["fid_dimgen_classifier"]) < 1e-6 < 1.0 < other["fid_dimgen_classifier"]
