"""Linear and kNN probes on the frozen backbone features of a pretrain run.

Two families, reported side by side by :func:`probe_run` and ``dimgen probe``:

- **scikit-learn probes** (dimgen's original monitors): :func:`linear_probe`, a multinomial
  logistic regression (L-BFGS) on standardised features, top-1 and top-5 accuracy (%); and
  :func:`knn_probe`, scikit-learn's distance-weighted cosine k-NN vote (k = 20).
- **The SSL literature's protocols**, in torch on any device: :func:`linear_sgd_probe`, a linear
  head trained with SGD on frozen features (solo-learn's offline linear evaluation, the protocol
  of the paper's Table 1: top-1 and top-5), and :func:`weighted_knn_probe`, the weighted kNN of
  Wu et al. (CVPR 2018, "InstDisc") with k = 200 and temperature 0.1, as lightly's
  ``knn_predict`` and solo-learn's ``WeightedKNNClassifier`` compute it.

Every probe trains on the pre-training split's labelled features and scores the probe split.
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

__all__ = [
    "knn_probe",
    "linear_probe",
    "linear_sgd_probe",
    "load_pretrained",
    "probe_run",
    "weighted_knn_probe",
]

#: Elements of one block of the kNN similarity matrix (queries x bank): 64 MiB in float32.
SIM_BLOCK_ELEMENTS = 1 << 24


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
    if len(f) == 0:
        raise DataError(f"{name} features are empty")
    if not np.isfinite(f).all():
        raise DataError(f"{name} features contain NaN or Inf")


def _check_pair(
    f_train: Any, y_train: Any, f_test: Any, y_test: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked float32 features, and labels as indices into the training classes.

    Returns ``(f_train, f_test, i_train, i_test, classes)``: ``i_train`` (N,) in
    ``[0, len(classes))``, ``i_test`` (M,) with -1 for a class absent from training (never right).
    """
    f_train, f_test = np.asarray(f_train), np.asarray(f_test)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    _check(f_train, y_train, "train")
    _check(f_test, y_test, "test")
    if f_train.shape[1] != f_test.shape[1]:
        raise DataError(f"train and test features differ in width: {f_train.shape[1]} != "
                        f"{f_test.shape[1]}")  # fmt: skip
    bad = f"train and test labels are not comparable: {y_train.dtype} and {y_test.dtype}"
    if (y_train.dtype.kind in "biuf") != (y_test.dtype.kind in "biuf"):
        raise DataError(bad)
    try:
        classes, i_train = np.unique(y_train, return_inverse=True)
        pos = np.clip(np.searchsorted(classes, y_test), 0, len(classes) - 1)
    except TypeError:
        raise DataError(bad) from None
    i_test = np.where(classes[pos] == y_test, pos, -1)
    big = np.finfo(np.float32).max
    if np.abs(f_train).max() > big or np.abs(f_test).max() > big:
        raise DataError("features overflow float32 (|value| > 3.4e38)")
    f_train, f_test = f_train.astype(np.float32), f_test.astype(np.float32)
    return f_train, f_test, i_train.astype(np.int64), i_test.astype(np.int64), classes


