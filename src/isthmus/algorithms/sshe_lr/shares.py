"""Additive secret shares in the ring Z_(2^RING_BITS), and the one Paillier step that makes them.

A secret x (fixed point, small) is held as x = s_guest + s_host (mod RING): each share alone is a
uniform ring element. A product of one party's plaintext matrix X with a value the other party
holds as share s is shared with :func:`masked_product`: the holder sends [[s]] under its own key,
the matrix owner returns [[X s - r]] and keeps r; the holder decrypts X s - r. Why r is drawn from
far more than RING_BITS bits: the holder sees the integer X s - r before reducing it, and X s can
be as large as RING x (row sums of X); with r uniform on [0, 2^(RING_BITS + extra + SIGMA)), where
|X s| < 2^(RING_BITS + extra), the integer is within statistical distance 2^-SIGMA of one that does
not depend on X, and r mod RING is exactly uniform, so the reduced shares are too.

Masked values travel several to a plaintext (:class:`Packing`): a decryption costs as much as ~20
encryptions at 2048 bits and a masked value needs ~360 of the plaintext's 2048 bits, so packing five
to a ciphertext cuts the receiver's decryptions five-fold; the values, their masks and what the
receiver sees of each are exactly those of one value per ciphertext.

Truncation after a fixed-point product is local (SecureML, Mohassel and Zhang 2017): the guest
floors its share, the host floors the negation of its own; the result is the truncated secret up
to one unit in the last place, except with probability 2^(l + 1 - RING_BITS) for |x| < 2^l.
"""

from __future__ import annotations

import secrets

import gmpy2
import numpy as np

from isthmus.crypto import fixedpoint
from isthmus.crypto.cipherarray import CipherArray
from isthmus.crypto.multiexp import matrix_products_of_powers
from isthmus.protocols.inspect import Inspect

RING_BITS = 256
RING = 1 << RING_BITS
#: Statistical security of every mask: a peer's view differs from one independent of the secret
#: with probability at most 2^-SIGMA.
SIGMA = 64


def ring(values) -> list[int]:
    return [int(v) % RING for v in values]


def add(*vectors: list[int], modulus: int = RING) -> list[int]:
    return [sum(parts) % modulus for parts in zip(*vectors, strict=True)]


def signed(value: int) -> int:
    """The small signed integer a ring element stands for."""
    return value - RING if value >= RING // 2 else value


def dot(matrix: np.ndarray, shares: list[int]) -> list[int]:
    """``matrix @ shares`` mod RING for an int64 matrix, exactly (Python integers)."""
    column = np.array(shares, dtype=object)
    return ring(matrix.astype(object) @ column) if matrix.shape[1] else [0] * matrix.shape[0]


def scale(shares: list[int], factors: list[int]) -> list[int]:
    return [s * f % RING for s, f in zip(shares, factors, strict=True)]


def truncate(shares: list[int], bits: int, *, first: bool, modulus: int = RING) -> list[int]:
    """Local truncation by ``bits``: ``first`` for the guest's shares, not for the host's (in the ring of
    ``modulus``, a power of two)."""
    if first:
        return [s >> bits for s in shares]
    return [(modulus - ((modulus - s) >> bits)) % modulus for s in shares]


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


