"""Big integers as fixed-width big-endian bytes: the wire form of ciphertexts and what crosses to worker processes."""

from __future__ import annotations

from collections.abc import Sequence

from gmpy2 import mpz


def byte_width(bound: int) -> int:
    """Bytes that hold every integer below ``bound``."""
    return (int(bound).bit_length() + 7) // 8


def to_bytes(integers: Sequence[int], width: int) -> bytes:
    return b"".join(mpz(x).to_bytes(width, "big") for x in integers)


def from_bytes(data: bytes, width: int) -> list[mpz]:
    return [mpz.from_bytes(data[i : i + width], "big") for i in range(0, len(data), width)]
