"""Compatibility name: the GAN's networks live in :mod:`dimgen.gan.nets`."""

from __future__ import annotations

from .gan.nets import *  # noqa: F403
from .gan.nets import __all__  # noqa: F401
