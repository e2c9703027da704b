"""``Prior``: a code prior defined as the push-forward of an encoder's prior by a map T.

This is the object the GAN's sampler uses for a flow-defined prior: draw ``z`` in the new prior,
map it back to the encoder's code space with ``to_source``, and feed the generator.

Example:
    >>> from dimgen.flows import load_prior
    >>> p = load_prior("runs/mnist-mix")                   # doctest: +SKIP
    >>> z = p.sample(64, seed=0)                           # (64, d) in the new prior
    >>> codes = p.to_source(z)                             # (64, d) float32, encoder's prior
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..config import check_temperature
from ..errors import ConfigError, DataError, RunFolderError
from ..io import inside, load_model_weights, read_run
from .targets import Target, make_target, source_law
from .transforms import Bijection, Composite, Identity, as_codes, prior_map

if TYPE_CHECKING:
    from .mixture import MixtureCodeModel

__all__ = ["Prior", "build_map", "load_prior"]


class Prior:
    """The law T#prior on R^d, with T: encoder codes -> new codes invertible.

    Args:
        transform: T (``forward``: encoder-prior space -> new space).
        source_prior: the encoder's prior, ``gaussian`` or ``uniform``.
        target: the target law T was built for (exact sampling, density), or None when the
            target is known only through samples: :meth:`sample` then draws from T#prior.
        spec: the run's spec record (method, target, source run, ...).
        path: the run folder it was loaded from.
    """

    def __init__(
        self,
        transform: Bijection,
        source_prior: str,
        target: Target | None = None,
        spec: dict[str, Any] | None = None,
        path: Path | None = None,
    ) -> None:
        self.transform = transform.eval()
        self.source_prior = source_prior
        self.target = target
        self.spec = dict(spec or {})
        self.path = path
        self._source = source_law(source_prior)

    @property
    def dim(self) -> int:
        """Code dimension d."""
        return int(self.transform.dim)

    @property
    def code_model(self) -> bool:
        """True for a flow fitted to its encoder run's own codes (``dimgen flow --to-codes``):
        T#prior models the codes, so T(z) are codes for the generator, not new-prior codes."""
        return bool(self.spec.get("code_model", False))

    @property
    def target_spec(self) -> str:
        """The target's spec string (``mixture:8``, ``laplace``, ``samples:PATH``, or the prior)."""
        return str(self.spec.get("target", self.source_prior))

    def __repr__(self) -> str:
        return f"Prior({self.source_prior} -> {self.target_spec}, d={self.dim}, method={self.spec.get('method', 'identity')})"

    @torch.no_grad()
    def forward(self, codes: Any) -> Tensor:
        """Encoder codes (n, d) -> codes under the new prior (n, d), float64."""
        return self.transform(as_codes(codes, self.dim))[0].to(torch.float64)

    @torch.no_grad()
    def to_source(self, z: Any, dtype: torch.dtype = torch.float32) -> Tensor:
        """New-prior codes (n, d) -> encoder codes (n, d) (T^-1), ready for the generator.

        Raises:
            DataError: wrong shape, NaN/Inf, or values outside the target's support.
        """
        x = self.transform.inverse(as_codes(z, self.dim, "new-prior codes"))[0]
        if not torch.isfinite(x).all():
            raise DataError("new-prior codes map outside the encoder prior's range (non-finite)")
        return x.to(dtype)

    def sample(
        self,
        n: int,
        seed: int | None = None,
        from_model: bool = False,
        temperature: float | None = 1.0,
    ) -> Tensor:
        """(n, d) float64 codes drawn from the new prior.

        Draws from the target law itself when it is known as a distribution (so ``to_source``
        shows how well the map fits), otherwise (``from_model``, sample-defined targets, an
        encoder's own prior) from T#prior: prior draws pushed through T. ``temperature`` t
        pushes t * N(0, I) instead (Glow's temperature, Kingma & Dhariwal 2018, section 4): for
        T#prior draws from a Gaussian source only.

        Raises:
            DataError: n < 1. ConfigError: ``temperature`` not a number in (0, 10] (None: 1),
                or not 1 where the draws are the target law's or the source prior is uniform.
        """
        if n < 1:
            raise DataError(f"n must be >= 1, got {n}")
        t = check_temperature(temperature)
        direct = self.target is not None and self.target.has_density and not from_model
        if t != 1.0 and (direct or self.source_prior != "gaussian"):
            why = (f"its draws come from its target law ({self.target_spec}) itself" if direct
                   else f"it maps {self.source_prior} codes")  # fmt: skip
            raise ConfigError(
                "a temperature scales Gaussian draws pushed through a flow; no Gaussian draw to "
                f"scale here: {why}"
            )
        if direct:
            assert self.target is not None
            return torch.from_numpy(self.target.sample(n, seed))
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        if self.source_prior == "gaussian":  # same draws as Tokenizer.sample_prior
            x = torch.randn(n, self.dim, generator=g)
            x = x if t == 1.0 else t * x
        else:
            x = torch.rand(n, self.dim, generator=g)
        return self.forward(x)

    @torch.no_grad()
    def log_prob(self, z: Any) -> Tensor:
        """(n,) log-density of T#prior at new-prior codes z (n, d), in nats."""
        x, logdet = self.transform.inverse(as_codes(z, self.dim, "new-prior codes"))
        lp = self._source.logpdf(x.to(torch.float64).numpy()).sum(1)
        return torch.from_numpy(lp) + logdet.to(torch.float64)


