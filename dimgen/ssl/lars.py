"""LARS (layer-wise adaptive rate scaling) and the warm-up + cosine learning-rate schedule.

LARS, as used by SimCLR / VICReg / solo-learn: for each parameter tensor w with gradient g,

    g <- g + wd * w                                  (weight decay)
    q  = eta * ||w|| / ||g||   if ||w|| > 0 and ||g|| > 0, else 1   (trust ratio)
    m <- momentum * m + q * g
    w <- w - lr * m

Parameter groups with ``lars=False`` (biases and normalisation parameters, see
:func:`param_groups`) skip both the weight decay and the trust ratio, the usual exclusions.

References:
    You, Gitman, Ginsburg, "Large Batch Training of Convolutional Networks", 2017 (LARS).
    Goyal et al., "Accurate, Large Minibatch SGD", 2017 (linear warm-up);
    Loshchilov & Hutter, "SGDR", ICLR 2017 (cosine decay).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..training.schedules import warmup_cosine  # re-exported (it lived here)

__all__ = ["LARS", "param_groups", "warmup_cosine"]


class LARS(torch.optim.Optimizer):
    """SGD with momentum and the LARS trust ratio (formula in the module docstring).

    Args:
        params: parameters or groups; a group with ``lars=False`` is plain SGD + momentum.
        lr: learning rate; weight_decay: wd; momentum: in [0, 1); eta: trust coefficient.
    Raises:
        ConfigError: a non-finite or negative hyper-parameter.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        eta: float = 0.02,
    ) -> None:
        for name, v in (("lr", lr), ("weight_decay", weight_decay), ("eta", eta)):
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"LARS {name} must be >= 0, got {v}")
        if not 0 <= momentum < 1:
            raise ConfigError(f"LARS momentum must lie in [0, 1), got {momentum}")
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "eta": eta,
                    "lars": True}  # fmt: skip
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["lars"]:
                    g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    q = torch.where(
                        (w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm,
                        torch.ones_like(w_norm),
                    )  # fmt: skip
                    g = g.mul(q)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])
        return loss


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Two groups: weights (LARS + weight decay) and the usual exclusions (``lars=False``):
    biases and the parameters of every normalisation layer (BatchNorm, GroupNorm, LayerNorm)."""
    norm_types = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    excluded: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, norm_types) or name == "bias":
                excluded.add(id(p))
    params = list(model.parameters())
    return [
        {"params": [p for p in params if id(p) not in excluded]},
        {"params": [p for p in params if id(p) in excluded], "lars": False, "weight_decay": 0.0},
    ]
