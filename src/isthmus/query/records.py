"""What a lender publishes to the aggregator for one customer: a pseudonym and a sealed exposure.

From the OPRF output ``F_k(id)`` (64 bytes, see :mod:`isthmus.crypto.oprf`) come a 16-byte *tag*, the
pseudonym the aggregator indexes, and a 128-bit *pad*. The record holds
``sealed = (value + pad) mod 2**128`` with ``value = 1 + exposure * 2**32`` (an active-loan count
and the exposure in one integer, so that one sum yields both). The pad is a one-time pad only
someone who knows ``F_k(id)`` can remove: the aggregator, which sees tags and sealed values, learns
neither exposures nor ids; an asker who obtained ``F_k(id)`` through the OPRF can remove the pad,
but only inside a homomorphic sum (:mod:`isthmus.query.sums`).
"""

from __future__ import annotations

from collections.abc import Sequence

TAG_BYTES = 16
SEALED_BYTES = 16
RECORD_BYTES = TAG_BYTES + SEALED_BYTES
PAD_BITS = 8 * SEALED_BYTES
COUNT_BITS = 32
_PAD_MODULUS = 1 << PAD_BITS


def tag_and_pad(output: bytes) -> tuple[bytes, int]:
    """Split one OPRF output into the pseudonym and the pad (independent halves of a hash)."""
    return output[:TAG_BYTES], int.from_bytes(output[TAG_BYTES : TAG_BYTES + SEALED_BYTES], "big")


def exposure_value(exposure: int) -> int:
    return 1 + (exposure << COUNT_BITS)


def seal(outputs: Sequence[bytes], exposures: Sequence[int]) -> list[bytes]:
    """One 32-byte record (tag, sealed value) per customer."""
    records = []
    for output, exposure in zip(outputs, exposures, strict=True):
        tag, pad = tag_and_pad(output)
        records.append(tag + ((exposure_value(exposure) + pad) % _PAD_MODULUS).to_bytes(SEALED_BYTES, "big"))
    return records


def total_of(value: int) -> tuple[int, int]:
    """(number of active loans, total exposure) from a sum of values modulo ``2**PAD_BITS``."""
    value %= _PAD_MODULUS
    return value & ((1 << COUNT_BITS) - 1), value >> COUNT_BITS
