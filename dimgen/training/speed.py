"""Runtime levers for training speed that are not part of the model: allocator, compiler.

- :func:`tune_cpu_allocator`: on the CPU a training step allocates and frees the same few large
  (B x B x H) buffers; glibc hands such blocks back to the OS and faults them in again on the
  next step. Keeping them in the process removed about a quarter of the digits default's step
  time on a 2-core machine (20.6 -> 15.0 ms, 2,500 -> 0 page faults per step).
- :class:`CompiledStep`: ``torch.compile`` with a fallback that really catches compilation
  failures. ``torch.compile(fn)`` returns at once; compiling (and failing: no C++ compiler, no
  Triton, an unsupported op) happens lazily inside the first call, possibly after part of the
  step has run. The first call is therefore made on a snapshot of the training state, which is
  restored before the eager function takes over.
"""

from __future__ import annotations

import copy
import ctypes
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["CompiledStep", "tune_cpu_allocator"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
_TUNED = False


def tune_cpu_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Keep freed blocks below ``mmap_threshold`` bytes inside the process (Linux glibc only).

    Up to ``trim_threshold`` bytes of free memory stay mapped instead of being returned to the
    OS. Set ``DIMGEN_NO_MALLOPT=1`` to skip. Returns whether the setting was applied (once per
    process; a no-op elsewhere).
    """
    global _TUNED
    if _TUNED:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("DIMGEN_NO_MALLOPT"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)))
        ok = bool(libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))) and ok
    except (OSError, AttributeError):  # not glibc
        return False
    _TUNED = ok
    return ok


class CompiledStep:
    """``torch.compile(fn)`` that falls back to eager ``fn`` when the first compiled call fails.

    Args:
        fn: the training step.
        modules: modules whose state the step changes (parameters, buffers).
        optimizer: the optimizer the step updates.
        compile_kwargs: passed to ``torch.compile`` (e.g. ``mode="max-autotune"``).

    After a failed first call the module, optimizer and RNG states are restored, a
    ``RuntimeWarning`` names the failure in one line, and every later call runs eager: the run
    continues with exactly the numbers the eager path gives. ``compiled`` tells which path is live.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        modules: list[torch.nn.Module],
        optimizer: torch.optim.Optimizer,
        **compile_kwargs: Any,
    ) -> None:
        self.fn, self.modules, self.optimizer = fn, modules, optimizer
        self._verified = False
        self._compiled: Callable[..., Any] | None
        try:
            self._compiled = torch.compile(fn, **compile_kwargs)
        except Exception as exc:  # torch.compile itself unavailable
            self._fallback(exc)

    @property
    def compiled(self) -> bool:
        """True while the compiled function is in use."""
        return self._compiled is not None

    def _fallback(self, exc: BaseException) -> None:
        self._compiled = None
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        warnings.warn(
            f"torch.compile failed ({type(exc).__name__}: {first}); training continues in eager "
            "mode",
            RuntimeWarning,
            stacklevel=3,
        )

    def _snapshot(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "modules": [copy.deepcopy(m.state_dict()) for m in self.modules],
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "rng": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        for m, sd in zip(self.modules, state["modules"], strict=True):
            m.load_state_dict(sd)
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state:
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def __call__(self, *args: Any) -> Any:
        if self._compiled is None:
            return self.fn(*args)
        if self._verified:
            return self._compiled(*args)
        state = self._snapshot()
        try:
            out = self._compiled(*args)
        except Exception as exc:
            self._restore(state)
            for m in self.modules:
                for p in m.parameters():
                    p.grad = None
            self._fallback(exc)
            return self.fn(*args)
        self._verified = True
        return out