class Packing:
    """Masked values ``per`` to a plaintext of a ``key_bits``-bit key, for |v| < 2^(RING_BITS + extra).

    Row i sits in plaintext i // per, slot t = i % per, at bit ``t * width``; the slot holds
    ``v - r + 2^(bits + 1)`` (bits = :func:`mask_bits`), which lies in [0, 2^(bits + 2)) = [0, 2^width):
    slots never borrow from each other, and a full plaintext stays below 2^(key_bits - 2) < n / 2.
    """

    def __init__(self, key_bits: int, extra: int):
        self.bits = mask_bits(extra)
        self.width = self.bits + 2
        self.per = max(1, (key_bits - 2) // self.width)
        self._offset = 1 << (self.bits + 1)

    def groups(self, count: int) -> int:
        return -(-count // self.per)

    def shifts(self, count: int) -> list[int]:
        """Bit position of each of ``count`` rows' slot."""
        return [(i % self.per) * self.width for i in range(count)]

    def masked(self, encrypted: CipherArray, count: int) -> tuple[CipherArray, list[int]]:
        """Add each slot's ``2^(bits + 1) - r`` to ``encrypted`` (one packed ciphertext per group of ``per``
        of the ``count`` values); returns it and this party's shares ``r mod RING``."""
        r = [secrets.randbits(self.bits) for _ in range(count)]
        plain = [0] * self.groups(count)
        for i, (value, shift) in enumerate(zip(r, self.shifts(count), strict=True)):
            plain[i // self.per] += (self._offset - value) << shift
        return encrypted + np.array(plain, dtype=object), ring(r)

    def product(self, matrix: np.ndarray, encrypted: CipherArray) -> tuple[CipherArray, list[int]]:
        """``[[matrix @ s - r]]`` packed, and this party's shares ``r mod RING`` (see :func:`masked_product`).
        Slot t takes its row's products from the bases raised to 2^(t width), squarings once per base and batch."""
        rows, columns = matrix.shape
        modulus = encrypted.public_key.nsquare
        slots = min(self.per, rows)
        bases = [encrypted.ciphertexts()]
        for _ in range(slots - 1):
            bases.append([gmpy2.powmod(c, 1 << self.width, modulus) for c in bases[-1]])
        padded = np.zeros((self.groups(rows) * slots, columns), dtype=matrix.dtype)
        padded[:rows] = matrix
        products = matrix_products_of_powers([c for shifted in bases for c in shifted],
                                             padded.reshape(-1, slots * columns), modulus)
        packed = CipherArray.from_ciphertexts(encrypted.public_key, products, (len(products),), 0)
        return self.masked(packed, rows)

    def decrypt(self, private_key, encrypted: CipherArray, count: int, check: Inspect) -> list[int]:
        """This party's shares of ``count`` values a peer masked and packed for it, each checked to lie
        where an honest peer's lies, reduced mod RING."""
        if len(encrypted) != self.groups(count):
            check.fail(f"expected {self.groups(count)} packed ciphertexts for {count} values, got {len(encrypted)}")
        values, mask = [], (1 << self.width) - 1
        for index, plaintext in enumerate(private_key.decrypt_raw(encrypted)):
            slots = min(self.per, count - index * self.per)
            if plaintext >> (slots * self.width):
                check.fail("a packed plaintext overflows its slots: not what an honest peer sends")
            values.extend(((plaintext >> (t * self.width)) & mask) - self._offset for t in range(slots))
        return ring(values)


def encrypt_ring(public_key, values: list[int]) -> CipherArray:
    """[[ring elements]] packed ``ring_per(key)`` to a plaintext (RING_BITS-bit slots, first value lowest):
    for shares that are themselves uniform in the ring and need no mask, passed on to another party."""
    per = ring_per(public_key.bits)
    packed = [sum(v << (RING_BITS * t) for t, v in enumerate(values[i:i + per])) for i in range(0, len(values), per)]
    return public_key.encrypt(np.array(packed, dtype=object), precision=0)


def ring_per(key_bits: int) -> int:
    return (key_bits - 2) // RING_BITS


def ring_groups(key_bits: int, count: int) -> int:
    return -(-count // ring_per(key_bits))


def decrypt_ring(private_key, encrypted: CipherArray, count: int, check: Inspect) -> list[int]:
    """The ``count`` ring elements of :func:`encrypt_ring`, each plaintext checked to hold only its slots."""
    per = ring_per(private_key.public_key.bits)
    values = []
    for index, plaintext in enumerate(private_key.decrypt_raw(encrypted)):
        slots = min(per, count - index * per)
        if plaintext >> (slots * RING_BITS):
            check.fail("a packed plaintext overflows its slots: not what an honest peer sends")
        values.extend((plaintext >> (RING_BITS * t)) % RING for t in range(slots))
    return values
