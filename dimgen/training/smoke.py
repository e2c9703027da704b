"""Smoke runs: ``DIMGEN_SMOKE=1`` makes every trainer a quick, clearly labelled walk-through.

A smoke run exercises every phase of a command (data, training, evaluation, artefacts) with tiny
budgets, so the README and docs/ can be executed as tests in minutes on a laptop CPU, on any
data (MNIST
included). It caps *work*, not epochs, so its length does not grow with the data set:

- training data: the first :data:`MAX_TRAIN` training and :data:`MAX_TEST` held-out samples
  (:func:`cap_data`), so encoding, codes and evaluation stay small;
- training units: :data:`UNIT_CAPS` (:func:`cap_units`; epochs and optimiser steps), and at most
  :data:`MAX_STEPS` optimiser steps in all for trainers whose unit is an epoch
  (:func:`cap_batches`);
- evaluation sizes (samples, batches, classifier epochs, sweep runs): :func:`cap_size`.

Its numbers mean nothing and every artefact says so: :func:`~dimgen.training.fit` writes
``"smoke": {...}`` (:func:`marker`) into ``run.json`` and ``metrics.json`` and a warning line
at the top of ``report.md``; the sweep marks its CSVs, report and figure too.

The environment variable is read at every call (not at import), so tests can set it with
``monkeypatch.setenv``. Values: unset, empty or ``0``: off; anything else: on.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

__all__ = [
    "MAX_STEPS",
    "MAX_TEST",
    "MAX_TRAIN",
    "NOTE",
    "SMOKE_ENV",
    "UNIT_CAPS",
    "active",
    "cap_batches",
    "cap_data",
    "cap_size",
    "cap_units",
    "marker",
]

SMOKE_ENV = "DIMGEN_SMOKE"
#: The most units of each kind a smoke run trains (an encoder epoch, an optimiser step).
UNIT_CAPS: dict[str, int] = {"epoch": 3, "step": 30}
#: The most optimiser steps a smoke run takes in all, whatever its unit.
MAX_STEPS = 30
#: The most training / held-out samples a smoke run loads (the first ones of each split).
MAX_TRAIN = 1024
MAX_TEST = 512
#: What every smoke artefact says about its numbers.
NOTE = "smoke run: tiny budgets, the numbers are not results"

D = TypeVar("D")


def active() -> bool:
    """Whether ``DIMGEN_SMOKE`` is set to something other than empty or ``0``."""
    return os.environ.get(SMOKE_ENV, "").strip() not in ("", "0")


def cap_units(total: int, unit: str) -> int:
    """``total`` training units, capped at ``UNIT_CAPS[unit]`` (30 for unknown units) when smoke
    runs are on; unchanged otherwise."""
    if not active():
        return total
    return min(total, UNIT_CAPS.get(unit, UNIT_CAPS["step"]))


def cap_batches(per_unit: int, units: int) -> int:
    """Optimiser steps per unit (e.g. batches per epoch) so that ``units`` units take at most
    :data:`MAX_STEPS` steps in all (at least 1 per unit) when smoke runs are on; ``per_unit``
    otherwise."""
    if not active():
        return per_unit
    return max(1, min(per_unit, MAX_STEPS // max(1, units)))


def cap_size(n: int, small: int) -> int:
    """An evaluation size (samples, batches, classifier epochs): ``min(n, small)`` when smoke
    runs are on, ``n`` otherwise. A size of 0 ("skip this phase") stays 0."""
    return min(n, small) if active() else n


def cap_data(ds: D) -> D:
    """A :class:`~dimgen.data.Dataset` cut to its first :data:`MAX_TRAIN` training and
    :data:`MAX_TEST` held-out samples (labels alike) when smoke runs are on; ``ds`` otherwise."""
    if not active():
        return ds
    x_tr, y_tr = ds.x_train, ds.y_train  # type: ignore[attr-defined]
    x_te, y_te = ds.x_test, ds.y_test  # type: ignore[attr-defined]
    if len(x_tr) <= MAX_TRAIN and len(x_te) <= MAX_TEST:
        return ds
    if hasattr(ds, "head"):  # a streamed source (dimgen.data.stream): views, nothing decoded
        return ds.head(MAX_TRAIN, MAX_TEST)  # type: ignore[attr-defined]
    cls: Any = type(ds)
    return cls(
        ds.name,  # type: ignore[attr-defined]
        x_tr[:MAX_TRAIN],
        None if y_tr is None else y_tr[:MAX_TRAIN],
        x_te[:MAX_TEST],
        None if y_te is None else y_te[:MAX_TEST],
    )


def marker(unit: str, configured: int, trained: int) -> dict[str, Any]:
    """The ``"smoke"`` entry written into ``run.json`` and ``metrics.json`` of a smoke run."""
    return {
        "env": f"{SMOKE_ENV}={os.environ.get(SMOKE_ENV, '')}",
        "unit": unit,
        "configured": configured,
        "trained": trained,
        "max_steps": MAX_STEPS,
        "max_train": MAX_TRAIN,
        "max_test": MAX_TEST,
        "note": NOTE,
    }
