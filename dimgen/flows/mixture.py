"""A Gaussian-mixture code model: the codes' law as K full-covariance Gaussians.

Why beside the flows: codes of a trained encoder at d >= 4 sit in separated class blobs. A flow
is a homeomorphism of N(0, I), so it cannot cut the prior's one connected mass into blobs; it
leaves thin bridges of probability between them, and codes drawn on a bridge give a generator
ambiguous inputs. A mixture puts no mass between its components. On MNIST d = 8 (3 seeds,
docs/generation-controls.md) a 50-component mixture scores a lower held-out likelihood than the
larger flow (2.4 against 2.8 nats per code over N(0, I)) yet its GAN samples are more often
recognisable (83.3% against 81.4% confident, G's noise truncated at 0.8) with a lower FID (42.9
against 50.1).

Fitted by expectation-maximisation with scikit-learn's ``GaussianMixture``; densities and draws
in torch (``torch.distributions``) so that a loaded model needs no pickle and no scikit-learn.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..config import check_temperature
from ..errors import ConfigError, DataError, RunFolderError
from ..io import load_model_weights
from .transforms import as_codes

__all__ = ["WEIGHTS", "GaussianMixture", "MixtureCodeModel", "fit_mixture", "load_mixture"]

WEIGHTS = "mixture.safetensors"
#: Largest mixture a weights file may declare (checked before anything is built).
MAX_COMPONENTS, MAX_DIM = 100_000, 65_536
#: Largest |mean| or covariance-factor entry a loaded mixture may hold: codes are about N(0, 1)
#: or in [0, 1], so beyond it the file is not a code model (a 1e38 would overflow G).
MAX_SCALE = 1e6
#: Training codes per component and free coordinate a fit needs (2 K (d + 1)): fewer, and EM
#: memorises single codes (a heuristic, not a theorem; the held-out NLL shows the cost).
CODES_PER_PARAMETER = 2


class GaussianMixture(nn.Module):
    """p(x) = sum_k w_k N(x; mu_k, L_k L_k^T) on R^d (float64 buffers, no trainable parameters).

    Buffers: ``weights`` (K,) summing to 1, ``means`` (K, d), ``scale_tril`` (K, d, d): the
    lower-triangular Cholesky factors L_k of the covariances, positive diagonal.
    """

    def __init__(self, components: int, dim: int) -> None:
        super().__init__()
        self.register_buffer(
            "weights", torch.full((components,), 1.0 / components, dtype=torch.float64)
        )
        self.register_buffer("means", torch.zeros(components, dim, dtype=torch.float64))
        self.register_buffer(
            "scale_tril", torch.eye(dim, dtype=torch.float64).repeat(components, 1, 1)
        )

    @property
    def components(self) -> int:
        """K, the number of Gaussians."""
        return int(self.weights.shape[0])

    @property
    def dim(self) -> int:
        """d, the dimension of the codes."""
        return int(self.means.shape[1])

    def _law(self) -> torch.distributions.MixtureSameFamily:
        D = torch.distributions
        return D.MixtureSameFamily(
            D.Categorical(probs=self.weights, validate_args=False),
            D.MultivariateNormal(self.means, scale_tril=self.scale_tril, validate_args=False),
            validate_args=False,
        )

    def forward(self, x: Tensor) -> Tensor:
        """Log-density log p(x) (n,) in nats of points x (n, d) (cast to float64)."""
        return self._law().log_prob(x.to(torch.float64))

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, temperature: float = 1.0) -> Tensor:
        """(n, d) float64 draws: a component k ~ w, then mu_k + T L_k z with z ~ N(0, I).

        ``temperature`` T scales each component's standard-normal draws (the component choice is
        unchanged), the mixture's analogue of Glow's temperature (Kingma & Dhariwal 2018, 4).
        z and the components' uniforms come from two numpy generators spawned from ``seed``
        (None: fresh entropy), both sequential, so the first m of n draws are the m draws.
        """
        g_z, g_k = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        z = torch.from_numpy(g_z.standard_normal((n, self.dim)))
        z = z if temperature == 1.0 else temperature * z
        u = torch.from_numpy(g_k.random(n))
        cdf = torch.cumsum(self.weights, 0)
        k = torch.searchsorted(cdf, u * cdf[-1], right=True).clamp_(max=self.components - 1)
        x = torch.empty_like(z)
        for c in torch.unique(k).tolist():  # per component: O(n d) memory, not O(n d^2)
            rows = k == c
            x[rows] = self.means[c] + z[rows] @ self.scale_tril[c].T
        return x

    def check(self, where: str) -> None:
        """Refuse parameters that are not a Gaussian mixture.

        Raises:
            RunFolderError: naming ``where``: weights negative or not summing to 1, a factor
                not lower-triangular or without a positive diagonal, a mean or factor entry
                beyond :data:`MAX_SCALE`.
        """
        w, L = self.weights, self.scale_tril
        why = None
        big = max(float(self.means.abs().max()), float(L.abs().max()))
        if big > MAX_SCALE:
            why = f"it holds a mean or spread of {big:.3g}, beyond {MAX_SCALE:.0e} (codes are ~1)"
        elif bool((w < 0).any()) or abs(float(w.sum()) - 1.0) > 1e-6:
            why = f"its weights are not probabilities (min {float(w.min()):.3g}, sum {float(w.sum()):.6g})"
        elif not torch.equal(L, L.tril()):
            why = "a covariance factor is not lower-triangular"
        elif not bool((L.diagonal(dim1=1, dim2=2) > 0).all()):
            why = "a covariance factor has a diagonal entry <= 0"
        if why is not None:
            raise RunFolderError(f"{where} is not a valid Gaussian mixture: {why}")


def fit_mixture(
    x: np.ndarray, components: int, seed: int = 0, max_iter: int = 300
) -> tuple[GaussianMixture, dict[str, Any]]:
    """Fit K full-covariance Gaussians to x (n, d) by EM (scikit-learn, k-means initialisation,
    covariance regularisation 1e-6) and the fit's record (``train_seconds``, ``n_iter``,
    ``converged``, ``train_nll_nats``: mean negative log-likelihood of x, nats).

    Raises:
        DataError: fewer distinct points than ``components``, fewer points than
            2 K (d + 1) (:data:`CODES_PER_PARAMETER`), or an EM fit that fails.
    """
    from sklearn.mixture import GaussianMixture as SkMixture

    x = np.asarray(x, dtype=np.float64)
    distinct = len(np.unique(x, axis=0))
    if distinct < components:
        raise DataError(
            f"a {components}-component mixture needs at least {components} distinct codes, got "
            f"{distinct} (lower --components)"
        )
    need = CODES_PER_PARAMETER * components * (x.shape[1] + 1)
    if len(x) < need:
        raise DataError(
            f"a {components}-component mixture of {x.shape[1]}-d codes needs at least {need} "
            f"codes to fit (2 K (d + 1)), got {len(x)} (lower --components)"
        )
    t0 = time.perf_counter()
    try:
        sk = SkMixture(components, covariance_type="full", max_iter=max_iter, random_state=seed)
        sk.fit(x)
        factors = torch.linalg.cholesky(torch.from_numpy(sk.covariances_))
    except (ValueError, RuntimeError) as exc:  # ill-defined covariances, a failed Cholesky
        raise DataError(
            f"the {components}-component mixture fit failed: {str(exc)[:160]}"
        ) from None
    model = GaussianMixture(components, x.shape[1])
    model.weights.copy_(torch.from_numpy(sk.weights_ / sk.weights_.sum()))
    model.means.copy_(torch.from_numpy(sk.means_))
    model.scale_tril.copy_(factors)
    nll = -float(model(torch.from_numpy(x)).mean())
    info = {"train_seconds": time.perf_counter() - t0, "n_iter": int(sk.n_iter_),
            "converged": bool(sk.converged_), "train_nll_nats": nll}  # fmt: skip
    return model.eval(), info


def load_mixture(path: str | Path) -> GaussianMixture:
    """A :class:`GaussianMixture` from its safetensors file (shapes, finite values and the
    mixture's constraints checked; nothing executed from the file).

    Raises:
        RunFolderError: not a dimgen mixture, sizes out of range, or invalid parameters.
    """
    path = Path(path)

    def build(meta: dict[str, Any]) -> GaussianMixture:
        k, d = meta.get("components"), meta.get("dim")
        if not (
            isinstance(k, int)
            and isinstance(d, int)
            and not isinstance(k, bool)
            and not isinstance(d, bool)
            and 1 <= k <= MAX_COMPONENTS
            and 1 <= d <= MAX_DIM
        ):
            raise RunFolderError(
                f"{path}: a mixture's components / dim must be integers in range, got {k!r} / {d!r}"
            )
        return GaussianMixture(k, d)

    tensors, meta = load_model_weights(path, "mixture", build, "a dimgen Gaussian mixture")
    model = GaussianMixture(int(meta["components"]), int(meta["dim"]))
    model.load_state_dict(tensors)
    model.check(str(path))
    return model.eval()


class MixtureCodeModel:
    """A code model that is a :class:`GaussianMixture` of an encoder run's training codes, with
    the sampling interface of :class:`dimgen.flows.Prior`'s code models (``dimgen sample
    --unconditional --prior`` draws its codes through :meth:`sample`).

    Args:
        mixture: the fitted mixture on the encoder's code space.
        source_prior: the encoder's prior, ``gaussian`` or ``uniform``.
        spec: the run's spec record (method ``gmm``, source run, encoder digest, ...).
        path: the run folder it was loaded from.
    """

    code_model = True
    target = None

    def __init__(
        self, mixture: GaussianMixture, source_prior: str, spec: dict[str, Any] | None = None,
        path: Path | None = None,
    ) -> None:  # fmt: skip
        self.mixture = mixture.eval()
        self.source_prior = source_prior
        self.spec = dict(spec or {})
        self.path = path

    @property
    def dim(self) -> int:
        """Code dimension d."""
        return self.mixture.dim

    @property
    def target_spec(self) -> str:
        """What the mixture models (the run's training codes)."""
        return str(self.spec.get("target", "codes"))

    def __repr__(self) -> str:
        return f"MixtureCodeModel({self.mixture.components} Gaussians of {self.target_spec}, d={self.dim})"

    def sample(
        self,
        n: int,
        seed: int | None = None,
        from_model: bool = True,
        temperature: float | None = 1.0,
    ) -> Tensor:
        """(n, d) float64 codes drawn from the mixture (``from_model`` is accepted for
        :class:`~dimgen.flows.Prior`'s signature: a mixture's draws are always the model's).

        The same ``seed`` gives the same codes, and the first m of n draws are the m draws
        (:meth:`GaussianMixture.sample`).

        Raises:
            DataError: n < 1. ConfigError: ``temperature`` not a number in (0, 10] (None: 1),
                or not 1 for uniform codes (whose draws ``dimgen sample`` clamps to [0, 1]^d,
                as for a flow code model, which refuses it too).
        """
        if n < 1:
            raise DataError(f"n must be >= 1, got {n}")
        t = check_temperature(temperature)
        if t != 1.0 and self.source_prior != "gaussian":
            raise ConfigError(
                f"a temperature applies to Gaussian codes; this code model is of "
                f"{self.source_prior} codes"
            )
        return self.mixture.sample(n, seed, t)

    @torch.no_grad()
    def log_prob(self, z: Any) -> Tensor:
        """(n,) log-density in nats of codes z (n, d) under the mixture."""
        return self.mixture(as_codes(z, self.dim, "codes"))
