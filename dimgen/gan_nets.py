"""Deprecated name of :mod:`dimgen.gan.nets` (the GAN's networks); import that instead."""

from __future__ import annotations

import warnings

from .gan.nets import *  # noqa: F403
from .gan.nets import __all__  # noqa: F401

warnings.warn(
    "dimgen.gan_nets is deprecated; import dimgen.gan.nets instead",
    DeprecationWarning,
    stacklevel=2,
)
