"""Several fixed-point values per Paillier plaintext, with headroom for homomorphic sums.

Slot layout. A plaintext holds ``groups * slots`` slots of ``slot_bits`` bits, the first slot in the
most significant position (so shift-and-add merging, ``c1 ** (2 ** k) * c2``, puts c1 before c2)::

    plaintext = s_0 * 2**((t-1) W) + s_1 * 2**((t-2) W) + ... + s_(t-1),   W = slot_bits, t = slots in use

Each value v is stored as ``e = round(v * 2**precision) + 2**(value_bits - 1)``, an integer in
``[0, 2**value_bits)``: the offset makes negatives non-negative so slots never borrow from each
other. A slot is ``value_bits + headroom`` bits wide with ``headroom = ceil(log2(max_addends))``: the
sum of up to ``max_addends`` stored values stays below ``max_addends * 2**value_bits <=
2**slot_bits`` and never carries into the next slot. The decoder is told how many addends ``k``
each slot summed and returns ``(slot - k * offset) / 2**precision``, exactly.

Capacity: ``(bits(n) - 1) // slot_bits`` slots, so a full plaintext is below ``2**(bits(n)-1) < n``.
With a 2048-bit key, ``precision=20, value_bits=32`` (|v| < 2048, resolution ~1e-6) and no
addition, 63 values share one ciphertext; with headroom for 2**20 addends, 39 do.
"""

from __future__ import annotations

from typing import Any

import gmpy2
import numpy as np

from isthmus.crypto import fixedpoint
from isthmus.crypto.cipherarray import CipherArray
from isthmus.crypto.keys import PaillierPrivateKey, PaillierPublicKey
from isthmus.errors import EncodingOverflowError

DEFAULT_PACKING_PRECISION = 20
DEFAULT_VALUE_BITS = 32


