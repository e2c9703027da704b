"""Progress of the phases around training (evaluation, artefacts), so no long phase is silent.

:func:`phase` prints ``label: [i/n] what ...`` to stderr when a phase starts and
``label: [i/n] what done (T s)`` when it ends, only when progress is shown (``fit(...,
progress=True)``, i.e. not under ``--quiet``; rank 0 only). Trainers read that flag from
:attr:`dimgen.training.trainer.Context.progress`. Phases with many equal units (classifier
epochs, flow steps) use a tqdm bar instead, with the same flag.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["phase"]


@contextmanager
def phase(label: str, what: str, show: bool, index: int = 0, count: int = 0) -> Iterator[None]:
    """Announce phase ``what`` of ``label`` (``index`` of ``count``, when given) on stderr."""
    if not show:
        yield
        return
    step = f"[{index}/{count}] " if count else ""
    print(f"{label}: {step}{what} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    yield
    print(
        f"{label}: {step}{what} done ({time.perf_counter() - t0:.1f} s)",
        file=sys.stderr,
        flush=True,
    )