def build_map(spec: dict[str, Any], flow: Bijection | None = None) -> Bijection:
    """T from a spec record: the exact elementwise map, or ``flow`` (after a uniform->Gaussian PIT)."""
    dim, src = int(spec["dim"]), str(spec["source_prior"])
    if spec["method"] == "exact":
        target = make_target(str(spec["target"]), dim)
        assert target.law is not None
        return prior_map(src, target.law, dim)
    if flow is None:
        raise RunFolderError("a trained flow is needed for method " + str(spec["method"]))
    if src == "uniform":  # the flow's base is N(0, I): reach it exactly first
        return Composite([prior_map("uniform", source_law("gaussian"), dim), flow])
    return flow


def load_prior(path: str | Path) -> Prior | MixtureCodeModel:
    """Load the prior defined by a flow run folder (or an encoder run: its own prior); a ``gmm``
    code model (``dimgen flow --to-codes --method gmm``) loads as a
    :class:`~dimgen.flows.mixture.MixtureCodeModel`, which samples like a code model's Prior.

    Raises:
        RunFolderError: missing, incomplete or wrong kind of folder, or corrupt weights.
    """
    run_dir, rec = read_run(path, ("flow", "encoder"))
    spec = rec.get("spec")
    if not isinstance(spec, dict):
        raise RunFolderError(f"{run_dir}/run.json has no spec record")
    if rec["kind"] == "encoder":
        try:
            dim, prior = int(spec["dim"]), str(spec["prior"])
        except (KeyError, TypeError, ValueError):
            raise RunFolderError(f"{run_dir}/run.json: encoder spec lacks dim/prior") from None
        return Prior(Identity(dim), prior, None, {"method": "identity", "target": prior}, run_dir)
    try:
        dim, method, target_spec = int(spec["dim"]), str(spec["method"]), str(spec["target"])
        source_prior = str(spec["source_prior"])
    except (KeyError, TypeError, ValueError):
        raise RunFolderError(f"{run_dir}/run.json: flow spec is incomplete") from None
    if method == "gmm":
        from .mixture import WEIGHTS, MixtureCodeModel, load_mixture

        mixture = load_mixture(inside(run_dir, spec.get("weights") or WEIGHTS, "weights"))
        if mixture.dim != dim:
            raise RunFolderError(
                f"{run_dir}: mixture dimension {mixture.dim} does not match spec {dim}"
            )
        return MixtureCodeModel(mixture, source_prior, spec, run_dir)
    flow = None
    if method != "exact":
        flow = _load_flow(inside(run_dir, spec.get("weights") or "flow.safetensors", "weights"))
        if flow.dim != dim:
            raise RunFolderError(f"{run_dir}: flow dimension {flow.dim} does not match spec {dim}")
    target = None if target_spec.startswith("samples:") else make_target(target_spec, dim)
    return Prior(build_map(spec, flow), source_prior, target, spec, run_dir)


def _load_flow(path: Path) -> Bijection:
    from .backend import build_backend

    def build(meta: dict[str, Any]) -> Bijection:
        if not isinstance(meta.get("arch"), dict):
            raise RunFolderError(f"{path} is not a dimgen flow")
        return build_backend(meta["arch"]).double()

    # names, shapes, dtypes (nothing allocated) and finite values, as for every weights file
    tensors, meta = load_model_weights(path, "flow", build, "a dimgen flow")
    arch = meta["arch"]
    try:
        flow = build_backend(arch).double()
        flow.load_state_dict(tensors)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise RunFolderError(
            f"{path}: weights do not match their architecture ({str(exc)[:120]})"
        ) from None
    return flow.eval()
