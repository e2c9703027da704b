"""Trained normalizing flows behind a small interface of ours (:class:`FlowBackend`).

A flow here maps the standard Gaussian (the *base*, i.e. the encoder's Gaussian prior) to a
target law: ``forward(x)`` base -> target (sampling direction), ``inverse(y)`` target -> base
(density direction), ``log_prob(y) = log N(inverse(y)) + log|det d inverse/dy|``. It is fitted by
maximum likelihood on target samples. :class:`NflowsBackend` implements it with nflows 0.14
(masked affine autoregressive = MAF, and rational-quadratic spline autoregressive = RQS layers,
both verified on torch 2); :class:`ZukoBackend` implements the same flows with zuko (the optional
extra ``dimgen[zuko]``). Another library can be added by subclassing :class:`FlowBackend` and
registering in :data:`BACKENDS`; ``FlowConfig.backend`` (``--backend``) picks one.

References:
    Papamakarios, Pavlakou, Murray. "Masked Autoregressive Flow for Density Estimation." 2017.
    Durkan, Bekasov, Murray, Papamakarios. "Neural Spline Flows." NeurIPS 2019.
"""

from __future__ import annotations

import math
import time
from abc import abstractmethod
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, TrainingError
from ..training import smoke
from .config import FlowConfig
from .transforms import Bijection

__all__ = ["BACKENDS", "FlowBackend", "NflowsBackend", "ZukoBackend", "build_backend", "fit_flow"]

_LOG_2PI = math.log(2 * math.pi)


