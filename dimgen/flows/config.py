"""``FlowConfig``: options of ``dimgen flow`` (map choice, flow architecture and training).

Field types, finiteness and ranges are declared with :func:`dimgen.config.bounded` and checked
by :func:`dimgen.config.validate`; :func:`_check_flow` adds the cross-field rule on ``n_test``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import MAX_SEED, bounded, one_of, register_validator
from ..errors import ConfigError

__all__ = ["FLOW_TRAINING", "METHODS", "FlowConfig", "check_method_target", "check_options_apply"]

METHODS = ("auto", "exact", "maf", "rqs", "gmm")
_BIG = 10**8


@dataclass
class FlowConfig:
    """How codes are mapped to a new prior, or modelled (a code model). Defaults train a 2-D
    flow in a few CPU seconds."""

    backend: str = one_of("nflows", "nflows", "zuko")
    """Flow library: ``nflows`` or ``zuko`` (optional extra ``dimgen[zuko]``)."""
    method: str = one_of("auto", *METHODS)
    """``auto`` (``exact`` for i.i.d. 1-D laws, else ``rqs``), ``exact``, ``maf``, ``rqs``, or
    ``gmm``: a code model (``--to-codes`` only) that is a Gaussian mixture, not a flow."""
    components: int = bounded(50, 1, 100_000)
    """Gaussians of a ``gmm`` code model (full covariances, fitted by EM)."""
    layers: int = bounded(3, 1, 64)
    """Autoregressive layers (each followed by a reversal of the coordinates)."""
    hidden: int = bounded(64, 1, 65536)
    """Hidden width of each layer's MADE network."""
    blocks: int = bounded(2, 1, 64)
    """Residual blocks per MADE network."""
    bins: int = bounded(8, 2, 1024)
    """Rational-quadratic spline bins (``rqs``)."""
    tail_bound: float = bounded(4.0, 0.0, 1000.0, low_open=True)
    """Spline interval [-B, B] in standardised units; linear tails outside (``rqs``)."""
    steps: int = bounded(400, 1, _BIG)
    """Adam steps of maximum-likelihood training."""
    batch_size: int = bounded(256, 1, 2**20)
    lr: float = bounded(3e-3, 0.0, 10.0, low_open=True)
    """Initial learning rate (cosine-annealed to 0)."""
    n_train: int = bounded(20_000, 1, _BIG)
    """Target samples drawn for training (a target given as a distribution)."""
    n_test: int = bounded(5_000, 2, _BIG)
    """Held-out target samples (log-likelihood, kNN references); at least 2 knn_k + 2."""
    test_fraction: float = bounded(0.2, 0.0, 1.0, low_open=True, high_open=True)
    """Held-out share of the samples when the target is given as samples."""
    knn_k: int = bounded(5, 1, 1000)
    """Neighbours used by the kNN KL and entropy estimators."""
    seed: int = bounded(0, 0, MAX_SEED)


def _check_flow(cfg: FlowConfig) -> None:
    if cfg.n_test < 2 * cfg.knn_k + 2:
        raise ConfigError(f"n_test must be >= {2 * cfg.knn_k + 2}, got {cfg.n_test}")


register_validator(FlowConfig, _check_flow)


def check_method_target(cfg: FlowConfig, to_codes: bool) -> None:
    """Refuse ``gmm`` for a map to another prior: a mixture models codes, it maps nothing.

    Raises:
        ConfigError: ``cfg.method == "gmm"`` and not ``to_codes``.
    """
    if cfg.method == "gmm" and not to_codes:
        raise ConfigError(
            "method gmm is a code model (a Gaussian mixture of RUN's own codes), not a map to "
            "another prior: use it with --to-codes"
        )


#: Options that only a trained flow reads, and those that only some methods read.
FLOW_TRAINING = ("backend", "layers", "hidden", "blocks", "bins", "tail_bound", "steps",
                 "batch_size", "lr")  # fmt: skip
_ONLY: dict[str, tuple[str, ...]] = {"components": ("gmm",), "bins": ("rqs", "auto"),
                                     "tail_bound": ("rqs", "auto")}  # fmt: skip


def check_options_apply(method: str, given: dict[str, str]) -> None:
    """Refuse options given explicitly (command-line flags, ``--set``) that ``method`` would
    ignore, so a mistaken ``--components 8`` on a flow or ``--steps`` on a mixture is not
    silently dropped. ``given`` maps each field to how the user wrote it (``--steps``,
    ``--set blocks``), which the message repeats.

    ``auto`` may become ``exact`` (no training) or ``rqs`` once the target is known, so only
    what no ``auto`` run reads is refused for it.

    Raises:
        ConfigError: naming the first such option and what ``method`` takes.
    """
    for name in sorted(given):
        flag = given[name]
        allowed = _ONLY.get(name)
        if allowed is not None and method not in allowed:
            raise ConfigError(
                f"{flag} applies to --method {allowed[0]} only; this run uses --method {method}"
            )
        if name in FLOW_TRAINING and method in ("gmm", "exact"):
            what = ("a Gaussian mixture fitted by EM (it takes --components and --seed)"
                    if method == "gmm" else "an exact map, trained on nothing")  # fmt: skip
            raise ConfigError(f"{flag} applies to a trained flow; --method {method} is {what}")
