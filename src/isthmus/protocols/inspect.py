"""The one place that checks what a peer sent before a protocol touches it: a peer's message is hostile input.

Every protocol validates each message it receives through an :class:`Inspect` bound to the sender and
the tag, so every failure is a :class:`ProtocolError` that names both. The codec has already refused
anything outside the wire vocabulary; this checks that the message is the one the protocol expects:
keys, types, shapes, ranges, and that ciphertexts are under the job's key.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import numpy as np

from isthmus.errors import ProtocolError, printable

MAX_METRICS = 64
MAX_NAME = 256


class Inspect:
    """Validates one message from one peer; every failure is a :class:`ProtocolError` naming both."""

    def __init__(self, peer: str, tag: str):
        self.peer = peer
        self.tag = tag

    def fail(self, message: str) -> NoReturn:
        raise ProtocolError(message, peer=self.peer, tag=self.tag)

    def mapping(self, obj: Any, required: set[str], *, exact: bool = False) -> dict:
        """A map holding ``required`` keys (and, when ``exact``, no others)."""
        if not isinstance(obj, dict):
            self.fail(f"expected a map with keys {sorted(required)}, got {type(obj).__name__}")
        missing, extra = required - obj.keys(), (obj.keys() - required) if exact else set()
        if missing or extra:
            self.fail(f"expected a map with keys {sorted(required)}, got {sorted(map(str, obj))[:20]}")
        return obj

    def integer(self, obj: Any, low: int, high: int, what: str = "value") -> int:
        """An int in ``[low, high]`` (both included)."""
        if type(obj) is not int or not low <= obj <= high:
            self.fail(f"{what} must be an integer in [{low}, {high}], got {obj!r:.40}")
        return obj

    def number(self, obj: Any, what: str = "value") -> float:
        if type(obj) not in (int, float) or not math.isfinite(obj):
            self.fail(f"{what} must be a finite number, got {obj!r:.40}")
        return float(obj)

    def text(self, obj: Any, what: str = "text", max_length: int = MAX_NAME) -> str:
        if not isinstance(obj, str) or not 0 < len(obj) <= max_length:
            self.fail(f"{what} must be a non-empty string of at most {max_length} characters")
        return obj

    def prose(self, obj: Any, what: str = "text", max_length: int = MAX_NAME) -> str:
        """Free text (a reason), escaped to be shown here (:func:`isthmus.errors.printable`)."""
        return printable(self.text(obj, what, max_length))

    def raw(self, obj: Any, *, length: int | None = None, max_length: int = 1 << 16) -> bytes:
        if not isinstance(obj, bytes):
            self.fail(f"expected bytes, got {type(obj).__name__}")
        if (length is not None and len(obj) != length) or len(obj) > max_length:
            self.fail(f"expected {length or f'at most {max_length}'} bytes, got {len(obj)}")
        return obj

    def sequence(self, obj: Any, size: int | None = None, what: str = "value") -> list:
        """A list, of ``size`` items when given."""
        if not isinstance(obj, list) or (size is not None and len(obj) != size):
            self.fail(f"{what} must be a list" + (f" of {size} items" if size is not None else ""))
        return obj

    def array(self, obj: Any, shape: tuple[int | None, ...], *, kind: str = "f",
              dtype: np.dtype | type | None = None, what: str = "array") -> np.ndarray:
        """A numpy array of the given shape (``None``: any length on that axis) and dtype kind ('f', 'i',
        'u', 'b'), or exactly ``dtype`` when given; float arrays must be finite."""
        if not isinstance(obj, np.ndarray):
            self.fail(f"{what}: expected a numpy array, got {type(obj).__name__}")
        if (obj.dtype != np.dtype(dtype)) if dtype is not None else (obj.dtype.kind != kind):
            self.fail(f"{what}: expected {np.dtype(dtype) if dtype is not None else f'kind {kind!r}'}, got {obj.dtype}")
        if obj.ndim != len(shape) or any(want is not None and want != got for want, got in zip(shape, obj.shape)):
            self.fail(f"{what}: expected shape {shape}, got {obj.shape}")
        if obj.dtype.kind == "f" and not np.isfinite(obj).all():
            self.fail(f"{what} holds NaN or infinite values")
        return obj

    def integers(self, obj: Any, low: int, high: int, *, size: int | None = None, increasing: bool = False,
                 what: str = "values") -> np.ndarray:
        """A 1-D integer array with values in ``[low, high]``, as int64; of ``size`` values, strictly
        increasing, when asked."""
        if not isinstance(obj, np.ndarray) or obj.dtype.kind not in "iu" or obj.ndim != 1:
            self.fail(f"{what} must be a 1-D integer array")
        if size is not None and obj.size != size:
            self.fail(f"{what} must hold {size} values, got {obj.size}")
        if obj.size and (obj.min() < low or obj.max() > high):
            self.fail(f"{what} out of range [{low}, {high}]")
        if increasing and obj.size > 1 and not (np.diff(obj) > 0).all():
            self.fail(f"{what} must be strictly increasing")
        return obj.astype(np.int64, copy=False)

    def indices(self, obj: Any, upper: int, *, size: int | None = None, increasing: bool = False,
                what: str = "row positions") -> np.ndarray:
        """Positions in ``[0, upper)``: :meth:`integers` for indexing."""
        return self.integers(obj, 0, upper - 1, size=size, increasing=increasing, what=what)

    def mask(self, obj: Any, size: int, what: str = "mask") -> np.ndarray:
        return self.array(obj, (size,), dtype=np.bool_, what=what)

    def cipher(self, obj: Any, public_key: Any, *, size: int | None, what: str = "ciphertexts") -> Any:
        """A 1-D ciphertext array under ``public_key`` (or, in a benchmark-only plaintext mode where the key
        is ``None``, a float array) of ``size`` values (any, when ``None``)."""
        if public_key is None:
            return self.array(obj, (size,), what=what)
        from isthmus.crypto.ckks import CkksArray, CkksPublicKey

        if isinstance(public_key, CkksPublicKey):
            try:
                return CkksArray.from_wire(obj, public_key, size=size)
            except ValueError as exc:
                self.fail(f"{what}: {exc}")
        from isthmus.crypto.paillier import CipherArray

        if not isinstance(obj, CipherArray):
            self.fail(f"{what}: expected a ciphertext array, got {type(obj).__name__}")
        if obj.public_key.fingerprint != public_key.fingerprint:
            self.fail(f"{what} are under a different public key than the job's")
        if obj.ndim != 1 or (size is not None and obj.size != size):
            self.fail(f"{what}: expected {size} ciphertexts in a 1-D array, got shape {obj.shape}")
        return obj

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

    def parameters(self, obj: Any, like: list[np.ndarray]) -> list[np.ndarray]:
        """A model: as many finite arrays as ``like``, each of the same shape and dtype."""
        if not isinstance(obj, list) or len(obj) != len(like):
            self.fail(f"expected a list of {len(like)} parameter arrays")
        return [self.array(got, want.shape, dtype=want.dtype, what="parameters") for got, want in zip(obj, like)]
