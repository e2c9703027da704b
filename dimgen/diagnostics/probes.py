"""Downstream quality: what simple classifiers still read from the codes, and the silhouette.

scikit-learn is imported where it is used, so ``import dimgen.diagnostics`` stays light.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import DataError
from .results import ProbeResult
from .settings import EvalConfig

__all__ = ["chance_accuracy", "probe_accuracies", "silhouette"]


def chance_accuracy(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """dimgen's one "chance" accuracy: always predict the majority class of the training labels
    (the smallest label on a tie), scored on the held-out labels ``y_test``; in [0, 1].

    Every report uses it (encoder ``chance_acc``, ``dimgen evaluate``, the GAN's
    ``chance_consistency`` in %), so the same held-out digits give the same chance everywhere.
    Raises :class:`DataError` for empty label arrays.
    """
    y_train, y_test = np.asarray(y_train).ravel(), np.asarray(y_test).ravel()
    if len(y_train) == 0 or len(y_test) == 0:
        raise DataError("chance accuracy needs training and held-out labels")
    classes, counts = np.unique(y_train, return_counts=True)
    return float(np.mean(y_test == classes[np.argmax(counts)]))


def _stratified_subset(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of about ``k`` rows keeping class proportions (all rows if k >= len(y))."""
    if k >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    _, counts = np.unique(y, return_counts=True)
    strat = y if counts.min() >= 2 else None
    keep, _ = train_test_split(
        idx, train_size=k, stratify=strat, random_state=int(rng.integers(2**31))
    )
    return np.sort(keep)


def probe_accuracies(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seed: int = 0,
    max_train: int = 20000,
    protocol: str = "split",
) -> ProbeResult:
    """Train k-NN (k=5), Gaussian naive Bayes, a 1-hidden-layer MLP and a linear probe; score them.

    The MLP (64 ReLU units, Adam, at most 200 epochs) and the linear probe (multinomial
    logistic regression) see standardised codes; k-NN and naive Bayes the codes as they are.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y_train)) < 2:
        raise DataError("probes need at least 2 classes among the training labels")
    if len(x_test) == 0:
        raise DataError("probes need at least one held-out code")
    rng = np.random.default_rng([seed, 5])
    keep = _stratified_subset(y_train, max_train, rng)
    xt, yt = x_train[keep], y_train[keep]
    models = {
        "knn": KNeighborsClassifier(n_neighbors=min(5, len(xt))),
        "gnb": GaussianNB(),
        "mlp": make_pipeline(
            StandardScaler(),
            MLPClassifier(hidden_layer_sizes=(64,), max_iter=200, random_state=seed),
        ),
        "linear": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
    }
    acc = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: the probe budget is fixed on purpose
        for name, model in models.items():
            acc[name] = float(model.fit(xt, yt).score(x_test, y_test))
    classes = np.unique(yt)
    return ProbeResult(
        knn_acc=acc["knn"],
        gnb_acc=acc["gnb"],
        mlp_acc=acc["mlp"],
        linear_acc=acc["linear"],
        chance_acc=chance_accuracy(y_train, y_test),
        n_classes=len(classes),
        n_train=len(xt),
        n_test=len(x_test),
        protocol=protocol,
    )


def silhouette(x: np.ndarray, y: np.ndarray, *, max_n: int = 2000, seed: int = 0) -> float | None:
    """Silhouette score of the labels on (a random subset of at most ``max_n``) codes.

    In [-1, 1]: near 1 when classes form tight, separated clusters, near 0 when they overlap.
    None when the labels have a single class (or as many classes as codes).
    """
    from sklearn.metrics import silhouette_score

    if len(x) > max_n:
        sel = np.random.default_rng([seed, 6]).choice(len(x), max_n, replace=False)
        x, y = x[sel], y[sel]
    k = len(np.unique(y))
    if k < 2 or k > len(x) - 1:
        return None
    return float(silhouette_score(x, y))


def _run_probes(
    x: np.ndarray, y: np.ndarray, s: np.ndarray | None, cfg: EvalConfig, notes: list[str]
) -> ProbeResult | None:
    if s is not None and (s == "train").any() and (s == "test").any():
        tr, te = s == "train", s == "test"
        if len(np.unique(y[tr])) < 2:
            notes.append("training split has a single class: probes skipped")
            return None
        return probe_accuracies(
            x[tr],
            y[tr],
            x[te],
            y[te],
            seed=cfg.seed,
            max_train=cfg.probe_max_train,
            protocol="split",
        )
    from sklearn.model_selection import train_test_split

    if len(y) < 4:
        notes.append("fewer than 4 labelled codes: probes skipped")
        return None
    _, counts = np.unique(y, return_counts=True)
    strat = y if counts.min() >= 2 else None
    idx_tr, idx_te = train_test_split(
        np.arange(len(y)), test_size=0.5, stratify=strat, random_state=cfg.seed
    )
    if len(np.unique(y[idx_tr])) < 2:
        notes.append("the random training half has a single class: probes skipped")
        return None
    return probe_accuracies(
        x[idx_tr],
        y[idx_tr],
        x[idx_te],
        y[idx_te],
        seed=cfg.seed,
        max_train=cfg.probe_max_train,
        protocol="stratified 50/50",
    )
