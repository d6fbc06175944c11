"""Fixed-point encoding of reals as integers modulo n: ``m = round(v * 2**precision)``, negatives as ``n - |m|``.

Why fixed point: Paillier adds integers modulo n. A power-of-two scale keeps sums exact and makes a
product's scale the sum of its factors' scales. Encoded magnitudes are limited to ``n // 3``: a value
beyond that is refused when encoding, and a plaintext that decrypts into the middle third
``(n//3, n - n//3)`` can only come from a sum or product that wrapped around n, so it is reported
instead of being returned as garbage.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

from isthmus.errors import EncodingOverflowError

#: Fractional bits of encrypted values by default: resolution 2**-32 ~ 2.3e-10; at 1024 bits and up the
#: representable range exceeds float64.
DEFAULT_PRECISION = 32
_INT64_SAFE = 1 << 62  # magnitudes below this convert between float64 and int64 without overflow


def max_encoded(n: int) -> int:
    """Largest magnitude an encoded value may have under modulus ``n``."""
    return n // 3


def as_array(values: Any) -> np.ndarray:
    """``values`` (scalar, nested list or ndarray) as an ndarray of numbers; refuses strings, complex, etc."""
    array = values if isinstance(values, np.ndarray) else np.asarray(values)
    if array.dtype.kind in "biuf":
        return array
    if array.dtype.kind == "O" and all(isinstance(v, (Integral, Real)) for v in array.flat):
        return array
    raise TypeError(f"cannot encode values of dtype {array.dtype}: expected real numbers")


def to_integers(array: np.ndarray, precision: int) -> list[int]:
    """Flat list of ``round(v * 2**precision)`` as exact Python ints (ties to even, like ``numpy.rint``)."""
    return to_integer_array(array, precision).ravel().tolist()


def to_integer_array(array: np.ndarray, precision: int) -> np.ndarray:
    """``round(v * 2**precision)`` in ``array``'s shape: int64 when every magnitude is below 2**62,
    else an object array of exact Python ints. Keeping int64 lets big matrices stay vectorised."""
    if precision < 0:
        raise ValueError(f"precision must be >= 0, got {precision}")
    if array.dtype.kind in "biu":
        limit = _INT64_SAFE >> precision
        if not array.size or (int(array.min()) > -limit and int(array.max()) < limit):
            return array.astype(np.int64) << precision
        return np.array([int(v) << precision for v in array.ravel().tolist()], dtype=object).reshape(array.shape)
    if array.dtype.kind == "f":
        with np.errstate(over="ignore"):  # overflow to inf is reported below, with the offending value
            scaled = np.rint(_times_power_of_two(array.astype(np.float64, copy=False), precision))
        _check_finite(scaled, array)
        if not scaled.size or np.abs(scaled).max() < _INT64_SAFE:
            return scaled.astype(np.int64)
        return np.array([int(v) for v in scaled.ravel().tolist()], dtype=object).reshape(array.shape)
    integers = [_object_to_integer(v, precision) for v in array.ravel().tolist()]
    return np.array(integers, dtype=object).reshape(array.shape)


def encode(values: Any, precision: int, n: int) -> tuple[list[int], tuple[int, ...]]:
    """Encode ``values`` into plaintexts in ``[0, n)``; returns them flat with the array's shape."""
    array = as_array(values)
    integers = to_integers(array, precision)
    check_range(integers, precision, n)
    return [m % n for m in integers], array.shape


def check_range(integers: Sequence[int], precision: int, n: int) -> None:
    """Raise :class:`EncodingOverflowError` with the representable range if any magnitude exceeds ``n // 3``."""
    limit = max_encoded(n)
    worst = max(integers, key=abs, default=0)
    if abs(worst) > limit:
        bound = _fraction_repr(limit, precision)
        raise EncodingOverflowError(
            f"value {_fraction_repr(worst, precision)} does not fit: at precision {precision} this key "
            f"represents [-{bound}, {bound}]"
        )


def signed(m: int, n: int) -> int:
    """The signed integer a plaintext in ``[0, n)`` stands for; a wrapped value raises."""
    limit = max_encoded(n)
    if m <= limit:
        return m
    if m >= n - limit:
        return m - n
    raise EncodingOverflowError(
        "decrypted value lies outside the representable range: a sum or product overflowed the key's modulus"
    )


def decode(integers: Iterable[int], exponent: int, shape: tuple[int, ...]) -> np.ndarray:
    """Signed fixed-point numerators to float64 values ``m / 2**exponent`` of ``shape``."""
    integers = list(integers)
    if all(-_INT64_SAFE < m < _INT64_SAFE for m in integers):
        values = np.ldexp(np.array(integers, dtype=np.int64).astype(np.float64), -exponent)
    else:
        try:
            values = np.array([m / (1 << exponent) for m in integers], dtype=np.float64)
        except OverflowError:
            raise EncodingOverflowError("decrypted value exceeds the float64 range; use decrypt_encoded") from None
    return values.reshape(shape)


def minimal_precision(array: np.ndarray, cap: int) -> int:
    """Fewest fractional bits (at most ``cap``) that represent every value of ``array`` exactly.

    Why: multiplying by 2, 0.5 or an integer array should not grow the result's exponent (and the
    exponentiation's cost) by a full ``cap`` bits.
    """
    if array.dtype.kind in "biu":
        return 0
    if array.dtype.kind == "O":
        return 0 if all(isinstance(v, Integral) for v in array.flat) else cap
    finite = array.astype(np.float64, copy=False).ravel()
    _check_finite(finite, array)
    finite = finite[finite != 0]
    if finite.size == 0:
        return 0
    mantissa, exponent = np.frexp(finite)
    integer_mantissa = np.abs(np.ldexp(mantissa, 53)).astype(np.int64)
    trailing_zeros = np.log2(integer_mantissa & -integer_mantissa).astype(np.int64)
    needed = int((53 - exponent - trailing_zeros).max())
    return min(max(needed, 0), cap)


def _times_power_of_two(values: np.ndarray, exponent: int) -> np.ndarray:
    """``values * 2**exponent``, exact; a plain product is ~10x faster than ``np.ldexp`` on big matrices."""
    if exponent <= 1023:  # 2.0**exponent is a finite double
        return values * 2.0**exponent
    return np.ldexp(values, exponent)


def _check_finite(scaled: np.ndarray, original: np.ndarray) -> None:
    if not np.isfinite(scaled).all():
        bad = original.ravel()[~np.isfinite(scaled)][0]
        if np.isnan(bad):
            raise ValueError("cannot encode NaN")
        raise EncodingOverflowError(f"value {bad} is too large to encode")


def _object_to_integer(value: Any, precision: int) -> int:
    if isinstance(value, Integral):
        return int(value) << precision
    return to_integers(np.array([float(value)]), precision)[0]


def _fraction_repr(m: int, precision: int) -> str:
    """``m / 2**precision`` for messages, without float overflow for huge m."""
    try:
        return f"{m / (1 << precision):.6g}"
    except OverflowError:
        return f"~2**{m.bit_length() - precision}"
