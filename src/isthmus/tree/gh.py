"""Gradient/hessian pairs as exact integers, and the slot layout that packs them into plaintexts.

Every SecureBoost variant sums (g, h) per histogram bin. Doing that on integers makes the sums exact
and independent of summation order, so the federated trees are bit-for-bit those of the plaintext
reference booster, whatever crypto sits in between. Each tree scales its gradients by a power of two
chosen so that the sum of ``|g|`` (and of ``h``) over all rows stays below ``2**SUM_BITS``: every
partial sum is then exact in int64, in float64 (``np.bincount``) and inside one Paillier slot.

Slot layout (no offsets, so the decoder needs no per-bin row counts):

* one pair is the signed integer ``v = G * 2**SUM_BITS + H`` with ``0 <= H < 2**SUM_BITS`` and
  ``|G| < 2**SUM_BITS``, hence ``-2**(SLOT_BITS-1) <= v < 2**(SLOT_BITS-1)``; sums of pairs over any
  row set keep these bounds, so a row's ciphertext and a bin's summed ciphertext share the layout;
* a packed plaintext holds several pairs as ``sum_j v_j * 2**(SLOT_BITS * j)``, decoded from the
  lowest slot up as balanced digits. It fits a key whose modulus has ``key_bits`` bits when
  ``SLOT_BITS * slots <= key_bits - 2`` (then ``|plaintext| < n / 2``, the signed range).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from isthmus.errors import EncodingOverflowError

#: Sums of |g| and of h over all rows of a tree stay below 2**SUM_BITS (exact in float64, too).
SUM_BITS = 52
#: Bits of one signed (G, H) slot.
SLOT_BITS = 2 * SUM_BITS + 1
_H_MASK = (1 << SUM_BITS) - 1
_SLOT_MODULUS = 1 << SLOT_BITS
_SLOT_HALF = 1 << (SLOT_BITS - 1)


@dataclass(frozen=True)
class FixedPointScale:
    """Integer sums stand for ``grad_sum / 2**grad_exponent`` and ``hess_sum / 2**hess_exponent``.

    Split finding needs only this, not the rows: a horizontal variant, whose clients must agree on
    exponents before summing, fixes them from bounds on |g| and h and the total row count.
    """

    grad_exponent: int
    hess_exponent: int

    def to_float(self, grad_sum: np.ndarray | int, hess_sum: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """Exact: the sums have at most 53 significant bits."""
        return (np.ldexp(np.asarray(grad_sum, dtype=np.float64), -self.grad_exponent),
                np.ldexp(np.asarray(hess_sum, dtype=np.float64), -self.hess_exponent))


UNIT_SCALE = FixedPointScale(0, 0)


@dataclass(frozen=True)
class QuantizedGH:
    """One tree's gradients and hessians as int64 at a power-of-two scale."""

    grad: np.ndarray
    hess: np.ndarray
    scale: FixedPointScale = UNIT_SCALE

    @classmethod
    def quantize(cls, grad: np.ndarray, hess: np.ndarray) -> QuantizedGH:
        grad = np.asarray(grad, dtype=np.float64)
        hess = np.asarray(hess, dtype=np.float64)
        if not (np.isfinite(grad).all() and np.isfinite(hess).all()):
            raise EncodingOverflowError("gradients or hessians are not finite")
        if (hess < 0).any():
            raise EncodingOverflowError("hessians must be non-negative")
        grad_int, grad_exponent = _to_fixed_point(grad)
        hess_int, hess_exponent = _to_fixed_point(hess)
        return cls(grad_int, hess_int, FixedPointScale(grad_exponent, hess_exponent))


def fixed_point_exponent(total: float, count: int) -> int:
    """The power-of-two scale for ``count`` values whose absolute values sum to ``total``: their rounded
    sum stays below 2**SUM_BITS (rounding adds at most 1/2 per value, so room is left for it).

    Parties that each hold some of the values (horizontal SecureBoost) agree on it from the summed totals.
    """
    if total == 0.0:
        return 0
    return math.floor(math.log2((2.0**SUM_BITS - count) / total))


def _to_fixed_point(values: np.ndarray) -> tuple[np.ndarray, int]:
    """The largest power-of-two scale at which the rounded absolute values sum below 2**SUM_BITS."""
    total = float(np.abs(values).sum())
    if total == 0.0:
        return np.zeros(values.shape, dtype=np.int64), 0
    exponent = fixed_point_exponent(total, values.size)
    while True:
        scaled = np.rint(np.ldexp(values, exponent)).astype(np.int64)
        if int(np.abs(scaled).sum()) < 1 << SUM_BITS:
            return scaled, exponent
        exponent -= 1


def pack_pairs(grad: np.ndarray, hess: np.ndarray) -> list[int]:
    """One signed plaintext ``G * 2**SUM_BITS + H`` per row."""
    return [(g << SUM_BITS) + h for g, h in zip(grad.tolist(), hess.tolist())]


def unpack_pairs(values: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_pairs` for (summed) pairs: int64 arrays of G and H."""
    hess = [v & _H_MASK for v in values]
    grad = [(v - h) >> SUM_BITS for v, h in zip(values, hess)]
    return np.array(grad, dtype=np.int64), np.array(hess, dtype=np.int64)


def slots_per_plaintext(key_bits: int) -> int:
    """How many pair slots one plaintext of a ``key_bits``-bit modulus holds."""
    slots = (key_bits - 2) // SLOT_BITS
    if slots < 1:
        raise EncodingOverflowError(f"a {key_bits}-bit key cannot hold one {SLOT_BITS}-bit gradient slot")
    return slots


def pack_slots(values: Sequence[int]) -> int:
    """``sum_j values[j] * 2**(SLOT_BITS * j)``: the plaintext a host's homomorphic packing produces."""
    packed = 0
    for value in reversed(values):
        packed = (packed << SLOT_BITS) + value
    return packed


def unpack_slots(packed: int, count: int) -> list[int]:
    """Balanced-digit decoding of :func:`pack_slots`; ``packed`` is the signed plaintext."""
    values = []
    for _ in range(count):
        digit = packed & (_SLOT_MODULUS - 1)
        if digit >= _SLOT_HALF:
            digit -= _SLOT_MODULUS
        values.append(digit)
        packed = (packed - digit) >> SLOT_BITS
    if packed != 0:
        raise EncodingOverflowError(f"packed plaintext holds more than {count} slots")
    return values
