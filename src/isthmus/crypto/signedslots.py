"""Signed fixed-point values packed several per Paillier plaintext, for products by signed scalars.

Why not :class:`isthmus.crypto.packing.Packer`: its offset encoding suits sums of stored values (each
slot's offset is counted back out), but a linear layer multiplies ciphertexts by signed weights, and
``x (v + offset)`` moves the offset by an amount the decoder does not know. Here a plaintext is one
signed integer whose base-``2**W`` signed digits are the slot values::

    P = v_0 + v_1 2**W + ... + v_(t-1) 2**(W (t-1)),   |v_s| < 2**(W-1)

so raising a ciphertext to a signed scalar x and multiplying ciphertexts scales and adds every slot
alike (SIMD), and because P is an ordinary integer the decoder recovers each v_s exactly whenever the
final values fit their slots, whatever the intermediate sums were. ``t W <= bits(n) - 1`` keeps
``|P| < n / 2``: the decoder reads the plaintext as a signed residue and peels the slots from the
lowest, each as the digit in ``[-2**(W-1), 2**(W-1))``. A non-zero remainder after the last slot
means a slot overflowed (or a peer packed something else): reported, never returned as values.

Layout: row r of a (rows, width) matrix fills ``chunks(width)`` plaintexts, columns
``c * capacity ... (c + 1) * capacity - 1`` in chunk c, the first column in the lowest slot; unused
slots of a row's last chunk are zero.
"""

from __future__ import annotations

import math

import numpy as np

from isthmus.crypto import fixedpoint
from isthmus.crypto.cipherarray import CipherArray
from isthmus.crypto.keys import PaillierPrivateKey, PaillierPublicKey
from isthmus.errors import EncodingOverflowError


class SignedSlots:
    """One slot width under one key: pack, encrypt and decode (rows, width) matrices of signed values."""

    def __init__(self, public_key: PaillierPublicKey, slot_bits: int):
        if slot_bits < 2:
            raise ValueError(f"a signed slot needs at least 2 bits, got {slot_bits}")
        self.public_key, self.slot_bits = public_key, slot_bits
        self.capacity = (public_key.bits - 1) // slot_bits
        if self.capacity == 0:
            raise EncodingOverflowError(f"a {slot_bits}-bit slot does not fit a {public_key.bits}-bit key's plaintext")

    @classmethod
    def for_values(cls, public_key: PaillierPublicKey, bound: float, exponent: int) -> SignedSlots:
        """Slots for values of magnitude below ``bound`` at ``exponent`` fractional bits (one bit of margin)."""
        return cls(public_key, exponent + max(0, math.ceil(math.log2(bound))) + 2)

    def __repr__(self) -> str:
        return f"SignedSlots(slot_bits={self.slot_bits}, capacity={self.capacity})"

    def chunks(self, width: int) -> int:
        """Plaintexts per row of ``width`` values."""
        return -(-width // self.capacity)

    # -- plaintext side ------------------------------------------------------------------------
    def pack_rows(self, integers: np.ndarray) -> np.ndarray:
        """Plaintexts in ``[0, n)``, shape (rows, chunks), of a (rows, width) matrix of signed integers."""
        rows, width = integers.shape
        limit, shift, n = 1 << (self.slot_bits - 1), self.slot_bits, int(self.public_key.n)
        values = integers.tolist()
        if any(not -limit < v < limit for row in values for v in row):
            raise EncodingOverflowError(f"a value does not fit a signed {self.slot_bits}-bit slot")
        packed = np.empty((rows, self.chunks(width)), dtype=object)
        for r, row in enumerate(values):
            for c in range(packed.shape[1]):
                total = 0
                for v in reversed(row[c * self.capacity:(c + 1) * self.capacity]):
                    total = (total << shift) + v
                packed[r, c] = total % n
        return packed

    def unpack_rows(self, plaintexts: np.ndarray, width: int) -> np.ndarray:
        """The (rows, width) signed integers of (rows, chunks(width)) plaintexts in ``[0, n)``."""
        rows, chunks = plaintexts.shape
        if chunks != self.chunks(width):
            raise ValueError(f"{width} values a row need {self.chunks(width)} plaintexts, got {chunks}")
        n, shift = int(self.public_key.n), self.slot_bits
        half, mask = 1 << (shift - 1), (1 << shift) - 1
        out = np.empty((rows, width), dtype=object)
        for r in range(rows):
            for c in range(chunks):
                m = int(plaintexts[r, c])
                rest = m if m <= n // 2 else m - n
                for column in range(c * self.capacity, min(width, (c + 1) * self.capacity)):
                    digit = ((rest + half) & mask) - half
                    out[r, column] = digit
                    rest = (rest - digit) >> shift
                if rest:
                    raise EncodingOverflowError("a packed slot overflowed, or a plaintext holds more than its slots")
        return out

    def decode_rows(self, plaintexts: np.ndarray, width: int, exponent: int) -> np.ndarray:
        """Float64 (rows, width) values of plaintexts whose slots are at ``exponent`` fractional bits."""
        integers = self.unpack_rows(plaintexts, width)
        return fixedpoint.decode(integers.ravel().tolist(), exponent, integers.shape)

    # -- ciphertext side -----------------------------------------------------------------------
    def encrypt_rows(self, values: np.ndarray, exponent: int) -> CipherArray:
        """Ciphertexts, shape (rows, chunks), of a float (rows, width) matrix at ``exponent`` fractional bits."""
        packed = self.pack_rows(fixedpoint.to_integer_array(fixedpoint.as_array(values), exponent))
        ciphertexts = self.public_key.encrypt_integers(packed.ravel().tolist())
        return CipherArray.from_ciphertexts(self.public_key, ciphertexts, packed.shape, exponent, fresh=True)

    def decrypt_rows(self, private_key: PaillierPrivateKey, cipher: CipherArray, width: int) -> np.ndarray:
        """Float64 (rows, width) values of a (rows, chunks) ciphertext array in this layout."""
        raw = np.array(private_key.decrypt_raw(cipher), dtype=object).reshape(cipher.shape)
        return self.decode_rows(raw, width, cipher.exponent)