class Packer:
    """One slot layout under one key: encrypt, merge and decrypt packed values."""

    def __init__(
        self,
        public_key: PaillierPublicKey,
        *,
        precision: int = DEFAULT_PACKING_PRECISION,
        value_bits: int = DEFAULT_VALUE_BITS,
        max_addends: int = 1,
    ):
        if precision < 0 or value_bits < 1 or max_addends < 1:
            raise ValueError("need precision >= 0, value_bits >= 1 and max_addends >= 1")
        self.public_key = public_key
        self.precision = precision
        self.value_bits = value_bits
        self.max_addends = max_addends
        self.slot_bits = value_bits + (max_addends - 1).bit_length()
        self.capacity = (public_key.bits - 1) // self.slot_bits
        self._offset = 1 << (value_bits - 1)
        if self.capacity == 0:
            raise EncodingOverflowError(
                f"a {self.slot_bits}-bit slot does not fit a {public_key.bits}-bit key's plaintext"
            )

    def __repr__(self) -> str:
        return (
            f"Packer(precision={self.precision}, value_bits={self.value_bits}, max_addends={self.max_addends}, "
            f"slot_bits={self.slot_bits}, capacity={self.capacity})"
        )

    @property
    def value_range(self) -> tuple[float, float]:
        """Smallest and largest value a slot can hold."""
        return -self._offset / 2**self.precision, (self._offset - 1) / 2**self.precision

    # -- plaintext side ------------------------------------------------------------------------
    def pack(self, values: Any, groups: int = 1) -> list[int]:
        """Rows of ``values`` (count, slots), ``groups`` rows per plaintext; the last is padded with zeros."""
        array = _as_rows(values)
        count, slots = array.shape
        self._check_fits(slots, groups)
        stored = self._store(array)
        width = slots * groups
        stored += [self._offset] * (-len(stored) % width)
        shift = self.slot_bits
        plaintexts = []
        for start in range(0, len(stored), width):
            packed = 0
            for e in stored[start : start + width]:
                packed = (packed << shift) | e
            plaintexts.append(packed)
        return plaintexts

    def unpack(self, plaintexts: list[int], slots: int, groups: int = 1, count: int | None = None, addends: Any = 1) -> np.ndarray:
        """Float64 ``(count, slots)`` values of slots that each summed ``addends`` stored values (scalar or array)."""
        self._check_fits(slots, groups)
        width, shift, mask = slots * groups, self.slot_bits, (1 << self.slot_bits) - 1
        fields = [(x >> (shift * i)) & mask for x in plaintexts for i in range(width - 1, -1, -1)]
        count = len(plaintexts) * groups if count is None else count
        if not 0 <= count <= len(plaintexts) * groups:
            raise ValueError(f"{len(plaintexts)} plaintexts of {groups} groups cannot hold {count} groups")
        sums = np.array(fields, dtype=object).reshape(-1, slots)[:count]
        addends = np.broadcast_to(np.asarray(addends, dtype=object), sums.shape)
        if any(k < 1 or k > self.max_addends for k in addends.flat):
            raise EncodingOverflowError(f"slots may sum 1 to {self.max_addends} values (the headroom), not more")
        if any(x >> (shift * width) for x in plaintexts) or any(
            s > k * ((1 << self.value_bits) - 1) for s, k in zip(sums.flat, addends.flat)
        ):
            raise EncodingOverflowError("a slot holds more than its addends can sum to: the packing overflowed")
        numerators = sums - addends * self._offset
        return fixedpoint.decode(numerators.ravel().tolist(), self.precision, numerators.shape)

    # -- ciphertext side -----------------------------------------------------------------------
    def encrypt(self, values: Any, groups: int = 1) -> CipherArray:
        """One ciphertext (exponent 0, raw packed plaintext) per ``groups`` rows of ``values``."""
        plaintexts = self.pack(values, groups)
        ciphertexts = self.public_key.encrypt_integers(plaintexts)
        return CipherArray.from_ciphertexts(self.public_key, ciphertexts, (len(ciphertexts),), 0, fresh=True)

    def decrypt(
        self, private_key: PaillierPrivateKey, cipher: CipherArray, slots: int, groups: int = 1, count: int | None = None, addends: Any = 1
    ) -> np.ndarray:
        """Values ``(count, slots)`` of a packed (and possibly summed or merged) ciphertext array."""
        return self.unpack(private_key.decrypt_raw(cipher), slots, groups, count, addends)

    def merge(self, cipher: CipherArray, slots: int, groups: int | None = None) -> CipherArray:
        """Pack ``groups`` single-group ciphertexts (e.g. summed histogram bins) into one, homomorphically.

        Shift and add: ``c1 ** (2 ** (slots W)) * c2`` holds c1's slots above c2's. Decrypt the result
        with the same ``slots`` and ``groups``. The output is re-randomised: it is sent to the key holder,
        who must not be able to link it to the ciphertexts it was built from.
        """
        groups = self.capacity // slots if groups is None else groups
        self._check_fits(slots, groups)
        step, nsquare = slots * self.slot_bits, self.public_key.nsquare
        ciphertexts = cipher.ciphertexts()
        merged = []
        for start in range(0, len(ciphertexts), groups):
            chunk = ciphertexts[start : start + groups]
            acc = chunk[0]
            for c in chunk[1:]:
                acc = gmpy2.powmod(acc, 1 << step, nsquare) * c % nsquare
            if len(chunk) < groups:  # pad at the low end, as pack() does
                acc = gmpy2.powmod(acc, 1 << (step * (groups - len(chunk))), nsquare)
            merged.append(acc)
        return CipherArray.from_ciphertexts(self.public_key, merged, (len(merged),), 0).rerandomize()

    # -- internals -----------------------------------------------------------------------------
    def _check_fits(self, slots: int, groups: int) -> None:
        if slots < 1 or groups < 1 or slots * groups > self.capacity:
            raise EncodingOverflowError(
                f"{groups} groups of {slots} slots need {slots * groups * self.slot_bits} bits; "
                f"a {self.public_key.bits}-bit key holds {self.capacity} slots of {self.slot_bits} bits"
            )

    def _store(self, array: np.ndarray) -> list[int]:
        """Offset fixed-point integers of ``array``, row-major; out-of-range values raise."""
        integers = fixedpoint.to_integers(array, self.precision)
        low, high = -self._offset, self._offset - 1
        if integers and not (low <= min(integers) and max(integers) <= high):
            lo, hi = self.value_range
            raise EncodingOverflowError(f"packed values must lie in [{lo:.6g}, {hi:.6g}] at precision {self.precision}")
        return [m + self._offset for m in integers]


def encrypt_packed(
    public_key: PaillierPublicKey, values: Any, *, precision: int = DEFAULT_PACKING_PRECISION, value_bits: int = DEFAULT_VALUE_BITS
) -> CipherArray:
    """A float vector, as many values per ciphertext as fit (``Packer.capacity``)."""
    packer = Packer(public_key, precision=precision, value_bits=value_bits)
    return packer.encrypt(np.asarray(values).reshape(-1, 1), groups=packer.capacity)


def decrypt_packed(
    private_key: PaillierPrivateKey, cipher: CipherArray, size: int, *, precision: int = DEFAULT_PACKING_PRECISION, value_bits: int = DEFAULT_VALUE_BITS
) -> np.ndarray:
    """The first ``size`` values of an :func:`encrypt_packed` array, as a flat float64 vector."""
    packer = Packer(private_key.public_key, precision=precision, value_bits=value_bits)
    return packer.decrypt(private_key, cipher, slots=1, groups=packer.capacity, count=size).ravel()


def _as_rows(values: Any) -> np.ndarray:
    array = fixedpoint.as_array(values)
    if array.ndim != 2:
        raise ValueError(f"packed values must be a 2-D (count, slots) array, got shape {array.shape}")
    return array