def _top_k_accuracy(top: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """(M, k) predicted class indices, best first, and (M,) targets -> top-1 / top-k (%)."""
    hit = top == target[:, None]
    return {"top1": 100.0 * hit[:, 0].double().mean().item(),
            "top5": 100.0 * hit.any(dim=1).double().mean().item()}  # fmt: skip


def weighted_knn_probe(
    f_train: Any, y_train: Any, f_test: Any, y_test: Any, k: int = 200,
    temperature: float = 0.1, device: str | torch.device = "cpu",
) -> dict[str, float]:  # fmt: skip
    """Top-1 and top-5 accuracy (%) of the weighted kNN of the SSL benchmarks on (N, F) features.

    The convention of Wu et al. (CVPR 2018, InstDisc), as lightly's
    ``lightly.utils.benchmarking.knn_predict`` (from MoCo's CIFAR demo) and solo-learn's
    ``WeightedKNNClassifier`` (defaults k = 20, T = 0.07 there) compute it: features
    L2-normalised, cosine similarity s of each probe feature to every training feature, the ``k``
    most similar training features vote for their class with weight exp(s / ``temperature``),
    class scores are the summed weights, and the classes ranked by score are the predictions
    (top-1, top-5). Defaults k = 200, T = 0.1 are lightly's and the InstDisc paper's. ``k``
    larger than the training set uses all of it.

    Float32 on ``device``; the (M, N) similarity matrix is built in blocks of at most
    :data:`SIM_BLOCK_ELEMENTS` entries, so memory stays bounded for any M. No randomness: the same
    features give the same numbers on every call, and on CPU and GPU up to float32 rounding of
    the similarities (a near-tie at the k-th neighbour can differ).

    Raises :class:`DataError` for mismatched shapes or widths, empty or non-finite features,
    labels of different kinds (numbers and text), ``k`` < 1 or a temperature that is not a
    positive finite number.
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise DataError(f"the weighted kNN needs k >= 1, got {k}")
    if not (np.isfinite(temperature) and temperature > 0):
        raise DataError(f"the weighted kNN needs a temperature > 0, got {temperature}")
    f_tr, f_te, i_tr, i_te, classes = _check_pair(f_train, y_train, f_test, y_test)
    dev = torch.device(device)
    bank = torch.nn.functional.normalize(torch.from_numpy(f_tr).to(dev), dim=1)  # (N, F)
    labels = torch.from_numpy(i_tr).to(dev)  # (N,)
    queries = torch.nn.functional.normalize(torch.from_numpy(f_te).to(dev), dim=1)  # (M, F)
    target = torch.from_numpy(i_te).to(dev)
    n, c = len(bank), len(classes)
    kk, top_n = min(int(k), n), min(5, c)
    rows = max(1, SIM_BLOCK_ELEMENTS // n)  # queries per block of the similarity matrix
    tops = []
    for q in queries.split(rows):
        sim_w, idx = (q @ bank.T).topk(kk, dim=1)  # (b, kk), most similar first
        weight = (sim_w / temperature).exp()
        scores = torch.zeros(len(q), c, device=dev).scatter_add_(1, labels[idx], weight)
        tops.append(scores.topk(top_n, dim=1).indices)  # (b, top_n), best class first
    return _top_k_accuracy(torch.cat(tops), target)


def linear_sgd_probe(
    f_train: Any, y_train: Any, f_test: Any, y_test: Any, *, epochs: int = 100,
    batch_size: int = 256, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0,
    milestones: tuple[float, ...] = (0.6, 0.8), seed: int = 0, device: str | torch.device = "cpu",
) -> dict[str, float]:  # fmt: skip
    """Top-1 and top-5 accuracy (%) of a linear head trained with SGD on frozen (N, F) features.

    solo-learn's offline linear evaluation (``main_linear.py`` with
    ``scripts/linear/*/*.yaml``: SGD, momentum 0.9, batch 256, no weight decay, cross-entropy,
    100 epochs, learning rate x 0.1 at epochs 60 and 80), the protocol behind the paper's
    Table 1. Two documented departures: the features are computed once, without augmentation
    (solo-learn re-augments the images every epoch), and they are standardised with the training
    split's mean and standard deviation (the batch-norm without affine that MAE and MoCo v3 put
    before the head), so one learning rate (0.1) serves every method, where solo-learn tunes it
    per method (0.1 to 30) to the raw features' scale. ``milestones`` are fractions of
    ``epochs``. The head starts at N(0, 0.01^2) weights and zero bias (MoCo v3).

    Float32 on ``device``. Deterministic for a ``seed``: the initial weights and every epoch's
    shuffle are drawn on the CPU from one seeded generator, so the CPU and GPU paths see the
    same batches and differ only by float32 rounding.

    Raises :class:`DataError` for mismatched shapes or widths, empty or non-finite features,
    labels of different kinds (numbers and text), fewer than 2 training classes, or settings out
    of range (epochs or batch size < 1, lr <= 0).
    """
    if epochs < 1 or batch_size < 1 or not (np.isfinite(lr) and lr > 0):
        raise DataError(f"the SGD probe needs epochs >= 1, batch_size >= 1 and lr > 0, got "
                        f"{epochs}, {batch_size}, {lr}")  # fmt: skip
    f_tr, f_te, i_tr, i_te, classes = _check_pair(f_train, y_train, f_test, y_test)
    if len(classes) < 2:
        raise DataError("the linear probe needs at least 2 classes in the training labels")
    mean = f_tr.mean(0, dtype=np.float64)
    std = f_tr.std(0, dtype=np.float64)
    std[std == 0] = 1.0  # a constant feature carries nothing: left at 0 after centring
    dev = torch.device(device)
    x_tr = torch.from_numpy(((f_tr - mean) / std).astype(np.float32)).to(dev)
    x_te = torch.from_numpy(((f_te - mean) / std).astype(np.float32)).to(dev)
    y_tr = torch.from_numpy(i_tr).to(dev)
    gen = torch.Generator().manual_seed(seed)  # the probe's own: the global RNG is left alone
    w = (0.01 * torch.randn(len(classes), x_tr.shape[1], generator=gen)).to(dev).requires_grad_()
    b = torch.zeros(len(classes), device=dev, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=lr, momentum=momentum, weight_decay=weight_decay)
    steps = sorted({round(m * epochs) for m in milestones if 0 < m < 1})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, steps, gamma=0.1)
    n = len(x_tr)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(dev)
        for idx in order.split(batch_size):
            loss = torch.nn.functional.cross_entropy(x_tr[idx] @ w.T + b, y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        top = (x_te @ w.T + b).topk(min(5, len(classes)), dim=1).indices  # (M, 5)
    return _top_k_accuracy(top, torch.from_numpy(i_te).to(dev))


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
    seed: int | None = None, progress: bool = True, wknn_k: int = 200,
    wknn_temperature: float = 0.1, sgd_epochs: int = 100,
) -> dict[str, Any]:  # fmt: skip
    """Every probe of this module on the frozen backbone of a pretrain ``run``.

    The run's own data and split are reloaded (labelled pre-training split -> probe split).
    Returns a flat dict (accuracies in %): ``top1``, ``top5`` (scikit-learn's logistic
    regression), ``knn`` (scikit-learn's cosine vote) and ``knn_k`` (its neighbours: ``k``, at
    most the training images); ``sgd_top1``, ``sgd_top5`` (:func:`linear_sgd_probe`, solo-learn's
    protocol, ``sgd_epochs`` epochs); ``wknn_top1``, ``wknn_top5``, ``wknn_k`` (the neighbours
    used: ``wknn_k``, at most the training images), ``wknn_temperature``
    (:func:`weighted_knn_probe`); ``train_images``, ``probe_images``, ``data`` (how the numbers
    must be labelled). The backbone and the torch probes run on ``device`` (``auto``: CUDA when
    available). ``progress`` (default True, as the
    CLI): one line per phase on stderr; ``progress=False``: silent.

    Raises :class:`RunFolderError` for a folder that is not a complete pretrain run, and
    :class:`DataError` for data without labels or probe settings out of range, and
    :class:`ConfigError` for a CUDA device on a machine without one (all before any embedding).
    """
    from ..training.phases import phase

    if isinstance(wknn_k, bool) or int(wknn_k) != wknn_k or wknn_k < 1:
        raise DataError(f"the weighted kNN needs k >= 1, got {wknn_k}")
    if not (np.isfinite(wknn_temperature) and wknn_temperature > 0):
        raise DataError(f"the weighted kNN needs a temperature > 0, got {wknn_temperature}")
    if sgd_epochs < 1:
        raise DataError(f"the SGD probe needs epochs >= 1, got {sgd_epochs}")
    from ..training.devices import resolve_device

    _, cfg, net = load_pretrained(run, resolve_device(str(device)))  # errors first: one line
    ds = load_ssl_data(cfg.data, data_root or cfg.data_root, cfg.test_fraction, cfg.seed,
                       image_size=cfg.image_size)  # fmt: skip
    dev = next(net.parameters()).device
    seed = cfg.seed if seed is None else seed
    n = len(ds.x_train) + len(ds.x_test)

    def images(x: Any) -> Any:  # a streamed folder is embedded a batch at a time
        if isinstance(x, StreamedImages):
            return x
        return torch.from_numpy(np.ascontiguousarray(x)).to(dev)

    with phase("probe", f"[1/3] embedding {n} images with the frozen backbone", progress):
        f_tr, _ = embed(net, images(ds.x_train))
        f_te, _ = embed(net, images(ds.x_test))
    f_tr, f_te = f_tr.numpy(), f_te.numpy()
    y_tr, y_te = np.asarray(ds.y_train), np.asarray(ds.y_test)
    with phase("probe", "[2/3] scikit-learn linear and kNN probes", progress):
        out: dict[str, Any] = linear_probe(f_tr, y_tr, f_te, y_te, seed=seed)
        out["knn"] = knn_probe(f_tr, y_tr, f_te, y_te, k)
    out["knn_k"] = min(k, len(f_tr))  # the neighbours the vote used (k, at most every image)
    used = min(wknn_k, len(f_tr))  # the weighted vote's neighbours (at most every image)
    what = f"SGD linear head ({sgd_epochs} epochs), weighted kNN (k={used}, T={wknn_temperature:g})"
    with phase("probe", f"[3/3] {what}", progress):
        sgd = linear_sgd_probe(f_tr, y_tr, f_te, y_te, epochs=sgd_epochs, seed=seed, device=dev)
        wknn = weighted_knn_probe(f_tr, y_tr, f_te, y_te, k=wknn_k,
                                  temperature=wknn_temperature, device=dev)  # fmt: skip
    out.update(sgd_top1=sgd["top1"], sgd_top5=sgd["top5"], sgd_epochs=sgd_epochs,
               wknn_top1=wknn["top1"], wknn_top5=wknn["top5"], wknn_k=used,
               wknn_temperature=float(wknn_temperature))  # fmt: skip
    out.update(train_images=len(ds.x_train), probe_images=len(ds.x_test),
               data=describe_split(cfg.data, ds, cfg.test_fraction, cfg.seed))  # fmt: skip
    return out
