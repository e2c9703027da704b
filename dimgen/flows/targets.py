"""Target priors: 1-D laws (and their products), Gaussian mixtures, and sample sets.

A target is named by a strict spec string (never evaluated as code)::

    NAME[:COUNT][(KEY=NUMBER, ...)]

``uniform``, ``gaussian`` (alias ``normal``), ``laplace``, ``logistic``, ``cauchy`` and
``exponential`` are i.i.d. products of a 1-D law over the d coordinates, with scipy.stats
parameters (``loc``, ``scale``: ``laplace(scale=2)``, ``uniform(loc=-1,scale=2)``);
``scipy:NAME(...)`` is any continuous scipy.stats law with numeric parameters
(``scipy:gamma(a=2)``). ``mixture:K(radius=R,std=S,seed=N)`` is an equal-weight mixture of K
isotropic Gaussians (defaults R = 3, S = 0.5, seed 0); its means lie on a line (d = 1), on a
circle (d = 2) or at seeded random directions on the sphere of radius R (d >= 3).

Example:
    >>> t = make_target("laplace(scale=2)", dim=2)
    >>> t.sample(3, seed=0).shape
    (3, 2)
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError

__all__ = [
    "LAWS",
    "Entropy",
    "Law1D",
    "MixtureTarget",
    "ProductTarget",
    "SampleTarget",
    "Target",
    "load_target_samples",
    "make_target",
    "parse_spec",
    "source_law",
]

LAWS = {
    "uniform": "uniform",
    "gaussian": "norm",
    "normal": "norm",
    "laplace": "laplace",
    "logistic": "logistic",
    "cauchy": "cauchy",
    "exponential": "expon",
}
"""Named 1-D laws -> their scipy.stats names."""

_SPEC = re.compile(
    r"^(?P<name>(?:scipy:)?[A-Za-z_][A-Za-z0-9_]*)(?::(?P<count>[0-9]+))?"
    r"(?:\((?P<params>[^()]*)\))?$"
)
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MIXTURE_PARAMS = {"radius": 3.0, "std": 0.5, "seed": 0.0}


def parse_spec(spec: str) -> tuple[str, int | None, dict[str, float]]:
    """Split ``NAME[:COUNT][(KEY=NUMBER, ...)]`` into (name, count, params); strict, no eval."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("target must be a non-empty string such as 'uniform' or 'mixture:8'")
    m = _SPEC.match(spec.replace(" ", ""))
    if m is None:
        raise ConfigError(
            f"cannot parse target {spec!r}: expected NAME[:COUNT][(KEY=NUMBER,...)], "
            "e.g. 'laplace(scale=2)' or 'mixture:8'"
        )
    params: dict[str, float] = {}
    for item in filter(None, (m["params"] or "").split(",")):
        key, sep, value = item.partition("=")
        if not sep or not _KEY.match(key):
            raise ConfigError(f"target {spec!r}: parameter {item!r} is not KEY=NUMBER")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"target {spec!r}: {key}={value!r} is not a number") from None
        if not math.isfinite(number):
            raise ConfigError(f"target {spec!r}: {key} must be finite, got {value}")
        if key in params:
            raise ConfigError(f"target {spec!r}: parameter {key} given twice")
        params[key] = number
    count = int(m["count"]) if m["count"] is not None else None
    return m["name"].lower(), count, params


def _fmt_params(params: dict[str, float]) -> str:
    if not params:
        return ""
    return "(" + ",".join(f"{k}={v:g}" for k, v in sorted(params.items())) + ")"


@dataclass(frozen=True)
class Entropy:
    """Differential entropy in nats, its standard error (0 if exact) and how it was obtained."""

    nats: float
    stderr: float
    method: str


class Law1D:
    """A continuous 1-D law (a frozen scipy.stats distribution) with tail-accurate CDF maps.

    Probability-integral transforms lose precision when a probability near 1 is rounded; here
    every point is represented by its *tail mass* ``p = min(F(x), 1 - F(x))`` and which side it is
    on, so ``ppf``/``isf`` invert ``cdf``/``sf`` to ~1e-15 even far in the tails.
    """

    def __init__(self, dist: Any, name: str) -> None:
        self.dist = dist
        self.name = name

    def support(self) -> tuple[float, float]:
        """Closed support interval (endpoints may be infinite)."""
        lo, hi = self.dist.support()
        return float(lo), float(hi)

    def to_tail(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x -> (tail mass p in [0, 1/2], upper side?): F(x) = p below the median, 1 - p above."""
        c = self.dist.cdf(x)
        upper = c > 0.5
        p = np.where(upper, self.dist.sf(x), c)
        return p, upper

    def from_tail(self, p: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_tail`."""
        return np.where(upper, self.dist.isf(p), self.dist.ppf(p))

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.dist.logpdf(x), dtype=np.float64)

    def entropy(self) -> float:
        return float(self.dist.entropy())

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.dist.rvs(size=shape, random_state=rng), dtype=np.float64)

    def __repr__(self) -> str:
        return f"Law1D({self.name})"


