"""Sample-quality metrics: FID / KID through torch-fidelity, conditional consistency, class balance.

Offline (no Inception weights), FID and KID are computed in the feature space of a small
classifier that dimgen trains on the labelled data and registers with torch-fidelity as a feature
extractor named ``dimgen-classifier-<data>``. Those numbers are reported as
``fid_dimgen_classifier`` / ``kid_dimgen_classifier``, never as ``fid``: they are comparable with
each other (conditional vs unconditional, run vs run on the same data and classifier), not with
published Inception FIDs. When Inception weights are available locally, the real ``fid`` / ``kid``
are reported as well. The same classifier labels generated images for the conditional consistency
and the class histogram.

torch-fidelity and its Inception extractor are imported only when a metric needs them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.sources import check_labels, unit_images
from ..data.stream import StreamedImages
from ..errors import ConfigError, DataError, RunFolderError
from ..io import check_tensors, load_model_weights, save_weights

__all__ = [
    "CLASSIFIER_FEATURES",
    "FID_CLASSIFIER",
    "INCEPTION_NAME",
    "KID_CLASSIFIER",
    "Classifier",
    "class_histogram_tv",
    "classifier_outputs",
    "conditional_consistency",
    "extractor_name",
    "fidelity_metrics",
    "find_inception_weights",
    "load_classifier",
    "load_inception_state",
    "precision_recall",
    "predict",
    "register_classifier_extractor",
    "register_inception_extractor",
    "save_classifier",
    "to_uint8",
    "train_classifier",
]

FID_CLASSIFIER = "fid_dimgen_classifier"
"""Key of the FID computed in the dimgen classifier's feature space (not Inception)."""
KID_CLASSIFIER = "kid_dimgen_classifier"
"""Key of the KID computed in the dimgen classifier's feature space (not Inception)."""
CLASSIFIER_FEATURES = ("penultimate", "logits")
"""Feature layers the dimgen classifier extractor provides; FID / KID use ``penultimate``."""
INCEPTION_NAME = "dimgen-inception-v3-safe"
"""torch-fidelity's Inception extractor behind dimgen's safe loader; used only with local weights."""
_INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
# Spot checks that a tensor dict is torch-fidelity's InceptionV3 (first conv, last linear layer).
_INCEPTION_SHAPES = {"Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "fc.weight": (1008, 2048)}


# ---------------------------------------------------------------------------------------------
# the classifier (labels for consistency / histograms, features for FID / KID)


class Classifier(nn.Module):
    """A small classifier on [0, 1] images: conv for images of side >= 16, else an MLP.

    ``features(x)`` (B, F) are the penultimate activations torch-fidelity sees; ``forward`` gives
    logits (B, n_classes).
    """

    def __init__(self, in_shape: Sequence[int], n_classes: int, width: int = 64) -> None:
        super().__init__()
        self.in_shape = tuple(int(v) for v in in_shape)
        self.n_classes = int(n_classes)
        self.width = int(width)
        self.kind = "conv" if len(self.in_shape) == 3 and min(self.in_shape[1:]) >= 16 else "mlp"
        act = nn.ReLU()
        if self.kind == "conv":
            c, h, w = self.in_shape
            flat = width * (h // 4) * (w // 4)
            self.body = nn.Sequential(
                nn.Conv2d(c, width // 2, 3, padding=1), nn.BatchNorm2d(width // 2), act,
                nn.MaxPool2d(2),                                               # (w/2, H/2, W/2)
                nn.Conv2d(width // 2, width, 3, padding=1), nn.BatchNorm2d(width), act,
                nn.MaxPool2d(2),                                               # (w, H/4, W/4)
                nn.Flatten(), nn.Linear(flat, 2 * width), act,
            )  # fmt: skip
        else:
            self.body = nn.Sequential(
                nn.Flatten(), nn.Linear(math.prod(self.in_shape), 4 * width), act,
                nn.Linear(4 * width, 2 * width), act,
            )  # fmt: skip
        self.out = nn.Linear(2 * width, self.n_classes)

    def features(self, x: Tensor) -> Tensor:
        """(B, *in_shape) in [0, 1] -> (B, 2 * width) penultimate features."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """(B, *in_shape) in [0, 1] -> (B, n_classes) logits."""
        return self.out(self.body(x))


def train_classifier(
    x: np.ndarray | StreamedImages,
    y: np.ndarray,
    *,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> Classifier:
    """Fit a :class:`Classifier` on images ``x`` (N, *shape) with integer labels ``y`` (N,).

    ``progress``: a tqdm bar over the optimiser steps on stderr (minutes on MNIST on a CPU).

    Images follow :func:`dimgen.data.unit_images`; labels :func:`dimgen.data.check_labels`. A
    streamed folder (:class:`~dimgen.data.stream.StreamedImages`) is decoded a shuffled batch
    at a time in its DataLoader workers: the in-memory array's batches, so its weights.

    Raises:
        DataError: mis-scaled images, missing / negative / huge labels, fewer than two classes.
    """
    if y is None or len(y) != len(x):
        raise DataError("the classifier needs one integer label per image")
    labels = check_labels(y, len(x), "classifier labels")
    n_classes = int(labels.max()) + 1
    if n_classes < 2:
        raise DataError("the classifier needs at least two classes")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = Classifier(x.shape[1:], n_classes).to(device)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    streamed = isinstance(x, StreamedImages)
    if streamed:
        xs = x.to(device)
    else:
        xt = torch.from_numpy(unit_images(x, "classifier images")).to(device)
    yt = torch.from_numpy(labels).to(device)
    n = len(x)
    b = min(batch_size, n)
    clf.train()
    from tqdm.auto import tqdm

    starts = range(0, n - b + 1, b)
    with tqdm(total=epochs * len(starts), desc="classifier", unit="step", leave=False,
              disable=not progress) as bar:  # fmt: skip
        for _ in range(epochs):
            perm = torch.randperm(n, generator=g).to(device)
            if streamed:  # this epoch's batches, decoded a few ahead
                images = xs.batches([perm[i : i + b].tolist() for i in starts])
            for i in starts:
                idx = perm[i : i + b]
                xb = next(images) if streamed else xt[idx]
                loss = nn.functional.cross_entropy(clf(xb), yt[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.update()
    return clf.eval()


def save_classifier(path: str | Path, clf: Classifier, meta: dict[str, Any] | None = None) -> None:
    """safetensors weights + the arguments that rebuild the classifier."""
    spec = {"in_shape": list(clf.in_shape), "n_classes": clf.n_classes, "width": clf.width}
    save_weights(path, clf.state_dict(), {"kind": "classifier", "spec": spec, **(meta or {})})


def load_classifier(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild a classifier saved by :func:`save_classifier`; returns (classifier, metadata)."""

    def build(meta: dict[str, Any]) -> Classifier:
        spec = meta.get("spec")
        if not isinstance(spec, dict):
            raise RunFolderError(f"{path} is not a dimgen classifier")
        return Classifier(spec["in_shape"], spec["n_classes"], spec["width"])

    # names, shapes, dtypes (nothing allocated) and finite values, as for every weights file
    tensors, meta = load_model_weights(path, "classifier", build, "a dimgen classifier")
    spec = meta["spec"]
    try:
        clf = Classifier(spec["in_shape"], spec["n_classes"], spec["width"])
        clf.load_state_dict(tensors)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise RunFolderError(
            f"{path}: classifier weights do not match ({str(exc)[:120]})"
        ) from None
    return clf.to(device).eval(), meta


def _image_batches(x: Tensor | np.ndarray | StreamedImages, size: int, name: str) -> Any:
    """float32 batches of ``size`` images in order, scaled by :func:`dimgen.data.unit_images`;
    a streamed folder is decoded a batch at a time (never all at once)."""
    if isinstance(x, StreamedImages):
        return x.chunks(size)
    xt = torch.from_numpy(unit_images(x, name))
    return (xt[i : i + size] for i in range(0, len(xt), size))


@torch.no_grad()
def predict(
    clf: Classifier, x: Tensor | np.ndarray | StreamedImages, batch_size: int = 1024
) -> np.ndarray:
    """Class labels (N,) of images (N, *shape), scaled by :func:`dimgen.data.unit_images`, a
    batch at a time (a streamed folder is decoded a batch at a time too)."""
    dev = next(clf.parameters()).device
    out = [
        clf(xb.to(dev, torch.float32)).argmax(1).cpu()
        for xb in _image_batches(x, batch_size, "images")
    ]
    return torch.cat(out).numpy() if out else np.zeros(0, np.int64)


# ---------------------------------------------------------------------------------------------
# label-based metrics


def conditional_consistency(pred: np.ndarray, labels: np.ndarray) -> float:
    """Percentage of generated images G(z, code(x)) whose predicted label equals x's label."""
    pred, labels = np.asarray(pred).reshape(-1), np.asarray(labels).reshape(-1)
    if len(pred) != len(labels) or len(pred) == 0:
        raise DataError(
            f"need equally many predictions and labels (> 0), got {len(pred)} and {len(labels)}"
        )
    return float(100.0 * np.mean(pred == labels))


def class_histogram_tv(pred: np.ndarray, ref_labels: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Class histogram of ``pred`` against that of ``ref_labels``: TV distance and coverage.

    Returns ``tv`` = 0.5 * sum_k |p_k - q_k| in [0, 1], ``coverage`` = number of classes predicted at
    least once, and both normalised histograms.
    """
    pred, ref = np.asarray(pred).reshape(-1), np.asarray(ref_labels).reshape(-1)
    if len(pred) == 0 or len(ref) == 0:
        raise DataError("class histograms need at least one sample on each side")
    pred = check_labels(pred, len(pred), "predicted labels")
    ref = check_labels(ref, len(ref), "reference labels")
    p = np.bincount(pred, minlength=n_classes)[:n_classes] / len(pred)
    q = np.bincount(ref, minlength=n_classes)[:n_classes] / len(ref)
    return {
        "tv": float(0.5 * np.abs(p - q).sum()),
        "coverage": int((p > 0).sum()),
        "histogram": p.tolist(),
        "reference_histogram": q.tolist(),
    }


# ---------------------------------------------------------------------------------------------
# torch-fidelity glue


def to_uint8(images: Tensor | np.ndarray, name: str = "images") -> Tensor:
    """Images (N, C, H, W) -> uint8 (N, C, H, W), the type torch-fidelity expects.

    Scale follows :func:`dimgen.data.unit_images` (uint8 kept, float must lie in [0, 1]).

    Raises:
        DataError: another dtype, NaN, or float values outside [0, 1].
    """
    if isinstance(images, Tensor) and images.dtype == torch.uint8:
        return images.detach().cpu()
    x = torch.from_numpy(unit_images(images, name))
    return (x * 255).round().to(torch.uint8)


class _Images(torch.utils.data.Dataset):
    """uint8 images as a map-style dataset (torch-fidelity's input type)."""

    def __init__(self, images: Tensor, rgb: bool = False) -> None:
        self.images = images
        self.rgb = rgb

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tensor:
        img = self.images[i]
        if self.rgb and img.shape[0] == 1:  # Inception wants 3 channels
            img = img.expand(3, *img.shape[1:])
        return img


def _extractor_class() -> type:
    from torch_fidelity import FeatureExtractorBase

    class DimgenClassifierExtractor(FeatureExtractorBase):
        """The dimgen classifier as a torch-fidelity feature extractor (uint8 at native size)."""

        def __init__(
            self,
            name: str,
            features_list: list[str],
            feature_extractor_weights_path: str | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(name, features_list)
            if feature_extractor_weights_path is None:
                raise ConfigError(f"{name} needs feature_extractor_weights_path (a classifier)")
            self.clf, _ = load_classifier(feature_extractor_weights_path)

        @staticmethod
        def get_provided_features_list() -> tuple[str, ...]:
            return CLASSIFIER_FEATURES

        @staticmethod
        def get_default_feature_layer_for_metric(metric: str) -> str:
            return {"isc": "logits"}.get(metric, "penultimate")

        @staticmethod
        def can_be_compiled() -> bool:
            return False

        @staticmethod
        def get_dummy_input_for_compile() -> Tensor:
            raise NotImplementedError

        def forward(self, x: Tensor) -> tuple[Tensor, ...]:
            """(B, C, H, W) uint8 -> features in ``features_list`` order, float32 (B, F)."""
            h = self.clf.features(x.float() / 255.0)
            feats = {"penultimate": h, "logits": self.clf.out(h)}
            return tuple(feats[k] for k in self.features_list)

    return DimgenClassifierExtractor


def extractor_name(data: str) -> str:
    """``dimgen-classifier-<data>``; ``npz:PATH`` becomes ``npz-<file stem>``, other characters safe."""
    if data.startswith("npz:"):
        data = "npz-" + Path(data[4:]).stem
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in data)
    return f"dimgen-classifier-{safe}"


def register_classifier_extractor(name: str) -> str:
    """Register the classifier extractor with torch-fidelity under ``name`` (once; idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(name, _extractor_class())
    return name


def load_inception_state(path: str | Path) -> dict[str, Tensor]:
    """Inception weights as a plain ``{name: tensor}`` dict, without ever running pickled code.

    ``.safetensors`` files are read with safetensors; anything else (torch-fidelity's ``.pth``)
    with ``torch.load(weights_only=True)``, whose restricted unpickler accepts only tensors and
    plain containers (torch-fidelity itself would call ``torch.load(weights_only=False)``).

    Raises:
        ConfigError: the file is missing, is not a plain tensor dict (e.g. a pickle of arbitrary
            objects), or does not hold torch-fidelity's InceptionV3 weights.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"Inception weights not found: {p}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(p))
        else:
            import warnings

            with warnings.catch_warnings():  # torch warns about pickle protocols: one line only
                warnings.simplefilter("ignore")
                state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, SafetensorError, EOFError, ...
        import pickle

        if isinstance(exc, pickle.UnpicklingError):
            first = "it holds pickled objects other than tensors"
        else:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            first = first.split(". ")[0][:160]
        raise ConfigError(
            f"Inception weights {p} are not a plain tensor file (refused without unpickling "
            f"anything: {first})"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ConfigError(f"Inception weights {p} are not a {{name: tensor}} state dict")
    for key, shape in _INCEPTION_SHAPES.items():
        if key not in state or tuple(state[key].shape) != shape:
            raise ConfigError(
                f"Inception weights {p} are not torch-fidelity's InceptionV3 "
                f"({key} missing or not of shape {shape})"
            )
        if not state[key].is_floating_point():
            raise ConfigError(
                f"Inception weights {p}: tensor {key} has dtype "
                f"{str(state[key].dtype).replace('torch.', '')}; expected floating point"
            )
    try:
        check_tensors(state, p)  # finite values, as for every weights file dimgen loads
    except RunFolderError as exc:
        raise ConfigError(str(exc)) from None
    return state


def find_inception_weights(path: str | Path | None = None) -> Path | None:
    """A verified local Inception weights file: ``path`` if given, else torch hub's cache.

    The file is checked with :func:`load_inception_state` (never unpickled), so a bad or hostile
    file is refused before any work starts.

    Raises:
        ConfigError: ``path`` is missing, or the file (given or cached) is not plain
            InceptionV3 weights.
    """
    if path is not None:
        p = Path(path).expanduser()
    else:
        p = Path(torch.hub.get_dir()) / "checkpoints" / _INCEPTION_FILE
        if not p.is_file():
            return None
    load_inception_state(p)
    return p


def _inception_class() -> type:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class SafeInception(FeatureExtractorInceptionV3):
        """torch-fidelity's InceptionV3, its weights loaded by :func:`load_inception_state`.

        torch-fidelity reads the weights with ``torch.load(weights_only=False)``; here it reads
        only bytes that dimgen serialised itself from the verified tensors, never the user's
        file, and never downloads.
        """

        def __init__(
            self,
            name: str,
            features_list: list[str],
            feature_extractor_weights_path: str | None = None,
            **kwargs: Any,
        ) -> None:
            if feature_extractor_weights_path is None:
                raise ConfigError(f"{name} needs a local Inception weights file")
            state = load_inception_state(feature_extractor_weights_path)
            buf = io.BytesIO()
            torch.save(state, buf)  # plain tensors only: verified above
            buf.seek(0)
            try:
                super().__init__(name, features_list, feature_extractor_weights_path=buf, **kwargs)
            except RuntimeError as exc:  # load_state_dict: missing / unexpected / mis-shaped keys
                first = (str(exc).strip().splitlines() or [""])[0][:160]
                raise ConfigError(
                    f"Inception weights {feature_extractor_weights_path} do not fit "
                    f"InceptionV3 ({first})"
                ) from None

    return SafeInception


def register_inception_extractor() -> str:
    """Register the safe Inception extractor with torch-fidelity as :data:`INCEPTION_NAME`."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if INCEPTION_NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(INCEPTION_NAME, _inception_class())
    return INCEPTION_NAME


def _fidelity(
    real: Tensor, fake: Tensor, extractor: str, weights: Path, cuda: bool, rgb: bool, seed: int
) -> dict[str, float]:
    import torch_fidelity

    n = min(len(real), len(fake))
    if n < 2:
        raise DataError(
            f"FID / KID need at least 2 images on each side, got {len(real)} and {len(fake)}"
        )
    out = torch_fidelity.calculate_metrics(
        input1=_Images(fake, rgb),
        input2=_Images(real, rgb),
        fid=True,
        kid=True,
        feature_extractor=extractor,
        feature_extractor_weights_path=str(weights),
        # Subsets smaller than the sets, so the KID's spread over subsets means something.
        kid_subset_size=max(2, min(1000, n // 2)),
        kid_subsets=100,
        cuda=cuda,
        batch_size=256,
        save_cpu_ram=True,
        cache=False,
        verbose=False,
        rng_seed=seed,
    )
    return {
        "fid": float(out["frechet_inception_distance"]),
        "kid": float(out["kernel_inception_distance_mean"]),
        "kid_std": float(out["kernel_inception_distance_std"]),
    }


def fidelity_metrics(
    real: Tensor | np.ndarray,
    fake: Tensor | np.ndarray,
    classifier_path: str | Path | None,
    extractor: str,
    *,
    inception_weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> dict[str, float]:
    """FID / KID of ``fake`` against ``real`` (float [0, 1] or uint8 (N, C, H, W) images).

    Returns ``fid_dimgen_classifier``, ``kid_dimgen_classifier`` (+ ``_std``) in the classifier's
    feature space when ``classifier_path`` is given, and ``fid``, ``kid`` (+ ``_std``) with
    Inception when ``inception_weights`` names a local file.
    """
    real8, fake8 = to_uint8(real, "real images"), to_uint8(fake, "generated images")
    if real8.ndim != 4 or fake8.shape[1:] != real8.shape[1:]:
        raise DataError(
            f"FID / KID need two sets of (N, C, H, W) images of one shape, got "
            f"{tuple(real8.shape)} and {tuple(fake8.shape)}"
        )
    cuda = torch.device(device).type == "cuda"
    out: dict[str, float] = {}
    if classifier_path is not None:
        register_classifier_extractor(extractor)
        m = _fidelity(real8, fake8, extractor, Path(classifier_path), cuda, False, seed)
        out.update({FID_CLASSIFIER: m["fid"], KID_CLASSIFIER: m["kid"],
                    f"{KID_CLASSIFIER}_std": m["kid_std"]})  # fmt: skip
    if inception_weights is not None:
        register_inception_extractor()
        m = _fidelity(real8, fake8, INCEPTION_NAME, Path(inception_weights), cuda, True, seed)
        out.update({"fid": m["fid"], "kid": m["kid"], "kid_std": m["kid_std"]})
    return out


# ---------------------------------------------------------------------------------------------
# feature-space precision / recall and classifier confidence


@torch.no_grad()
def classifier_outputs(
    clf: Classifier, x: Tensor | np.ndarray | StreamedImages, batch_size: int = 1024
) -> tuple[Tensor, Tensor]:
    """(features (N, F), class probabilities (N, K)) of images (N, *shape), on the CPU.

    Images are rounded to uint8 first (:func:`to_uint8`), as torch-fidelity sees them, so these
    features are the ones FID / KID (``fid_dimgen_classifier``) are computed on. They are
    computed ``batch_size`` images at a time; a streamed folder is decoded a batch at a time.
    """
    dev = next(clf.parameters()).device
    feats, probs = [], []
    if isinstance(x, StreamedImages):
        parts = (to_uint8(xb.cpu(), "images") for xb in x.chunks(batch_size))
    else:
        x8 = to_uint8(x)
        parts = (x8[i : i + batch_size] for i in range(0, len(x8), batch_size))
    for xb in parts:
        h = clf.features((xb.float() / 255.0).to(dev))
        feats.append(h.cpu())
        probs.append(torch.softmax(clf.out(h), 1).cpu())
    if not feats:
        return torch.zeros(0, 2 * clf.width), torch.zeros(0, clf.n_classes)
    return torch.cat(feats), torch.cat(probs)


def precision_recall(
    real: Tensor | np.ndarray, fake: Tensor | np.ndarray, k: int = 3
) -> dict[str, float]:
    """Improved precision and recall of Kynkäänniemi et al. (NeurIPS 2019) in a feature space.

    Each sample's manifold ball has the radius of its k-th nearest neighbour within its own set
    (itself excluded). Precision: fraction of ``fake`` (M, F) inside some ball of ``real``
    (N, F); recall: fraction of ``real`` inside some ball of ``fake``. Both in [0, 1]; torch-
    fidelity's implementation (``metric_prc``), with its generated-first argument order handled
    here.

    Raises:
        DataError: not two 2-D arrays of one feature width, non-finite values, or ``k`` not in
            [1, min(N, M) - 1].
    """
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    r = torch.as_tensor(np.asarray(real, dtype=np.float64))
    f = torch.as_tensor(np.asarray(fake, dtype=np.float64))
    if r.ndim != 2 or f.ndim != 2 or r.shape[1] != f.shape[1]:
        raise DataError(
            "precision / recall need two (n, F) feature arrays of one width, got "
            f"{tuple(r.shape)} and {tuple(f.shape)}"
        )
    if not (torch.isfinite(r).all() and torch.isfinite(f).all()):
        raise DataError("precision / recall features contain NaN or Inf")
    if not 1 <= k < min(len(r), len(f)):
        raise DataError(
            f"k must be in [1, {min(len(r), len(f)) - 1}] for {len(r)} real and {len(f)} "
            f"generated samples, got {k}"
        )
    precision, recall = calculate_precision_recall_full(f, r, neighborhood=k)
    return {"precision": float(precision), "recall": float(recall)}
