"""Progress of the phases around training (evaluation, artefacts), so no long phase is silent.

:func:`phase` prints ``label: [i/n] what ...`` to stderr when a phase starts and
``label: [i/n] what done (T s)`` when it ends, only when progress is shown (``fit(...,
progress=True)``, i.e. not under ``--quiet``; rank 0 only). Trainers read that flag from
:attr:`dimgen.training.trainer.Context.progress`. Phases with many equal units (classifier
epochs, flow steps) use a tqdm bar instead, with the same flag. :func:`status` announces a
trainer's set-up on a terminal only, and erases it if the set-up refuses the input.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["phase", "status"]

#: The text of a :func:`status` line still open on the terminal (no newline yet), else "".
_open = ""


def _close_open_line() -> None:
    """End an open :func:`status` line, so a line printed inside it starts on its own."""
    global _open
    if _open:
        print(file=sys.stderr, flush=True)
        _open = ""


@contextmanager
def phase(label: str, what: str, show: bool, index: int = 0, count: int = 0) -> Iterator[None]:
    """Announce phase ``what`` of ``label`` (``index`` of ``count``, when given) on stderr."""
    if not show:
        yield
        return
    step = f"[{index}/{count}] " if count else ""
    _close_open_line()
    print(f"{label}: {step}{what} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    yield
    print(
        f"{label}: {step}{what} done ({time.perf_counter() - t0:.1f} s)",
        file=sys.stderr,
        flush=True,
    )


@contextmanager
def status(label: str, what: str, show: bool) -> Iterator[None]:
    """Announce a phase that may still refuse bad input (a trainer's set-up: data, models), on a
    terminal only: ``label: what ...`` stays open and becomes ``... done (T s)``, or is erased
    when the phase raises, so a refusal stays the one ``error:`` line (and a log file or a pipe
    sees nothing of it)."""
    global _open
    if not (show and sys.stderr.isatty()):
        yield
        return
    _close_open_line()
    _open = f"{label}: {what} ..."
    print(_open, end="", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        yield
    except BaseException:
        if _open:  # nothing printed since: erase it
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        _open = ""
        raise
    done = f"{label}: {what} done ({time.perf_counter() - t0:.1f} s)"
    print(("\r\033[K" if _open else "") + done, file=sys.stderr, flush=True)
    _open = ""
