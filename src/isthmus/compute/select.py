"""Choosing a party's backend from one string (its ``--compute`` option or the ``ISTHMUS_COMPUTE`` variable),
and the one this process uses."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from isthmus.compute.base import Compute
from isthmus.compute.local import LocalCompute
from isthmus.crypto import parallel
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


_lock = threading.Lock()
_current: Compute | None = None


def current() -> Compute:
    """This process's backend: the one set by :func:`use`, else the one ``ISTHMUS_COMPUTE`` names."""
    global _current
    with _lock:
        if _current is None:
            _current = from_environment()
            parallel.use_cluster(_current)
        return _current


@contextmanager
def use(compute: Compute) -> Iterator[Compute]:
    """Make ``compute`` this process's backend for the block (a party process sets it once, at start)."""
    global _current
    compute.check()
    with _lock:
        before, _current = _current, compute
        parallel.use_cluster(compute)
    try:
        yield compute
    finally:
        with _lock:
            _current = before
            parallel.use_cluster(before)
        compute.close()
