"""Metric names shared by every run kind, so one quantity has one key in every ``metrics.json``.

:data:`KL_BOUND` (``kl_upper_bound_nats``) is the KL certificate capacity - MI lower bound
(nats), written by encoder runs, carried unchanged into flow runs (data processing) and copied
into GAN runs from their encoder. :func:`kl_upper_bound` also reads runs written before the
names were unified (flow runs used ``kl_bound_carried_nats``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["KL_BOUND", "LEGACY_KEYS", "kl_upper_bound"]

KL_BOUND = "kl_upper_bound_nats"
#: Old key -> current key, for reading runs of earlier versions.
LEGACY_KEYS: dict[str, str] = {"kl_bound_carried_nats": KL_BOUND}


def kl_upper_bound(metrics: Mapping[str, Any]) -> float | None:
    """The KL certificate of a run's ``metrics.json`` (nats), under its current or an old key;
    None when the run has none (e.g. an encoder trained without a bound)."""
    for key in (KL_BOUND, *(old for old, new in LEGACY_KEYS.items() if new == KL_BOUND)):
        value = metrics.get(key)
        if value is not None:
            return float(value)
    return None
