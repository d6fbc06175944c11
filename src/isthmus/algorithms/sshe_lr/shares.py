"""Additive secret shares in the ring Z_(2^RING_BITS), and the one Paillier step that makes them.

A secret x (fixed point, small) is held as x = s_guest + s_host (mod RING): each share alone is a
uniform ring element. A product of one party's plaintext matrix X with a value the other party
holds as share s is shared with :func:`masked_product`: the holder sends [[s]] under its own key,
the matrix owner returns [[X s - r]] and keeps r; the holder decrypts X s - r. Why r is drawn from
far more than RING_BITS bits: the holder sees the integer X s - r before reducing it, and X s can
be as large as RING x (row sums of X); with r uniform on [0, 2^(RING_BITS + extra + SIGMA)), where
|X s| < 2^(RING_BITS + extra), the integer is within statistical distance 2^-SIGMA of one that does
not depend on X, and r mod RING is exactly uniform, so the reduced shares are too.

Truncation after a fixed-point product is local (SecureML, Mohassel and Zhang 2017): the guest
floors its share, the host floors the negation of its own; the result is the truncated secret up
to one unit in the last place, except with probability 2^(l + 1 - RING_BITS) for |x| < 2^l.
"""

from __future__ import annotations

import secrets

import numpy as np

from isthmus.crypto import fixedpoint
from isthmus.protocols.inspect import Inspect

RING_BITS = 256
RING = 1 << RING_BITS
#: Statistical security of every mask: a peer's view differs from one independent of the secret
#: with probability at most 2^-SIGMA.
SIGMA = 64


def ring(values) -> list[int]:
    return [int(v) % RING for v in values]


def add(*vectors: list[int]) -> list[int]:
    return [sum(parts) % RING for parts in zip(*vectors, strict=True)]


def signed(value: int) -> int:
    """The small signed integer a ring element stands for."""
    return value - RING if value >= RING // 2 else value


def dot(matrix: np.ndarray, shares: list[int]) -> list[int]:
    """``matrix @ shares`` mod RING for an int64 matrix, exactly (Python integers)."""
    column = np.array(shares, dtype=object)
    return ring(matrix.astype(object) @ column) if matrix.shape[1] else [0] * matrix.shape[0]


def scale(shares: list[int], factors: list[int]) -> list[int]:
    return [s * f % RING for s, f in zip(shares, factors, strict=True)]


def truncate(shares: list[int], bits: int, *, first: bool) -> list[int]:
    """Local truncation by ``bits``: ``first`` for the guest's shares, not for the host's."""
    if first:
        return [s >> bits for s in shares]
    return [(RING - ((RING - s) >> bits)) % RING for s in shares]


def encrypt(public_key, shares: list[int]):
    """[[shares]] under this party's own key (exponent 0: the scales are the protocol's business)."""
    return public_key.encrypt(np.array(shares, dtype=object).reshape(-1), precision=0)


def mask_bits(extra: int) -> int:
    """Bits of a mask hiding a value below 2^(RING_BITS + extra)."""
    return RING_BITS + extra + SIGMA


def masked_product(matrix: np.ndarray, encrypted, extra: int):
    """``[[matrix @ s - r]]`` to send back and ``r mod RING``, this party's share of ``matrix @ s``.
    ``extra`` bounds the matrix's absolute row sums: |matrix @ s| < 2^(RING_BITS + extra)."""
    return masked(encrypted.rmatmul(matrix, precision=0), extra)


def masked(encrypted, extra: int) -> tuple[object, list[int]]:
    """``[[v - r]]`` and this party's share ``r mod RING`` of v, for |v| < 2^(RING_BITS + extra)."""
    bits = mask_bits(extra)
    r = np.array([secrets.randbits(bits) for _ in range(len(encrypted))], dtype=object)
    return encrypted - r, ring(r)


def decrypt(private_key, encrypted, extra: int, check: Inspect) -> list[int]:
    """This party's share of a value a peer masked for it: the plaintexts, checked to lie where an honest
    peer's masked values lie (|v - r| < 2^(mask_bits + 1)), reduced mod RING."""
    n = private_key.public_key.n
    try:
        values = [fixedpoint.signed(m, n) for m in private_key.decrypt_raw(encrypted)]
    except OverflowError:
        check.fail("a masked value decrypts outside the representable range")
    limit = 1 << (mask_bits(extra) + 1)
    if any(abs(v) >= limit for v in values):
        check.fail(f"a masked value exceeds 2^{mask_bits(extra) + 1}: not what an honest peer sends")
    return ring(values)
