"""Learning-rate schedules shared by the trainers: linear warm-up, then cosine decay to 0.

References:
    Goyal et al., "Accurate, Large Minibatch SGD", 2017 (linear warm-up);
    Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017
    (cosine decay).
"""

from __future__ import annotations

import math

import torch

__all__ = ["cosine_scheduler", "warmup_cosine"]


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor at optimiser step ``step`` (0-based): linear warm-up over ``warmup``
    steps to 1, then cosine decay to 0 at ``total`` (a ``LambdaLR`` multiplier).

    After the warm-up the factor is 0.5 (1 + cos(pi (step - warmup) / (total - warmup))), so the
    first step after it uses the full rate and the last one (``total - 1``) a small positive one.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))


def cosine_scheduler(
    opt: torch.optim.Optimizer, total: int, warmup: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` that scales every group's initial rate by :func:`warmup_cosine`; call its
    ``step()`` once after every ``opt.step()``. ``total``, ``warmup``: optimiser steps.

    Its ``state_dict`` (the step reached) is plain JSON, so a checkpoint's ``schedulers`` entry
    restores it and a resumed run continues on the same curve.

    Example:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> sched = cosine_scheduler(opt, total=4)
        >>> lrs = []
        >>> for _ in range(4):
        ...     lrs.append(round(opt.param_groups[0]["lr"], 4))
        ...     opt.step()
        ...     sched.step()
        >>> lrs
        [0.1, 0.0854, 0.05, 0.0146]
    """
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warmup))
