"""Checks on what a peer sent before the horizontal protocol touches it: a peer's message is hostile input."""

from __future__ import annotations

import math
from typing import Any, NoReturn

import numpy as np

from isthmus.errors import ProtocolError

MAX_METRICS = 64
MAX_NAME = 256


class Inspect:
    """Validates one message from one peer; every failure is a :class:`ProtocolError` naming both."""

    def __init__(self, peer: str, tag: str):
        self.peer = peer
        self.tag = tag

    def fail(self, message: str) -> NoReturn:
        raise ProtocolError(message, peer=self.peer, tag=self.tag)

    def mapping(self, obj: Any, required: set[str]) -> dict:
        if not isinstance(obj, dict):
            self.fail(f"expected a map, got {type(obj).__name__}")
        missing = required - obj.keys()
        if missing:
            self.fail(f"message lacks {sorted(missing)}")
        return obj

    def raw(self, obj: Any, *, length: int | None = None, max_length: int = 1 << 16) -> bytes:
        if not isinstance(obj, bytes):
            self.fail(f"expected bytes, got {type(obj).__name__}")
        if (length is not None and len(obj) != length) or len(obj) > max_length:
            self.fail(f"expected {length or f'at most {max_length}'} bytes, got {len(obj)}")
        return obj

    def integer(self, obj: Any, low: int, high: int) -> int:
        if type(obj) is not int or not low <= obj <= high:
            self.fail(f"expected an integer in [{low}, {high}], got {obj!r:.40}")
        return obj

    def number(self, obj: Any) -> float:
        if type(obj) not in (int, float) or not math.isfinite(obj):
            self.fail(f"expected a finite number, got {obj!r:.40}")
        return float(obj)

    def names(self, obj: Any, allowed: set[str]) -> list[str]:
        """Distinct party names, each one of ``allowed``."""
        if not isinstance(obj, list) or not all(isinstance(n, str) for n in obj):
            self.fail("expected a list of party names")
        if len(set(obj)) != len(obj) or not set(obj) <= allowed:
            self.fail(f"unexpected or repeated party names: {sorted(set(obj) - allowed)[:5]}")
        return obj

    def metrics(self, obj: Any) -> dict[str, float]:
        if not isinstance(obj, dict) or len(obj) > MAX_METRICS:
            self.fail(f"metrics must be a map of at most {MAX_METRICS} names to numbers")
        for key in obj:
            if not 0 < len(key) <= MAX_NAME:
                self.fail("metric name empty or too long")
        return {key: self.number(value) for key, value in obj.items()}

    def array(self, obj: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        if not isinstance(obj, np.ndarray):
            self.fail(f"expected a numpy array, got {type(obj).__name__}")
        if obj.dtype != dtype or obj.shape != shape:
            self.fail(f"expected {np.dtype(dtype)} array of shape {shape}, got {obj.dtype} {obj.shape}")
        if obj.dtype.kind == "f" and not np.isfinite(obj).all():
            self.fail("array holds NaN or infinite values")
        return obj

    def parameters(self, obj: Any, like: list[np.ndarray]) -> list[np.ndarray]:
        """A model: as many finite arrays as ``like``, each of the same shape and dtype."""
        if not isinstance(obj, list) or len(obj) != len(like):
            self.fail(f"expected a list of {len(like)} parameter arrays")
        return [self.array(got, want.dtype, want.shape) for got, want in zip(obj, like)]
