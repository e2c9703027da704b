"""Linear and kNN probes on the frozen backbone features of a pretrain run.

The linear probe is a multinomial logistic regression (scikit-learn, L-BFGS) on standardised
features, trained on the pre-training split's labelled features and scored on the probe split
(top-1 and top-5 accuracy, %). The kNN probe is scikit-learn's k-nearest-neighbour vote with
cosine distance (k = 20, distance-weighted), the usual SSL monitor (Wu et al., CVPR 2018).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import from_dict
from ..data.stream import StreamedImages
from ..errors import DataError, RunFolderError
from ..io import load_model_weights, read_run
from .config import PretrainConfig
from .data import describe_split, load_ssl_data
from .models import SSLNet
from .trainer import WEIGHTS, build_net, embed

__all__ = ["knn_probe", "linear_probe", "load_pretrained", "probe_run"]


def linear_probe(
    f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray,
    seed: int = 0, max_iter: int = 1000,
) -> dict[str, float]:  # fmt: skip
    """Top-1 and top-5 accuracy (%) of a logistic regression on (N, F) features.

    Raises :class:`DataError` for mismatched shapes, non-finite features or a single class.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    _check(f_train, y_train, "train")
    _check(f_test, y_test, "test")
    if len(np.unique(y_train)) < 2:
        raise DataError("the linear probe needs at least 2 classes in the training labels")
    scaler = StandardScaler().fit(f_train)
    clf = LogisticRegression(max_iter=max_iter, random_state=seed)
    clf.fit(scaler.transform(f_train), y_train)
    proba = clf.predict_proba(scaler.transform(f_test))  # (N, classes)
    k = min(5, proba.shape[1])
    top = clf.classes_[np.argsort(-proba, axis=1)[:, :k]]  # (N, k)
    return {"top1": 100.0 * float(np.mean(top[:, 0] == y_test)),
            "top5": 100.0 * float(np.mean((top == y_test[:, None]).any(axis=1)))}  # fmt: skip


def knn_probe(
    f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray, k: int = 20
) -> float:
    """Accuracy (%) of a distance-weighted cosine k-NN vote on (N, F) features."""
    from sklearn.neighbors import KNeighborsClassifier

    _check(f_train, y_train, "train")
    _check(f_test, y_test, "test")
    knn = KNeighborsClassifier(n_neighbors=min(k, len(f_train)), metric="cosine",
                               weights="distance")  # fmt: skip
    knn.fit(f_train, y_train)
    return 100.0 * float(np.mean(knn.predict(f_test) == y_test))


def _check(f: np.ndarray, y: np.ndarray, name: str) -> None:
    if f.ndim != 2 or y.shape != (len(f),):
        raise DataError(f"{name} features must be (N, F) with N labels, got {f.shape}, {y.shape}")
    if not np.isfinite(f).all():
        raise DataError(f"{name} features contain NaN or Inf")


def load_pretrained(
    run: str | Path, device: str | torch.device = "cpu"
) -> tuple[Path, PretrainConfig, SSLNet]:
    """``(run_dir, config, net)`` of a complete pretrain run folder, weights loaded, eval mode.

    Raises :class:`RunFolderError` for a folder that is not a complete pretrain run or whose
    weights do not match its config.
    """
    run_dir, _ = read_run(run, "pretrain")
    path = run_dir / WEIGHTS

    def build(meta: dict[str, Any]) -> torch.nn.Module:
        if not isinstance(meta.get("config"), dict):
            raise RunFolderError(f"{path} is not a pretrain model")
        return build_net(from_dict(PretrainConfig, meta["config"], source=str(path)))

    # the network's names, shapes, dtypes and finite values, as for every weights file
    tensors, meta = load_model_weights(path, "pretrain", build, "a pretrain model", "net.")
    cfg = from_dict(PretrainConfig, meta["config"], source=str(path))
    net = build_net(cfg)
    try:
        net.load_state_dict(tensors)
    except RuntimeError as exc:
        raise RunFolderError(
            f"{run_dir / WEIGHTS} does not match its config ({str(exc)[:120]})"
        ) from None
    return run_dir, cfg, net.to(device).eval()


def probe_run(
    run: str | Path, *, data_root: str | None = None, device: str = "cpu", k: int = 20,
    seed: int | None = None, progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Linear (top-1, top-5) and kNN probes on the frozen backbone of a pretrain ``run``.

    The run's own data and split are reloaded (labelled pre-training split -> probe split).
    Returns a flat dict: ``top1``, ``top5``, ``knn`` (%), ``knn_k`` (the neighbours used:
    ``k``, at most the training images), ``train_images``, ``probe_images``, ``data`` (how the
    numbers must be labelled). ``progress`` (default True, as the CLI): one line per phase on
    stderr; ``progress=False``: silent.
    """
    from ..training.phases import phase

    _, cfg, net = load_pretrained(run, device)  # errors first: one line, no phase before it
    ds = load_ssl_data(cfg.data, data_root or cfg.data_root, cfg.test_fraction, cfg.seed,
                       image_size=cfg.image_size)  # fmt: skip
    dev = next(net.parameters()).device
    n = len(ds.x_train) + len(ds.x_test)

    def images(x: Any) -> Any:  # a streamed folder is embedded a batch at a time
        if isinstance(x, StreamedImages):
            return x
        return torch.from_numpy(np.ascontiguousarray(x)).to(dev)

    with phase("probe", f"[1/2] embedding {n} images with the frozen backbone", progress):
        f_tr, _ = embed(net, images(ds.x_train))
        f_te, _ = embed(net, images(ds.x_test))
    y_tr, y_te = np.asarray(ds.y_train), np.asarray(ds.y_test)
    with phase("probe", "[2/2] linear and kNN probes", progress):
        out: dict[str, Any] = linear_probe(f_tr.numpy(), y_tr, f_te.numpy(), y_te,
                                           seed=cfg.seed if seed is None else seed)  # fmt: skip
        out["knn"] = knn_probe(f_tr.numpy(), y_tr, f_te.numpy(), y_te, k)
    out["knn_k"] = min(k, len(f_tr))  # the neighbours the vote used (k, at most every image)
    out.update(train_images=len(ds.x_train), probe_images=len(ds.x_test),
               data=describe_split(cfg.data, ds, cfg.test_fraction, cfg.seed))  # fmt: skip
    return out
