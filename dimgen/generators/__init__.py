"""What every generator shares (the GAN in :mod:`dimgen.gan`, diffusion in :mod:`dimgen.diffusion`).

- :mod:`.protocol`: :class:`~.protocol.Generator`, the small interface sampling and evaluation
  rely on (images in [0, 1] from codes of a tokenizer), and the run kinds that implement it;
- :mod:`.runs`: :func:`~.runs.load_generator`, the generator of any complete run folder.

A new generator implements the protocol in its own package and adds its run kind here.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "GENERATOR_KINDS": ".protocol",
    "Generator": ".protocol",
    "SpecGenerator": ".protocol",
    "check_codes": ".protocol",
    "load_generator": ".runs",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'dimgen.generators' has no attribute {name!r}")