def _scipy_law(scipy_name: str, params: dict[str, float], spec: str) -> Law1D:
    import scipy.stats as st

    dist = getattr(st, scipy_name, None)
    if not isinstance(dist, st.rv_continuous):
        raise ConfigError(
            f"target {spec!r}: scipy.stats has no continuous distribution {scipy_name!r}"
        )
    try:
        frozen = dist(**params)
        with np.errstate(all="ignore"):
            mid = float(frozen.ppf(0.5))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"target {spec!r}: invalid parameters ({exc})") from None
    if not math.isfinite(mid):
        shapes = f"shape parameters {dist.shapes}, " if dist.shapes else ""
        raise ConfigError(
            f"target {spec!r}: invalid parameter values for {scipy_name} ({shapes}loc, scale > 0)"
        )
    return Law1D(frozen, spec)


def source_law(prior: str) -> Law1D:
    """The 1-D marginal of an encoder prior: N(0, 1) for ``gaussian``, U[0, 1] for ``uniform``."""
    if prior == "gaussian":
        return _scipy_law("norm", {}, "gaussian")
    if prior == "uniform":
        return _scipy_law("uniform", {}, "uniform")
    raise ConfigError(f"unknown source prior {prior!r} (expected gaussian or uniform)")


class Target(ABC):
    """A distribution on R^d that codes can be mapped to."""

    spec: str
    dim: int

    @property
    def has_density(self) -> bool:
        """Whether :meth:`log_prob` and exact sampling are available."""
        return True

    @property
    def law(self) -> Law1D | None:
        """The 1-D law when the target is an i.i.d. product (reachable by an exact map)."""
        return None

    @abstractmethod
    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """(n, d) float64 samples."""

    def log_prob(self, y: np.ndarray) -> np.ndarray:
        """(n, d) -> (n,) log-density in nats."""
        raise NotImplementedError(f"{self.spec} has no known density")

    @abstractmethod
    def entropy(self) -> Entropy:
        """Differential entropy h(target) in nats."""


class ProductTarget(Target):
    """Coordinates i.i.d. from one 1-D law."""

    def __init__(self, law: Law1D, dim: int) -> None:
        self._law = law
        self.dim = dim
        self.spec = law.name

    @property
    def law(self) -> Law1D:
        return self._law

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        return self._law.sample((n, self.dim), np.random.default_rng(seed))

    def log_prob(self, y: np.ndarray) -> np.ndarray:
        return self._law.logpdf(y).sum(1)

    def entropy(self) -> Entropy:
        h = self._law.entropy()
        if math.isfinite(h):
            return Entropy(self.dim * h, 0.0, "closed form (scipy.stats)")
        y = self.sample(100_000, seed=12345)  # rare: scipy's numerical entropy failed
        lp = self.log_prob(y)
        return Entropy(float(-lp.mean()), float(lp.std() / math.sqrt(len(lp))), "Monte Carlo")


