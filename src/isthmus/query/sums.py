"""Summing sealed exposures under the asker's Paillier key, so that only the asker learns only the sum.

For one asked id the asker holds tags ``t_1..t_m`` (one per answering institution) and their pads;
the aggregator knows which tags match a published record and the sealed values ``s_t = value_t +
pad_t (mod 2**128)`` of those. The asker sends ``Enc(-pad_t)`` for every tag; the aggregator
computes, without learning any value,

    S = sum over matched t of (s_t - pad_t)  +  2**128 * (m + R),   R uniform in [0, 2**64)

homomorphically. Each ``s_t - pad_t`` is ``value_t`` or ``value_t - 2**128``, so ``S mod 2**128`` is
the sum of the values, while the random multiple ``R`` hides how many terms wrapped (which would
otherwise hint at which tags matched), up to a statistical distance of ``m / 2**64``; ``m`` keeps
``S`` non-negative.

Packing. Several ids share one ciphertext: id ``j`` owns the slot ``j % k`` of ciphertext ``j // k``
(``k`` slots of :func:`slot_bits` bits, the first slot most significant). The asker encrypts each
``-pad`` already shifted to its id's slot, so the aggregator only multiplies ciphertexts and adds one
plaintext per packed ciphertext: no exponentiation but the final re-randomisation, which stops the
asker from telling which of its ciphertexts took part.
"""

from __future__ import annotations

import secrets

import numpy as np
from gmpy2 import mpz

from isthmus.crypto.paillier import CipherArray, PaillierPrivateKey, PaillierPublicKey
from isthmus.query.records import PAD_BITS

STATISTICAL_BITS = 64
_ONE = mpz(1)  # the trivial encryption of zero


class SlotLayout:
    """Where each id's sum sits in the packed plaintexts of one answer."""

    def __init__(self, public_key: PaillierPublicKey, width: int):
        # S < 2**128 * (2 m + 2**64); a full plaintext stays below 2**(bits - 3) < n / 3, the
        # largest plaintext the fixed-point encoder adds.
        self.bits = PAD_BITS + max(STATISTICAL_BITS, (2 * width).bit_length()) + 1
        self.per_ciphertext = (public_key.bits - 3) // self.bits
        if self.per_ciphertext < 1:
            raise ValueError(f"a {public_key.bits}-bit key can not hold one {self.bits}-bit sum")

    def shift(self, row: int) -> int:
        return self.bits * (self.per_ciphertext - 1 - row % self.per_ciphertext)

    def ciphertexts(self, ids: int) -> int:
        return -(-ids // self.per_ciphertext)


def encrypt_unpads(public_key: PaillierPublicKey, pads: list[int], shape: tuple[int, int]) -> CipherArray:
    """The asker's ``Enc(-pad * 2**shift)`` per tag, in the (ids, width) shape of its tag matrix."""
    ids, width = shape
    layout = SlotLayout(public_key, width)
    shifted = [-(pad << layout.shift(index // width)) for index, pad in enumerate(pads)]
    return public_key.encrypt(np.array(shifted, dtype=object).reshape(shape), precision=0)


def add_up(unpads: CipherArray, matched: np.ndarray, sealed: np.ndarray) -> CipherArray:
    """The aggregator's packed, re-randomised sums; ``sealed`` holds s_t where matched (any value elsewhere)."""
    ids, width = matched.shape
    layout = SlotLayout(unpads.public_key, width)
    packed, per = layout.ciphertexts(ids), layout.per_ciphertext
    kept = [c if hit else _ONE for c, hit in zip(unpads.ciphertexts(), matched.ravel().tolist())]
    kept += [_ONE] * ((packed * per - ids) * width)
    chosen = CipherArray.from_ciphertexts(unpads.public_key, kept, (packed, per * width), 0).sum(axis=1)
    offsets = [0] * packed
    for row in range(ids):
        plain = sum(int(s) for s in sealed[row][matched[row]]) + ((width + secrets.randbits(STATISTICAL_BITS)) << PAD_BITS)
        offsets[row // per] += plain << layout.shift(row)
    return (chosen + np.array(offsets, dtype=object)).rerandomize()


def open_sums(private_key: PaillierPrivateKey, packed: CipherArray, ids: int, width: int) -> list[int]:
    """The asker's per-id sums modulo ``2**PAD_BITS`` (a count and an exposure, see :mod:`records`)."""
    layout = SlotLayout(private_key.public_key, width)
    if packed.shape != (layout.ciphertexts(ids),):
        raise ValueError(f"expected {layout.ciphertexts(ids)} packed sums for {ids} ids, got shape {packed.shape}")
    plaintexts = private_key.decrypt_raw(packed)
    return [(plaintexts[row // layout.per_ciphertext] >> layout.shift(row)) % (1 << PAD_BITS) for row in range(ids)]


def packed_count(public_key: PaillierPublicKey, ids: int, width: int) -> int:
    """How many ciphertexts the aggregator's answer for ``ids`` ids must hold."""
    return SlotLayout(public_key, width).ciphertexts(ids)
