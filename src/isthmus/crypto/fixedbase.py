"""Powers of one fixed base for many random exponents, by a precomputed table (fixed-base comb, byte windows).

Why by hand: gmpy2 has no fixed-base exponentiation, and Paillier encryption raises the same base to a
fresh random exponent for every ciphertext. With ``table[i][d] = base ** (d * 256**i)`` a power costs
one modular multiplication per exponent byte (31 for a 256-bit exponent) instead of ~300 for
``powmod``. Random exponents are drawn as bytes from the OS, which are already the table's digits.
"""

from __future__ import annotations

import os

from gmpy2 import mpz


class FixedBasePowers:
    """``base ** e mod modulus`` for uniformly random ``e`` of ``exponent_bytes`` bytes."""

    def __init__(self, base: mpz, modulus: mpz, exponent_bytes: int):
        self.modulus = modulus
        self.exponent_bytes = exponent_bytes
        self._table = self._build(base, modulus, exponent_bytes)

    @staticmethod
    def _build(base: mpz, modulus: mpz, exponent_bytes: int) -> list[list[mpz]]:
        table = []
        row_base = base
        for _ in range(exponent_bytes):
            row = [mpz(1), row_base]
            for _ in range(254):
                row.append(row[-1] * row_base % modulus)
            table.append(row)
            row_base = row[-1] * row_base % modulus  # base ** (256 ** (i + 1))
        return table

    def power(self, digits: bytes) -> mpz:
        """``base ** int.from_bytes(digits, 'little') mod modulus``."""
        modulus = self.modulus
        result = None
        for row, digit in zip(self._table, digits):
            if digit:
                result = row[digit] if result is None else result * row[digit] % modulus
        return mpz(1) if result is None else result

    def random_powers(self, count: int) -> list[mpz]:
        """``count`` powers with independent exponents uniform in ``[0, 256 ** exponent_bytes)``."""
        width = self.exponent_bytes
        randomness = os.urandom(width * count)
        return [self.power(randomness[i : i + width]) for i in range(0, width * count, width)]

