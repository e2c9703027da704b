"""Random orthonormal projections and disjoint subsamples: the independent p-values that
Fisher's method merges exactly."""

from __future__ import annotations

import numpy as np
from scipy import linalg

from .checks import _need
from .pvalues import _univariate_p
from .settings import MIN_SAMPLES

__all__ = ["coordinate_pvalues", "projection_pvalues", "random_directions"]


def random_directions(k: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """(k, d) unit vectors, each uniform on the sphere; rows of one frame are orthonormal.

    Rows come in blocks of up to d taken from Haar-random rotations (QR of a Gaussian matrix with
    the sign fix of Mezzadri 2007). Projections of N(0, I) data onto orthonormal directions are
    independent N(0, 1) samples, which keeps the combined p-values exact.
    """
    blocks, left = [], k
    while left > 0:
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        q = q * np.sign(np.diag(r))[None, :]
        blocks.append(q.T[: min(left, d)])
        left -= d
    return np.concatenate(blocks) if blocks else np.zeros((0, d))


def _subsamples(n: int, m: int, b: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Up to ``b`` disjoint random subsets of size m (one subset, all rows, if m >= n)."""
    if m >= n:
        return [np.arange(n)]
    perm = rng.permutation(n)
    return [np.sort(perm[i * m : (i + 1) * m]) for i in range(min(b, n // m))]


def _whiten(x: np.ndarray) -> np.ndarray | None:
    """Centre and whiten with the sample covariance (None if it is singular)."""
    xc = x - x.mean(0)
    cov = np.atleast_2d(xc.T @ xc / len(x))
    eig = np.linalg.eigvalsh(cov)
    if eig[0] <= 1e-12 * max(eig[-1], 1e-300):
        return None
    return linalg.solve_triangular(np.linalg.cholesky(cov), xc.T, lower=True).T


def projection_pvalues(
    x: np.ndarray,
    test: str,
    *,
    n_directions: int | None = None,
    whiten: bool = True,
    subsample: int | None = None,
    n_subsamples: int = 1,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """p-values of a univariate test on random 1-D projections over disjoint random subsamples.

    Each subsample gets a fresh random orthonormal frame (:func:`random_directions`). With
    ``whiten`` the codes are first centred and whitened by their sample covariance, so the
    projections of *any* Gaussian are (nearly) independent N(0, 1) samples and only the shape is
    tested; without it, projections of N(0, I) are exactly independent N(0, 1).

    Args:
        x: (n, d) data.
        test: ``dagostino`` (D'Agostino-Pearson K^2), ``shapiro`` (Shapiro-Wilk) or ``ks``
            (Kolmogorov-Smirnov against N(0, 1) with known parameters).
        n_directions: directions per subsample (default d; at most d keeps them orthonormal).
        whiten: whiten the data first (shape tests) or not (tests of the prior's scale).
        subsample: size of each subsample (all n if None or >= n).
        n_subsamples: disjoint subsamples drawn when ``subsample < n`` (at most n // subsample).
        rng: random generator for directions and subsamples.

    Returns:
        (b, k) p-values for b subsamples and k directions; zeros if the covariance is singular.
    """
    n, d = x.shape
    k = d if n_directions is None else n_directions
    m = n if subsample is None or subsample >= n else subsample
    _need(m, test if test in MIN_SAMPLES else "ks", "samples per subsample" if m < n else "codes")
    rng = rng if rng is not None else np.random.default_rng(0)
    parts = _subsamples(n, m, n_subsamples, rng)
    w = _whiten(x) if whiten else x
    if w is None:
        return np.zeros((len(parts), k))
    return np.stack([_univariate_p(w[idx] @ random_directions(k, d, rng).T, test) for idx in parts])


def coordinate_pvalues(
    x: np.ndarray,
    test: str,
    *,
    subsample: int | None = None,
    n_subsamples: int = 1,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """(b, d) p-values of a univariate test on every coordinate, over disjoint subsamples."""
    n = len(x)
    m = n if subsample is None or subsample >= n else subsample
    _need(m, test if test in MIN_SAMPLES else "ks", "samples per subsample" if m < n else "codes")
    parts = _subsamples(n, m, n_subsamples, rng if rng is not None else np.random.default_rng(0))
    return np.stack([_univariate_p(x[idx], test) for idx in parts])
