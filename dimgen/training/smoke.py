"""Smoke runs: ``DIMGEN_SMOKE=1`` makes every trainer a quick, clearly labelled walk-through.

A smoke run exercises every phase of a command (data, training, evaluation, artefacts) with tiny
budgets, so the README and docs/ can be executed as tests in minutes on a laptop CPU. Its
numbers mean nothing and are marked so: :func:`~dimgen.training.fit` caps the trainer's ``total`` with
:func:`cap_units`, writes ``"smoke": {...}`` into ``run.json`` and ``metrics.json``, and puts a
warning line at the top of ``report.md``. Trainers shrink their evaluation sizes with
:func:`cap_size`; code outside the harness (e.g. flow fitting) uses the same two helpers.

The environment variable is read at every call (not at import), so tests can set it with
``monkeypatch.setenv``. Values: unset, empty or ``0``: off; anything else: on.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["SMOKE_ENV", "UNIT_CAPS", "active", "cap_size", "cap_units", "marker"]

SMOKE_ENV = "DIMGEN_SMOKE"
#: The most units of each kind a smoke run trains (an encoder epoch, an optimiser step).
UNIT_CAPS: dict[str, int] = {"epoch": 3, "step": 30}


def active() -> bool:
    """Whether ``DIMGEN_SMOKE`` is set to something other than empty or ``0``."""
    return os.environ.get(SMOKE_ENV, "").strip() not in ("", "0")


def cap_units(total: int, unit: str) -> int:
    """``total`` training units, capped at ``UNIT_CAPS[unit]`` (30 for unknown units) when smoke
    runs are on; unchanged otherwise."""
    if not active():
        return total
    return min(total, UNIT_CAPS.get(unit, UNIT_CAPS["step"]))


def cap_size(n: int, small: int) -> int:
    """An evaluation size (samples, batches, classifier epochs): ``min(n, small)`` when smoke
    runs are on, ``n`` otherwise. A size of 0 ("skip this phase") stays 0."""
    return min(n, small) if active() else n


def marker(unit: str, configured: int, trained: int) -> dict[str, Any]:
    """The ``"smoke"`` entry written into ``run.json`` and ``metrics.json`` of a smoke run."""
    return {
        "env": f"{SMOKE_ENV}={os.environ.get(SMOKE_ENV, '')}",
        "unit": unit,
        "configured": configured,
        "trained": trained,
        "note": "smoke run: tiny budgets, the numbers are not results",
    }
