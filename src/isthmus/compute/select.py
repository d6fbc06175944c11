"""Choosing a party's backend from one string: its ``--compute`` option or the ``ISTHMUS_COMPUTE`` variable."""

from __future__ import annotations

import os

from isthmus.compute.base import Compute
from isthmus.compute.local import LocalCompute
from isthmus.errors import ConfigError

ENV_VAR = "ISTHMUS_COMPUTE"
RAY_SCHEME = "ray://"


def connect(address: str | None) -> Compute:
    """``None``, ``""`` or ``"local"``: this machine's processes; ``"ray://HOST:PORT"``: that Ray cluster.

    Nothing is contacted here; :meth:`Compute.check` (run by :func:`isthmus.compute.use`) does that."""
    if address is None or address.strip() in ("", "local"):
        return LocalCompute()
    if address.startswith(RAY_SCHEME):
        from isthmus.compute.ray_backend import RayCompute

        return RayCompute(address)
    raise ConfigError(f"compute backend must be 'local' or '{RAY_SCHEME}HOST:PORT', not {address!r}")


def from_environment() -> Compute:
    return connect(os.environ.get(ENV_VAR))
