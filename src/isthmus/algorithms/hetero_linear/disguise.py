"""How a batch's scores reach the arbiter for the exact residual (``residual: sigmoid``) without their order.

Per batch the guest draws a fresh secret order: the rows shuffled and, for a softmax model, each row's
classes too (the first becomes the row's reference, and the arbiter gets the gaps to it, softmax.py). It
tells the hosts that order with the batch order, and every party sends its own part of the disguised
scores, packed many per ciphertext; the guest adds them up and the arbiter decrypts only the sum. The
hosts learn nothing from the order (it is random and says nothing about the data); the arbiter, which
must not know it, is never told.

Why every party packs its own part rather than the guest packing the summed ciphertexts: packing values
already encrypted shifts each one by a slot (~50 modular squarings at 4096 bits per value), which took as
long as the rest of a 2048-bit epoch, all of it on the guest's critical path; a party packing its own
plaintexts encrypts one ciphertext per ~50 values (2048-bit keys).
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass

import numpy as np

from isthmus.errors import DataError, EncodingOverflowError, ProtocolError
from isthmus.protocols.inspect import Inspect

#: Largest |partial score| a party may contribute; beyond it packing could carry into a neighbour slot.
PART_BOUND = 2.0**16
#: Fractional bits of the disguised scores: sigmoid(z) moves by at most 2.4e-7 for z off by 2**-20 ~ 1e-6,
#: and narrower slots mean fewer ciphertexts for the arbiter to decrypt (52 scores each at 2048 bits with three parties, not 40).
REQUEST_PRECISION = 20


@dataclass(frozen=True)
class Disguise:
    """One batch's secret order: ``picked[j]`` is the position, in the flat (rows x classes) scores, of the
    j-th disguised value; a disguised row's positions all come from one row of the batch."""

    picked: np.ndarray
    classes: int

    @classmethod
    def draw(cls, rows: int, classes: int) -> Disguise:
        """A fresh order of ``rows`` (and of each row's ``classes``) from the OS's secret randomness."""
        row_order = secret_permutation(rows)
        if classes == 1:
            return cls(row_order, 1)
        return cls((row_order[:, None] * classes + secret_row_permutations(rows, classes)).ravel(), classes)

    @classmethod
    def received(cls, obj, rows: int, classes: int, check: Inspect) -> Disguise:
        """The guest's order for a batch of ``rows``, refused unless it is one (a host packs what it says)."""
        size = rows * classes
        picked = check.indices(obj, size, size=size, what="disguise")
        source_rows = picked.reshape(rows, classes) // classes
        if not (np.array_equal(np.sort(picked), np.arange(size)) and (source_rows == source_rows[:, :1]).all()):
            check.fail("the disguise must order the batch's rows and each row's classes, every value once")
        return cls(picked, classes)

    def packed_size(self, public_key, parties: int) -> int:
        """How many ciphertexts hold one party's :meth:`pack` (values, in plaintext mode)."""
        return packed_size(public_key, len(self.picked) // self.classes, self.classes, parties)

    def apply(self, values):
        """What the arbiter is to see of the flat (rows x classes) ``values``: shuffled scores, or every
        disguised row's gaps to its reference."""
        disguised = values[self.picked]
        if self.classes == 1:
            return disguised
        by_row = disguised.reshape(-1, self.classes)
        return (by_row[:, 1:] - by_row[:, :1]).ravel()

    def restore(self, values):
        """Values in the disguised order (one per row and class) back in the batch's order."""
        inverse = np.empty_like(self.picked)
        inverse[self.picked] = np.arange(len(self.picked))
        return values[inverse]

    def references(self) -> np.ndarray:
        """One-hot (rows x classes): each row's reference class."""
        reference = np.zeros(len(self.picked))
        reference[self.picked.reshape(-1, self.classes)[:, 0]] = 1.0
        return reference.reshape(-1, self.classes)

    def pack(self, public_key, values, parties: int):
        """This party's part of the arbiter's request: ``apply(values)`` packed (as is in plaintext mode)."""
        disguised = self.apply(np.asarray(values, dtype=np.float64))
        if public_key is None:
            return disguised
        packer = score_packer(public_key, self.classes, parties)
        return packer.encrypt(disguised[:, None], groups=packer.capacity)


def request_size(rows: int, classes: int) -> int:
    """Values the arbiter decrypts for a batch of ``rows``: a score per row, or ``classes - 1`` gaps."""
    return rows * max(classes - 1, 1)


def packed_size(public_key, rows: int, classes: int, parties: int) -> int:
    """Ciphertexts of one party's part of the request for a batch of ``rows`` (values, in plaintext mode)."""
    size = request_size(rows, classes)
    if public_key is None:
        return size
    return -(-size // score_packer(public_key, classes, parties).capacity)


def part_bound(classes: int) -> float:
    """Largest |value| one party packs: a partial score, or (softmax) a gap between two of them."""
    return PART_BOUND if classes == 1 else 2 * PART_BOUND


def score_packer(public_key, classes: int, parties: int):
    """Slots for the sum of ``parties`` values each below :func:`part_bound`."""
    from isthmus.crypto.packing import Packer

    integer_bits = math.ceil(math.log2(part_bound(classes))) + 1
    return Packer(public_key, precision=REQUEST_PRECISION, value_bits=REQUEST_PRECISION + integer_bits,
                  max_addends=parties)


def unpack_at_arbiter(check: Inspect, payload, public_key, private_key, rows: int, classes: int,
                      parties: int) -> np.ndarray:
    """The values of the summed parts of every party for a batch of ``rows`` (:func:`request_size`), refused
    unless the payload holds exactly that many."""
    size = request_size(rows, classes)
    if public_key is None:
        return check.array(payload, (size,))
    packer = score_packer(public_key, classes, parties)
    packed = check.cipher(payload, public_key, size=packed_size(public_key, rows, classes, parties))
    try:
        return packer.decrypt(private_key, packed, slots=1, groups=packer.capacity, count=size,
                              addends=parties).ravel()
    except EncodingOverflowError:
        check.fail("the packed scores do not decode within the bound of every party's partial scores (some "
                   "party, the guest or a host, packed a value beyond it)")


def encrypted_reply(channel, arbiter: str, tag: str, public_key, size: int, fields: tuple[str, str]):
    """The arbiter's reply: ``size`` encrypted values and one finite float (the batch's loss term)."""
    values, total = fields
    check = Inspect(arbiter, tag)
    reply = check.mapping(channel.recv(arbiter, tag), set(fields))
    encrypted = check.cipher(reply[values], public_key, size=size)
    if not isinstance(reply[total], float) or not math.isfinite(reply[total]):
        raise ProtocolError(f"{total} sum must be a finite float", peer=arbiter, tag=tag)
    return encrypted, reply[total]


def check_partial_scores(scores: np.ndarray, party: str) -> None:
    worst = float(np.max(np.abs(scores))) if scores.size else 0.0
    if worst >= PART_BOUND:
        raise DataError(f"party {party!r}: a partial score of {worst:.3g} exceeds {PART_BOUND:g}; "
                        "scale the features or use residual: taylor")


def secret_permutation(size: int) -> np.ndarray:
    """A uniformly random permutation from the OS's secret randomness: the arbiter must not predict it,
    and numpy's generators are not meant for secrets."""
    order = list(range(size))
    random.SystemRandom().shuffle(order)
    return np.array(order, dtype=np.int64)


def secret_row_permutations(rows: int, classes: int) -> np.ndarray:
    """An independent uniformly random order of ``classes`` per row, from the OS's secret randomness: the
    ranks of 64-bit random keys (ties, of probability below classes^2 / 2^64, change nothing that matters)."""
    keys = np.frombuffer(os.urandom(8 * rows * classes), dtype=np.uint64).reshape(rows, classes)
    return np.argsort(keys, axis=1, kind="stable")