class FlowBackend(Bijection):
    """A trainable bijection from N(0, I_d) to a target, with exact log-densities.

    Subclasses implement ``forward``/``inverse`` (see :class:`~.transforms.Bijection`) and
    ``arch`` (a JSON-able dict that :func:`build_backend` turns back into an untrained copy).
    """

    backend: str = "abstract"

    @property
    @abstractmethod
    def arch(self) -> dict[str, Any]:
        """Everything needed to rebuild this flow (before loading its ``state_dict``)."""

    def log_prob(self, y: Tensor) -> Tensor:
        """(n, d) target-space points -> (n,) log-density of the model (nats)."""
        z, logdet = self.inverse(y)
        base = -0.5 * (z**2).sum(1) - 0.5 * self.dim * _LOG_2PI
        return base + logdet

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(n, d) samples of the model: base draws pushed through ``forward``."""
        dtype = next(self.parameters()).dtype
        z = torch.randn(n, self.dim, generator=generator, dtype=dtype)
        return self(z)[0]


class NflowsBackend(FlowBackend):
    """MAF or RQS autoregressive flow from nflows, after a fixed standardisation of the target.

    Target -> base: ``(y - loc) / scale``, then ``layers`` x [autoregressive layer, reversal].

    Args:
        dim: dimension d.
        kind: ``maf`` (affine) or ``rqs`` (rational-quadratic splines, linear tails).
        layers, hidden, blocks: depth, MADE width, residual blocks per MADE.
        bins, tail_bound: spline bins and interval [-B, B] (standardised units; ``rqs`` only).
        loc, scale: (d,) standardisation of the target (mean and std of the training samples).

    In d = 1 an autoregressive layer has nothing to condition on, so each layer is a single
    learned monotone map: ``rqs`` is a flexible 1-D spline, ``maf`` only an affine map (refused).

    Example:
        >>> f = NflowsBackend(2, "maf", layers=2, hidden=8)
        >>> x = torch.randn(4, 2)
        >>> y, logdet = f(x)                      # base -> target, (4, 2) and (4,)
        >>> torch.allclose(f.inverse(y)[0], x, atol=1e-5)
        True
    """

    backend = "nflows"

    def __init__(
        self,
        dim: int,
        kind: str = "rqs",
        layers: int = 3,
        hidden: int = 64,
        blocks: int = 2,
        bins: int = 8,
        tail_bound: float = 4.0,
        loc: Any = None,
        scale: Any = None,
    ) -> None:
        super().__init__()
        from nflows.transforms import (
            CompositeTransform,
            MaskedAffineAutoregressiveTransform,
            MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
            PointwiseAffineTransform,
            ReversePermutation,
        )

        if kind not in ("maf", "rqs"):
            raise ConfigError(f"flow kind must be 'maf' or 'rqs', got {kind!r}")
        if kind == "maf" and dim == 1:
            raise ConfigError(
                "a MAF in d = 1 is only an affine map; use --method rqs (a 1-D spline flow) "
                "or an exact 1-D target law"
            )
        self.dim, self.kind, self.layers, self.hidden = dim, kind, layers, hidden
        self.blocks, self.bins, self.tail_bound = blocks, bins, float(tail_bound)
        loc_t = torch.zeros(dim) if loc is None else torch.as_tensor(loc, dtype=torch.float32)
        scale_t = torch.ones(dim) if scale is None else torch.as_tensor(scale, dtype=torch.float32)
        if loc_t.shape != (dim,) or scale_t.shape != (dim,) or not (scale_t > 0).all():
            raise ConfigError(
                f"standardisation must be (d,) loc and positive (d,) scale, d = {dim}"
            )
        steps: list[Any] = [PointwiseAffineTransform(shift=-loc_t / scale_t, scale=1.0 / scale_t)]
        for _ in range(layers):
            if kind == "maf":
                layer = MaskedAffineAutoregressiveTransform(
                    features=dim, hidden_features=hidden, num_blocks=blocks
                )
            else:
                layer = MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                    features=dim, hidden_features=hidden, num_blocks=blocks, num_bins=bins,
                    tails="linear", tail_bound=self.tail_bound,
                )  # fmt: skip
            steps += [layer, ReversePermutation(dim)]
        # nflows' direction is data -> noise: our target -> base.
        self.transform = CompositeTransform(steps)

    @property
    def arch(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "dim": self.dim, "kind": self.kind, "layers": self.layers,
            "hidden": self.hidden, "blocks": self.blocks, "bins": self.bins,
            "tail_bound": self.tail_bound,
        }  # fmt: skip

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Base (n, d) -> target (n, d), log|det dy/dx| (n,). Sequential in d for MAF/RQS."""
        x = x.to(next(self.parameters()).dtype)
        return self.transform.inverse(x)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Target (n, d) -> base (n, d), log|det dx/dy| (n,). One parallel pass."""
        y = y.to(next(self.parameters()).dtype)
        return self.transform(y)


class ZukoBackend(FlowBackend):
    """The same MAF / RQS autoregressive flows as :class:`NflowsBackend`, built with zuko.

    Target -> base: ``(y - loc) / scale`` rescaled so that zuko's spline interval [-5, 5] is
    [-B, B] in standardised units (``B = tail_bound``, as for nflows; identity tails outside),
    then zuko's ``MAF`` (affine) or ``NSF`` (monotonic rational-quadratic splines) with
    ``layers`` transforms, each reversing the coordinate order of the previous one. Each MADE
    hyper-network has ``blocks + 1`` hidden layers of width ``hidden``.

    Args: as :class:`NflowsBackend`.

    References:
        Rozet et al. "Zuko: Normalizing flows in PyTorch." 2022, https://github.com/probabilists/zuko

    Example:
        >>> f = ZukoBackend(2, "rqs", layers=2, hidden=8)
        >>> x = torch.randn(4, 2)
        >>> y, logdet = f(x)
        >>> torch.allclose(f.inverse(y)[0], x, atol=1e-5)
        True
    """

    backend = "zuko"
    _ZUKO_BOUND = 5.0  # zuko's MonotonicRQSTransform interval [-5, 5]

    def __init__(
        self,
        dim: int,
        kind: str = "rqs",
        layers: int = 3,
        hidden: int = 64,
        blocks: int = 2,
        bins: int = 8,
        tail_bound: float = 4.0,
        loc: Any = None,
        scale: Any = None,
    ) -> None:
        super().__init__()
        try:
            import zuko
        except ImportError:
            raise ConfigError(
                "the zuko flow backend needs zuko: pip install 'dimgen[zuko]' (or use --backend "
                "nflows)"
            ) from None
        if kind not in ("maf", "rqs"):
            raise ConfigError(f"flow kind must be 'maf' or 'rqs', got {kind!r}")
        if kind == "maf" and dim == 1:
            raise ConfigError(
                "a MAF in d = 1 is only an affine map; use --method rqs (a 1-D spline flow) "
                "or an exact 1-D target law"
            )
        self.dim, self.kind, self.layers, self.hidden = dim, kind, layers, hidden
        self.blocks, self.bins, self.tail_bound = blocks, bins, float(tail_bound)
        loc_t = torch.zeros(dim) if loc is None else torch.as_tensor(loc, dtype=torch.float32)
        scale_t = torch.ones(dim) if scale is None else torch.as_tensor(scale, dtype=torch.float32)
        if loc_t.shape != (dim,) or scale_t.shape != (dim,) or not (scale_t > 0).all():
            raise ConfigError(
                f"standardisation must be (d,) loc and positive (d,) scale, d = {dim}"
            )
        # Buffers: saved in the state dict, follow .double() / .to().
        self.register_buffer("loc", loc_t.clone())
        self.register_buffer("scale", scale_t * self.tail_bound / self._ZUKO_BOUND)
        hidden_features = (hidden,) * (blocks + 1)
        if kind == "maf":
            self.flow = zuko.flows.MAF(dim, transforms=layers, hidden_features=hidden_features)
        else:
            self.flow = zuko.flows.NSF(
                dim, bins=bins, transforms=layers, hidden_features=hidden_features
            )

    @property
    def arch(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "dim": self.dim, "kind": self.kind, "layers": self.layers,
            "hidden": self.hidden, "blocks": self.blocks, "bins": self.bins,
            "tail_bound": self.tail_bound,
        }  # fmt: skip

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Base (n, d) -> target (n, d), log|det dy/dx| (n,). Sequential in d (autoregressive)."""
        x = x.to(self.loc.dtype)
        u, ladj = self.flow().transform.inv.call_and_ladj(x)
        return u * self.scale + self.loc, ladj + self.scale.log().sum()

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Target (n, d) -> base (n, d), log|det dx/dy| (n,). One parallel pass."""
        y = y.to(self.loc.dtype)
        z, ladj = self.flow().transform.call_and_ladj((y - self.loc) / self.scale)
        return z, ladj - self.scale.log().sum()


BACKENDS: dict[str, type[FlowBackend]] = {"nflows": NflowsBackend, "zuko": ZukoBackend}


def build_backend(arch: dict[str, Any]) -> FlowBackend:
    """An untrained flow from its ``arch`` record (load weights with ``load_state_dict``)."""
    arch = dict(arch)
    cls = BACKENDS.get(str(arch.pop("backend", "")))
    if cls is None:
        raise ConfigError(f"unknown flow backend in {arch!r} (known: {', '.join(BACKENDS)})")
    return cls(**arch)


def fit_flow(
    target_train: np.ndarray,
    target_test: np.ndarray,
    cfg: FlowConfig,
    kind: str,
    *,
    progress: bool = False,
) -> tuple[FlowBackend, dict[str, Any]]:
    """Fit a flow to target samples by maximum likelihood; report held-out NLL.

    Returns the flow (float64, eval mode) and a dict with ``heldout_nll_nats`` (mean -log q over
    ``target_test``), its standard error, the training NLL history and the wall time.
    """
    dim = target_train.shape[1]
    loc = target_train.mean(0)
    scale = np.maximum(target_train.std(0), 1e-6 * max(1.0, float(np.abs(loc).max())))
    torch.manual_seed(cfg.seed)
    cls = BACKENDS.get(cfg.backend)
    if cls is None:
        raise ConfigError(f"unknown flow backend {cfg.backend!r} (known: {', '.join(BACKENDS)})")
    flow = cls(dim, kind, cfg.layers, cfg.hidden, cfg.blocks, cfg.bins, cfg.tail_bound, loc, scale)
    y = torch.as_tensor(target_train, dtype=torch.float32)
    opt = torch.optim.Adam(flow.parameters(), lr=cfg.lr)
    steps = smoke.cap_units(cfg.steps, "step")  # DIMGEN_SMOKE: a few steps only
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    batch = min(cfg.batch_size, len(y))
    history: list[float] = []
    history_steps: list[int] = []  # the step each window mean ends at (log.csv's first column)
    running = 0.0
    t0 = time.perf_counter()
    flow.train()
    from tqdm.auto import tqdm

    bar = tqdm(range(steps), desc="flow", unit="step", leave=False, disable=not progress)
    for step in bar:
        idx = torch.randint(len(y), (batch,), generator=gen)
        loss = -flow.log_prob(y[idx]).mean()
        if not torch.isfinite(loss):
            raise TrainingError(
                f"flow training diverged (non-finite NLL) at step {step + 1}; try a lower --lr"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += float(loss.detach())
        if (step + 1) % 50 == 0 or step + 1 == steps:
            history.append(running / ((step % 50) + 1))
            history_steps.append(step + 1)
            bar.set_postfix(nll=f"{history[-1]:.3f}")
            running = 0.0
    seconds = time.perf_counter() - t0
    flow = flow.double().eval()
    nll = heldout_nll(flow, target_test)
    info: dict[str, Any] = {"train_nll_history": history, "train_nll_steps": history_steps,
                            "train_seconds": seconds, **nll}  # fmt: skip
    if steps != cfg.steps:
        info["smoke"] = smoke.marker("step", cfg.steps, steps)
    return flow, info


@torch.no_grad()
def heldout_nll(flow: FlowBackend, y: np.ndarray, batch: int = 8192) -> dict[str, float]:
    """Mean and standard error of -log q(y) over held-out points (nats per sample)."""
    yt = torch.as_tensor(y, dtype=torch.float64)
    lp = torch.cat([flow.log_prob(yt[i : i + batch]) for i in range(0, len(yt), batch)]).numpy()
    if not np.isfinite(lp).all():
        raise TrainingError("the trained flow gives non-finite log-likelihoods on held-out samples")
    return {
        "heldout_nll_nats": float(-lp.mean()),
        "heldout_nll_stderr": float(lp.std(ddof=1) / math.sqrt(len(lp))),
    }
