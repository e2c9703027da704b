"""The shared learning-rate schedule: linear warm-up, then cosine decay to 0 (closed form)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dimgen.training.schedules import cosine_scheduler, warmup_cosine


def test_warmup_cosine_is_the_closed_form() -> None:
    total, warmup = 45, 5
    f = [warmup_cosine(s, total, warmup) for s in range(total + 1)]
    assert f[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    for s in range(warmup, total + 1):
        assert f[s] == pytest.approx(
            0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup)))
        )
    assert f[warmup] == 1.0 and f[total] == 0.0 and f[(total + warmup) // 2] == pytest.approx(0.5)
    assert all(a >= b for a, b in itertools.pairwise(f[warmup:]))
    assert warmup_cosine(3, 4, 0) == pytest.approx(0.5 * (1 + math.cos(0.75 * math.pi)))


def test_cosine_scheduler_sets_the_rate_of_every_step_and_round_trips() -> None:
    w = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.02)
    sched = cosine_scheduler(opt, total=10, warmup=2)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.02 * warmup_cosine(s, 10, 2) for s in range(6)], abs=1e-15)
    # a new scheduler loaded from the state continues on the same curve
    opt2 = torch.optim.Adam([torch.zeros(2, requires_grad=True)], lr=0.02)
    sched2 = cosine_scheduler(opt2, total=10, warmup=2)
    sched2.load_state_dict(sched.state_dict())
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]  # as the optimiser's state does
    for _ in range(4):
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
        sched.step()
        sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-18)