class MixtureTarget(Target):
    """Equal-weight mixture of ``k`` Gaussians N(mu_j, std^2 I) with deterministic means."""

    def __init__(
        self, k: int, dim: int, radius: float = 3.0, std: float = 0.5, seed: int = 0
    ) -> None:
        if k < 1:
            raise ConfigError(f"mixture needs at least 1 component, got {k}")
        if k > 10_000:
            raise ConfigError(f"mixture takes at most 10,000 components, got {k:,}")
        if not (radius >= 0 and std > 0):
            raise ConfigError(f"mixture needs radius >= 0 and std > 0, got {radius}, {std}")
        self.k, self.dim, self.radius, self.std, self.seed = k, dim, radius, std, seed
        self.means = self._means()
        self.spec = f"mixture:{k}" + _fmt_params(
            {n: v for n, v in (("radius", radius), ("std", std), ("seed", seed))
             if v != _MIXTURE_PARAMS[n]}
        )  # fmt: skip

    def _means(self) -> np.ndarray:
        k, d, r = self.k, self.dim, self.radius
        if d == 1:
            return np.linspace(-r, r, k)[:, None] if k > 1 else np.zeros((1, 1))
        if d == 2:
            ang = 2 * np.pi * np.arange(k) / k
            return r * np.stack([np.cos(ang), np.sin(ang)], 1)
        u = np.random.default_rng(self.seed).standard_normal((k, d))
        return r * u / np.linalg.norm(u, axis=1, keepdims=True)

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        rng = np.random.default_rng(seed)
        comp = rng.integers(self.k, size=n)
        return self.means[comp] + self.std * rng.standard_normal((n, self.dim))

    def log_prob(self, y: np.ndarray) -> np.ndarray:
        from scipy.special import logsumexp

        # (n, k) squared distances without the (n, k, d) difference tensor
        sq = (y**2).sum(1)[:, None] - 2 * y @ self.means.T + (self.means**2).sum(1)[None]
        sq = np.maximum(sq, 0.0)
        norm = 0.5 * self.dim * math.log(2 * math.pi * self.std**2) + math.log(self.k)
        return logsumexp(-sq / (2 * self.std**2), axis=1) - norm

    def entropy(self, n: int = 200_000) -> Entropy:
        """Monte Carlo: -mean log p over ``n`` fixed-seed samples (no closed form exists)."""
        lp = np.concatenate(
            [
                self.log_prob(self.sample(min(n, 50_000), seed=10_000 + i))
                for i in range(-(-n // 50_000))
            ]
        )[:n]
        return Entropy(
            float(-lp.mean()), float(lp.std() / math.sqrt(len(lp))), f"Monte Carlo, n = {n}"
        )


class SampleTarget(Target):
    """A target known only through samples (``--to-samples``); no density, no exact sampler."""

    def __init__(self, samples: np.ndarray, source: str) -> None:
        self.samples = samples
        self.dim = samples.shape[1]
        self.spec = f"samples:{source}"

    @property
    def has_density(self) -> bool:
        return False

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """Draw ``n`` of the stored samples without replacement (a bootstrap if n exceeds them)."""
        rng = np.random.default_rng(seed)
        replace = n > len(self.samples)
        return self.samples[rng.choice(len(self.samples), n, replace=replace)]

    def entropy(self) -> Entropy:
        from .kl import knn_entropy

        return Entropy(knn_entropy(self.samples), float("nan"), "Kozachenko-Leonenko kNN estimate")


def make_target(spec: str, dim: int) -> Target:
    """Build the target named by ``spec`` in ``dim`` dimensions (see the module docstring)."""
    if dim < 1:
        raise ConfigError(f"target dimension must be >= 1, got {dim}")
    name, count, params = parse_spec(spec)
    if name == "mixture":
        unknown = sorted(set(params) - set(_MIXTURE_PARAMS))
        if unknown:
            raise ConfigError(
                f"target {spec!r}: unknown parameter(s) {', '.join(unknown)} "
                f"(mixture takes {', '.join(_MIXTURE_PARAMS)})"
            )
        p = {**_MIXTURE_PARAMS, **params}
        if p["seed"] != int(p["seed"]) or p["seed"] < 0:
            raise ConfigError(f"target {spec!r}: seed must be a non-negative integer")
        return MixtureTarget(
            8 if count is None else count, dim, p["radius"], p["std"], int(p["seed"])
        )
    if count is not None:
        raise ConfigError(
            f"target {spec!r}: ':{count}' (a component count) applies only to mixture"
        )
    if name.startswith("scipy:"):
        scipy_name = name[6:]
    elif name in LAWS:
        scipy_name = LAWS[name]
    else:
        raise ConfigError(
            f"unknown target law {name!r}; known: {', '.join(LAWS)}, mixture:K, scipy:NAME(...)"
        )
    canonical = name + _fmt_params(params)
    return ProductTarget(_scipy_law(scipy_name, params, canonical), dim)


def load_target_samples(path: str | Path, dim: int) -> SampleTarget:
    """Read target samples from an ``.npz`` (array ``x`` or ``samples``, shape (n, d))."""
    from ..data.npz import read_npz_members

    path = Path(path)
    arrays = read_npz_members(path, ("x", "samples"), what="target samples")  # bounded
    if not arrays:
        raise DataError(f"{path} has no array 'x' or 'samples'")
    arr = arrays.get("x", arrays.get("samples"))
    if not np.issubdtype(arr.dtype, np.number) or arr.ndim != 2:
        raise DataError(
            f"{path}: samples must be a numeric (n, d) array, got {arr.dtype} {arr.shape}"
        )
    if arr.shape[1] != dim:
        raise DataError(
            f"{path}: target samples have dimension {arr.shape[1]}, but the codes have dimension {dim}"
        )
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: target samples contain NaN or Inf")
    if len(arr) < 20:
        raise DataError(f"{path}: need at least 20 target samples, got {len(arr)}")
    return SampleTarget(arr, str(path))
