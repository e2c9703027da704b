"""Model-free k-nearest-neighbour estimators of KL divergence and differential entropy.

These are *estimates* (consistent, biased at small n), never bounds: they are reported beside
the KL bound carried from the encoder run so the two can be compared.

References:
    Wang, Kulkarni, Verdú. "Divergence estimation for multidimensional densities via
    k-nearest-neighbor distances." IEEE Trans. Inf. Theory 55(5), 2009.
    Pérez-Cruz. "Kullback-Leibler divergence estimation of continuous distributions." ISIT 2008.
    Kozachenko, Leonenko. "Sample estimate of the entropy of a random vector." 1987.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DataError

__all__ = ["knn_entropy", "knn_kl_divergence"]


def _points(x: np.ndarray, name: str, min_n: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise DataError(f"{name} must be an (n, d) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError(f"{name} contains NaN or Inf")
    # Ties have probability 0 under a density; exact duplicates would give log 0.
    x = np.unique(x, axis=0)
    if len(x) < min_n:
        raise DataError(f"{name}: need at least {min_n} distinct points, got {len(x)}")
    return x


def knn_kl_divergence(x: np.ndarray, y: np.ndarray, k: int = 5) -> float:
    """Estimate KL(P || Q) in nats from x ~ P (n, d) and y ~ Q (m, d) (Wang-Kulkarni-Verdú).

    D = (d / n) sum_i log(nu_k(i) / rho_k(i)) + log(m / (n - 1)), with rho_k(i) the distance from
    x_i to its k-th nearest neighbour among the other x, and nu_k(i) to its k-th nearest y.
    Exact duplicate rows are dropped first (they have probability 0 under a density), and a y
    that coincides with x_i is skipped when finding nu_k(i), as x_i itself is for rho_k(i), so a
    sample against itself gives log(n / (n - 1)) ~ 0 rather than log 0.

    Raises:
        DataError: k < 1, non-finite values, mismatched dimensions, or fewer than k + 1
            distinct points on either side.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> kl = knn_kl_divergence(rng.normal(1, 1, (2000, 1)), rng.normal(0, 1, (4000, 1)))
        >>> abs(kl - 0.5) < 0.1
        True
    """
    from scipy.spatial import cKDTree

    if k < 1:
        raise DataError(f"k must be >= 1, got {k}")
    x = _points(x, "samples of P", k + 1)
    y = _points(y, "samples of Q", k + 1)
    if x.shape[1] != y.shape[1]:
        raise DataError(f"samples of P have dimension {x.shape[1]}, samples of Q {y.shape[1]}")
    n, d = x.shape
    m = len(y)
    rho = cKDTree(x).query(x, k=k + 1)[0][:, k]  # column 0 is the point itself
    # Shared points (an x_i that is also a y_j) are skipped, just as x_i itself is skipped in
    # rho: nu is the distance to the k-th nearest y at a positive distance. Since y has no
    # duplicates, at most one y sits at distance 0, so the (k + 1) nearest suffice.
    near = cKDTree(y).query(x, k=k + 1)[0]  # (n, k + 1), ascending
    nu = np.where(near[:, 0] > 0, near[:, k - 1], near[:, k])
    return float(d * np.mean(np.log(nu / rho)) + math.log(m / (n - 1)))


def knn_entropy(x: np.ndarray, k: int = 5) -> float:
    """Kozachenko-Leonenko estimate of the differential entropy h(P) in nats from x ~ P (n, d).

    h = psi(n) - psi(k) + log V_d + (d / n) sum_i log rho_k(i), V_d the unit-ball volume.

    Example:
        >>> h = knn_entropy(np.random.default_rng(0).normal(size=(4000, 2)))
        >>> abs(h - math.log(2 * math.pi * math.e)) < 0.05
        True
    """
    from scipy.spatial import cKDTree
    from scipy.special import digamma, gammaln

    if k < 1:
        raise DataError(f"k must be >= 1, got {k}")
    x = _points(x, "samples", k + 1)
    n, d = x.shape
    rho = cKDTree(x).query(x, k=k + 1)[0][:, k]
    log_vd = 0.5 * d * math.log(math.pi) - float(gammaln(0.5 * d + 1))
    return float(digamma(n) - digamma(k) + log_vd + d * np.mean(np.log(rho)))
