"""Products of many powers, ``prod_i b_i ** e_i mod m``, by the bucket method (Pippenger).

Why by hand: this is ``X.T @ [[d]]``, the step that dominates vertical training, and gmpy2 offers
only one ``powmod`` per product. The bucket method cuts exponents into w-bit digits; for each digit
position every base is multiplied into the bucket of its digit (one multiplication per base), and
the buckets ``B_k`` are folded into ``prod_k B_k ** k`` with two running products (two multiplications
per bucket). For short fixed-point exponents (16-20 bits) and thousands of bases this costs about
``ceil(bits / w)`` multiplications per base instead of ``bits`` squarings plus multiplications for
separate ``powmod`` calls. Negative exponents go to a second set of buckets; their product is
inverted once per output.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import gmpy2
from gmpy2 import mpz

from isthmus.crypto import bigints, parallel

_MAX_WINDOW = 16
#: Below these amounts of work, handing it to other cores costs more than it saves.
PARALLEL_MIN_PRODUCTS = 20_000
PARALLEL_MIN_POWERS = 512


def matrix_products_of_powers(bases: Sequence[mpz], exponent_rows: Sequence[Sequence[int]], modulus: mpz) -> list[mpz]:
    """``[product_of_powers(bases, row, modulus) for row in exponent_rows]``; big jobs split the bases over cores."""
    big = len(bases) * len(exponent_rows) >= PARALLEL_MIN_PRODUCTS
    parts = parallel.chunks(len(bases), parallel.workers() if big else 1)
    if len(parts) <= 1:
        return [product_of_powers(bases, row, modulus) for row in exponent_rows]
    width = bigints.byte_width(modulus)
    tasks = [
        (int(modulus), bigints.to_bytes(bases[part.start : part.stop], width), [row[part.start : part.stop] for row in exponent_rows])
        for part in parts
    ]
    partials = [bigints.from_bytes(data, width) for data in parallel.in_processes(_partial_products_bytes, tasks)]
    return [functools.reduce(lambda a, b: a * b % modulus, column) for column in zip(*partials)]


def powers(bases: Sequence[mpz], exponents: Sequence[int], modulus: mpz) -> list[mpz]:
    """``[b ** e mod modulus]`` element by element (negative e: inverse); big jobs over cores."""
    parts = parallel.chunks(len(bases), parallel.workers() if len(bases) >= PARALLEL_MIN_POWERS else 1)
    if len(parts) <= 1:
        return [gmpy2.powmod(b, e, modulus) for b, e in zip(bases, exponents)]
    width = bigints.byte_width(modulus)
    tasks = [(int(modulus), bigints.to_bytes(bases[p.start : p.stop], width), list(exponents[p.start : p.stop])) for p in parts]
    return [x for data in parallel.in_processes(_powers_bytes, tasks) for x in bigints.from_bytes(data, width)]


def product_of_powers(bases: Sequence[mpz], exponents: Sequence[int], modulus: mpz) -> mpz:
    """``prod(b ** e for b, e in zip(bases, exponents)) mod modulus``; exponents may be negative."""
    if len(bases) != len(exponents):
        raise ValueError(f"{len(bases)} bases but {len(exponents)} exponents")
    bits = max((abs(e).bit_length() for e in exponents), default=0)
    if bits == 0:
        return mpz(1)
    window = best_window(len(bases), bits)
    mask = (1 << window) - 1
    positive = negative = None
    for shift in range((bits - 1) // window * window, -1, -window):
        if positive is not None:
            positive = gmpy2.powmod(positive, 1 << window, modulus)
        if negative is not None:
            negative = gmpy2.powmod(negative, 1 << window, modulus)
        buckets: list[mpz | None] = [None] * (2 << window)  # [positive digits | negative digits]
        for base, exponent in zip(bases, exponents):
            digit = (abs(exponent) >> shift) & mask
            if digit:
                slot = digit if exponent > 0 else digit + mask + 1
                held = buckets[slot]
                buckets[slot] = base if held is None else held * base % modulus
        positive = _times(positive, _fold(buckets[1 : mask + 1], modulus), modulus)
        negative = _times(negative, _fold(buckets[mask + 2 :], modulus), modulus)
    result = positive if positive is not None else mpz(1)
    return result if negative is None else result * gmpy2.invert(negative, modulus) % modulus


def inverses(values: Sequence[mpz], modulus: mpz) -> list[mpz]:
    """Modular inverses of all ``values`` with one ``invert`` and three products each (Montgomery's trick).

    Why: one ``gmpy2.invert`` of a 4096-bit number costs about seven modular products.
    """
    prefix = [mpz(1)]
    for value in values:
        prefix.append(prefix[-1] * value % modulus)
    inverse = gmpy2.invert(prefix[-1], modulus)  # ZeroDivisionError if some value shares a factor with modulus
    result = [mpz(0)] * len(values)
    for i in range(len(values) - 1, -1, -1):
        result[i] = inverse * prefix[i] % modulus
        inverse = inverse * values[i] % modulus
    return result


def best_window(count: int, bits: int) -> int:
    """Digit width minimising (one multiplication per base + folding 2**w buckets) per digit position."""
    def cost(window: int) -> int:
        return -(-bits // window) * (count + 4 * (1 << window))

    return min(range(1, min(bits, _MAX_WINDOW) + 1), key=cost)


def _fold(buckets: list[mpz | None], modulus: mpz) -> mpz | None:
    """``prod_k buckets[k-1] ** k`` with running products, from the highest digit down."""
    running = total = None
    for bucket in reversed(buckets):
        if bucket is not None:
            running = _times(running, bucket, modulus)
        if running is not None:
            total = _times(total, running, modulus)
    return total


def _times(a: mpz | None, b: mpz | None, modulus: mpz) -> mpz | None:
    """Product where None is the empty product (saves multiplying by 1)."""
    if a is None:
        return b
    if b is None:
        return a
    return a * b % modulus


def _partial_products_bytes(modulus: int, bases: bytes, exponent_rows: list[list[int]]) -> bytes:
    """Worker-process side of :func:`matrix_products_of_powers`: one slice of the bases, every row."""
    modulus = mpz(modulus)
    width = bigints.byte_width(modulus)
    chunk = bigints.from_bytes(bases, width)
    return bigints.to_bytes([product_of_powers(chunk, row, modulus) for row in exponent_rows], width)


def _powers_bytes(modulus: int, bases: bytes, exponents: list[int]) -> bytes:
    """Worker-process side of :func:`powers`."""
    width = bigints.byte_width(modulus)
    return bigints.to_bytes(powers(bigints.from_bytes(bases, width), exponents, mpz(modulus)), width)
