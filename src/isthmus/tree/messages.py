"""Tags and message checks of hetero SecureBoost, in one place so guest and host cannot drift apart.

Training: the guest sends SETUP, the host answers HELLO (its bins per column); then COMMAND
messages, each ``{"op": ...}``: ``tree`` (gradients, sampled rows, sampled columns), ``level``
(partitions of the last level, nodes to build) answered by HISTOGRAMS, ``split`` answered by SPLITS,
and ``finish``. Prediction: PREDICT messages ``start`` / ``route`` / ``done``, answered by ROUTE.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from isthmus.errors import ProtocolError

SETUP = "secureboost/setup"
HELLO = "secureboost/hello"
COMMAND = "secureboost/command"
HISTOGRAMS = "secureboost/histograms"
SPLITS = "secureboost/splits"
PREDICT = "secureboost/predict"
ROUTE = "secureboost/route"


def expect_map(obj: Any, keys: set[str], *, peer: str, tag: str) -> dict:
    if not isinstance(obj, dict) or set(obj) != keys:
        got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ProtocolError(f"expected a map with keys {sorted(keys)}, got {got}", peer=peer, tag=tag)
    return obj


def expect_int(obj: Any, low: int, high: int, what: str, *, peer: str, tag: str) -> int:
    """An int in ``[low, high)``."""
    if type(obj) is not int or not low <= obj < high:
        raise ProtocolError(f"{what} must be an integer in [{low}, {high}), got {obj!r}", peer=peer, tag=tag)
    return obj


def expect_ints(obj: Any, low: int, high: int, what: str, *, peer: str, tag: str, size: int | None = None,
                increasing: bool = False) -> np.ndarray:
    """A 1-D int64 array with values in ``[low, high)``; optionally of a given size, strictly increasing."""
    if not isinstance(obj, np.ndarray) or obj.dtype != np.int64 or obj.ndim != 1:
        raise ProtocolError(f"{what} must be a 1-D int64 array", peer=peer, tag=tag)
    if size is not None and obj.size != size:
        raise ProtocolError(f"{what} must hold {size} values, got {obj.size}", peer=peer, tag=tag)
    if obj.size and (obj.min() < low or obj.max() >= high):
        raise ProtocolError(f"{what} out of range [{low}, {high})", peer=peer, tag=tag)
    if increasing and obj.size > 1 and not (np.diff(obj) > 0).all():
        raise ProtocolError(f"{what} must be strictly increasing", peer=peer, tag=tag)
    return obj


def expect_mask(obj: Any, size: int, what: str, *, peer: str, tag: str) -> np.ndarray:
    if not isinstance(obj, np.ndarray) or obj.dtype != np.bool_ or obj.shape != (size,):
        raise ProtocolError(f"{what} must be a bool array of {size} values", peer=peer, tag=tag)
    return obj


def expect_list(obj: Any, size: int | None, what: str, *, peer: str, tag: str) -> list:
    if not isinstance(obj, list) or (size is not None and len(obj) != size):
        raise ProtocolError(f"{what} must be a list" + (f" of {size} items" if size is not None else ""),
                            peer=peer, tag=tag)
    return obj
