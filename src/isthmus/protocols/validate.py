"""Checks on what a peer sent, before a protocol uses it: a peer's message is hostile input."""

from __future__ import annotations

from typing import Any

import numpy as np

from isthmus.errors import ProtocolError


def expect_dict(obj: Any, keys: set[str], *, peer: str, tag: str) -> dict:
    if not isinstance(obj, dict) or not keys <= obj.keys():
        got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ProtocolError(f"expected a map with keys {sorted(keys)}, got {got}", peer=peer, tag=tag)
    return obj


def expect_array(obj: Any, *, shape: tuple[int | None, ...], kind: str = "f", peer: str, tag: str) -> np.ndarray:
    """A numpy array of the given dtype kind ('f' float, 'i' signed int, 'u' unsigned, 'b' bool) and shape.

    ``None`` in ``shape`` accepts any length on that axis. Float arrays must be finite.
    """
    if not isinstance(obj, np.ndarray) or obj.dtype.kind != kind:
        raise ProtocolError(f"expected a numpy array of kind {kind!r}, got {_describe(obj)}", peer=peer, tag=tag)
    if obj.ndim != len(shape) or any(want is not None and want != got for want, got in zip(shape, obj.shape)):
        raise ProtocolError(f"expected shape {shape}, got {obj.shape}", peer=peer, tag=tag)
    if kind == "f" and not np.isfinite(obj).all():
        raise ProtocolError("array holds NaN or infinite values", peer=peer, tag=tag)
    return obj


def expect_indices(obj: Any, *, upper: int, peer: str, tag: str) -> np.ndarray:
    """A 1-D integer array of row positions, each in ``[0, upper)``."""
    if not isinstance(obj, np.ndarray) or obj.dtype.kind not in "iu" or obj.ndim != 1:
        raise ProtocolError(f"expected a 1-D integer array of row positions, got {_describe(obj)}", peer=peer, tag=tag)
    if obj.size and (obj.min() < 0 or obj.max() >= upper):
        raise ProtocolError(f"row position out of range [0, {upper})", peer=peer, tag=tag)
    return obj.astype(np.int64, copy=False)


def expect_cipher(obj: Any, public_key: Any, *, size: int | None, peer: str, tag: str) -> Any:
    """A ciphertext array under ``public_key`` (or, in the benchmark-only plaintext mode, a float array)."""
    if public_key is None:
        return expect_array(obj, shape=(size,), peer=peer, tag=tag)
    from isthmus.crypto.paillier import CipherArray

    if not isinstance(obj, CipherArray):
        raise ProtocolError(f"expected a ciphertext array, got {_describe(obj)}", peer=peer, tag=tag)
    if obj.public_key.fingerprint != public_key.fingerprint:
        raise ProtocolError("ciphertext is under a different public key than the job's", peer=peer, tag=tag)
    if obj.ndim != 1 or (size is not None and obj.size != size):
        raise ProtocolError(f"expected {size} ciphertexts in a 1-D array, got shape {obj.shape}", peer=peer, tag=tag)
    return obj


def _describe(obj: Any) -> str:
    if isinstance(obj, np.ndarray):
        return f"array of {obj.dtype} with shape {obj.shape}"
    return type(obj).__name__
