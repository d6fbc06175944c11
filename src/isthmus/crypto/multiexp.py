"""Products of many powers, ``prod_i b_i ** e_i mod m``, by the bucket method (Pippenger).

Why by hand: this is ``X.T @ [[d]]``, the step that dominates vertical training, and gmpy2 offers
only one ``powmod`` per product. The bucket method cuts exponents into w-bit digits; for each digit
position every base is multiplied into the bucket of its digit (one multiplication per base), and
the buckets ``B_k`` are folded into ``prod_k B_k ** k`` with two running products (two multiplications
per bucket). For short fixed-point exponents (16-20 bits) and thousands of bases this costs about
``ceil(bits / w)`` multiplications per base instead of ``bits`` squarings plus multiplications for
separate ``powmod`` calls.

Digits are signed, in ``[-2**(w-1), 2**(w-1))``: the sign of an exponent then costs nothing, and
folding needs 2**(w-1) buckets per sign instead of 2**w, so a window one bit wider fits the same
budget. Negative digits go to their own buckets, whose product is inverted once per output. Digits
are computed with numpy for whole exponent matrices at once; only the multiplications run in Python.

Many outputs over the same few bases (``X @ [[w]]``: a row per output, a column per feature) take
another route: per base and digit position a table of all digit powers, after which each output costs
one multiplication per base and position, and the tables are shared by every output (fixed-base
windows, as in :mod:`isthmus.crypto.fixedbase`). :func:`matrix_products_of_powers` picks whichever
costs fewer multiplications; with at most ``FEW_BASES`` bases it uses one table of all subset products
instead (:func:`few_bases_products`: one squaring and at most one multiplication per exponent bit).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz

from isthmus.crypto import bigints, parallel

_MAX_WINDOW = 16
#: Largest table of :func:`_shared_base_products`, in residues (32 MiB of 4096-bit ones).
_TABLE_ENTRIES = 1 << 16
#: Up to this many bases, many exponent rows share one table of subset products (few_bases_products).
FEW_BASES = 8
_INT64_SAFE = 1 << 62
#: Below these amounts of work, handing it to other cores costs more than it saves.
PARALLEL_MIN_PRODUCTS = 20_000
PARALLEL_MIN_POWERS = 512

Exponents = np.ndarray | Sequence[Sequence[int]]


def matrix_products_of_powers(bases: Sequence[mpz], exponents: Exponents, modulus: mpz) -> list[mpz]:
    """``[product_of_powers(bases, row, modulus) for row in exponents]`` for a (k, n) integer matrix.

    Big jobs go to worker processes: by output rows when there are enough of them (each worker
    keeps all n bases, so its buckets stay as full as in one process), else by slices of the bases.
    On a cluster always by slices of the bases (for ``X.T @ [[d]]``: row blocks of the batch, whose
    products the driver multiplies): a task then carries only its block, however many outputs.
    """
    matrix = _exponent_matrix(exponents, len(bases))
    outputs, count = matrix.shape
    if 0 < count <= FEW_BASES and matrix.dtype == np.int64 and outputs << 4 >= 1 << count:
        return few_bases_products(bases, matrix, modulus)
    workers = parallel.processes() if outputs * count >= PARALLEL_MIN_PRODUCTS else 1
    if workers == 1 or count == 0:
        return _products(bases, matrix, modulus)
    width = bigints.byte_width(modulus)
    if outputs >= workers and parallel.cluster() is None:
        packed = bigints.to_bytes(bases, width)
        # twice as many tasks as workers: a worker slowed by other load hands its share to the other
        parts = parallel.chunks(outputs, 2 * workers)
        tasks = [(int(modulus), packed, matrix[part.start : part.stop]) for part in parts]
        return [x for data in parallel.in_processes(_products_bytes, tasks) for x in bigints.from_bytes(data, width)]
    tasks = [
        (int(modulus), bigints.to_bytes(bases[part.start : part.stop], width), matrix[:, part.start : part.stop])
        for part in parallel.chunks(count, workers)
    ]
    partials = [bigints.from_bytes(data, width) for data in parallel.in_processes(_products_bytes, tasks)]
    return [functools.reduce(lambda a, b: a * b % modulus, column) for column in zip(*partials)]


def few_bases_products(bases: Sequence[mpz], exponents: np.ndarray, modulus: mpz) -> list[mpz]:
    """``matrix_products_of_powers`` for a handful of bases and many int64 exponent rows, by a table of
    all ``2**k`` products of subsets of the bases (Straus' simultaneous exponentiation).

    Why: with k bases each output then costs one squaring and one product per exponent bit (about 36
    for 17-bit exponents), where buckets cost ~130 at k = 8. Signs are handled once for the whole
    matrix: every exponent is offset by ``2**bits`` to make it non-negative, and the outputs are
    multiplied by ``(prod b)**-(2**bits)``, one inversion in all.
    """
    outputs, count = exponents.shape
    bits = max(int(np.abs(exponents).max(initial=0)).bit_length(), 1)
    shifted = exponents + (1 << bits)  # in (0, 2**(bits + 1))
    table = [mpz(1)]
    for base in bases:  # table[s] = product of the bases whose bits are set in s
        table += [t * base % modulus for t in table]
    correction = gmpy2.invert(gmpy2.powmod(table[-1], 1 << bits, modulus), modulus)
    weights = np.int64(1) << np.arange(count, dtype=np.int64)
    # subsets[i, t]: the bases whose exponent has bit (bits - t) set, top bit first
    subsets = np.stack([((shifted >> t) & 1) @ weights for t in range(bits, -1, -1)], axis=1)
    results = []
    for row in subsets.tolist():
        acc = table[row[0]]
        for subset in row[1:]:
            acc = acc * acc % modulus
            if subset:
                acc = acc * table[subset] % modulus
        results.append(acc * correction % modulus)
    return results


def product_of_powers(bases: Sequence[mpz], exponents: Sequence[int], modulus: mpz) -> mpz:
    """``prod(b ** e for b, e in zip(bases, exponents)) mod modulus``; exponents may be negative."""
    return _product(bases, _exponent_matrix([exponents], len(bases))[0], modulus)


def row_products_of_powers(bases: Sequence[mpz], exponents: np.ndarray, modulus: mpz) -> list[mpz]:
    """``prod_j bases[i * c + j] ** exponents[i, j]`` for each row i of a (k, c) integer matrix: every
    output over its own c bases (the flat, row-major ``bases``). Big jobs go to worker processes by rows."""
    matrix = np.asarray(exponents)
    outputs, count = matrix.shape
    if len(bases) != outputs * count:
        raise ValueError(f"{len(bases)} bases for a {matrix.shape} exponent matrix")
    parts = parallel.chunks(outputs, parallel.processes() if outputs * count >= PARALLEL_MIN_PRODUCTS else 1)
    if len(parts) <= 1:
        return _row_products(bases, matrix, modulus)
    width = bigints.byte_width(modulus)
    tasks = [(int(modulus), bigints.to_bytes(bases[p.start * count:p.stop * count], width), matrix[p.start:p.stop])
             for p in parts]
    return [x for data in parallel.in_processes(_row_products_bytes, tasks) for x in bigints.from_bytes(data, width)]


def powers(bases: Sequence[mpz], exponents: Sequence[int], modulus: mpz) -> list[mpz]:
    """``[b ** e mod modulus]`` element by element (negative e: inverse); big jobs over cores."""
    parts = parallel.chunks(len(bases), parallel.processes() if len(bases) >= PARALLEL_MIN_POWERS else 1)
    if len(parts) <= 1:
        return _powers(bases, exponents, modulus)
    width = bigints.byte_width(modulus)
    tasks = [(int(modulus), bigints.to_bytes(bases[p.start : p.stop], width), list(exponents[p.start : p.stop])) for p in parts]
    return [x for data in parallel.in_processes(_powers_bytes, tasks) for x in bigints.from_bytes(data, width)]


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
    """Digit width minimising (one multiplication per base + folding 2**w buckets) per digit position.

    Signed digits of w bits cover a ``bits``-bit magnitude in ``ceil((bits + 1) / w)`` positions;
    w is at least 2 (1-bit signed digits, {-1, 0}, cannot express a positive exponent).
    """
    def cost(window: int) -> int:
        return -(-(bits + 1) // window) * (count + 2 * (1 << window))

    return min(range(2, min(bits + 1, _MAX_WINDOW) + 1), key=cost)


def signed_digits(exponents: np.ndarray, window: int) -> list[np.ndarray]:
    """Digits ``d_k`` in ``[-2**(w-1), 2**(w-1))``, lowest first, with ``sum_k d_k 2**(w k) = e`` (w >= 2)."""
    if window < 2:
        raise ValueError(f"signed digits need a window of at least 2 bits, got {window}")
    half, low_bits = 1 << (window - 1), (1 << window) - 1
    digits, rest = [], exponents
    while rest.any():
        digit = ((rest + half) & low_bits) - half
        digits.append(digit)
        rest = (rest - digit) >> window
    return digits


def _product(bases: Sequence[mpz], exponents: np.ndarray, modulus: mpz) -> mpz:
    """One output: signed-digit buckets per position, folded, positions combined from the top (Horner)."""
    bits = max(int(exponents.max(initial=0)).bit_length(), int((-exponents).max(initial=0)).bit_length())
    if bits == 0:
        return mpz(1)
    window = best_window(len(bases), bits)
    half = 1 << (window - 1)
    positive = negative = None
    for digits in reversed(signed_digits(exponents, window)):
        if positive is not None:
            positive = gmpy2.powmod(positive, 1 << window, modulus)
        if negative is not None:
            negative = gmpy2.powmod(negative, 1 << window, modulus)
        used = np.flatnonzero(digits)
        buckets: list[mpz | None] = [None] * (2 * half + 1)  # index digit + half: negatives below half
        for i, slot in zip(used.tolist(), (digits[used] + half).tolist()):
            held = buckets[slot]
            buckets[slot] = bases[i] if held is None else held * bases[i] % modulus
        positive = _times(positive, _fold(buckets[half + 1 :], modulus), modulus)
        negative = _times(negative, _fold(buckets[half - 1 :: -1], modulus), modulus)
    result = positive if positive is not None else mpz(1)
    return result if negative is None else result * gmpy2.invert(negative, modulus) % modulus


def _products(bases: Sequence[mpz], matrix: np.ndarray, modulus: mpz) -> list[mpz]:
    """All rows of ``matrix`` over the same ``bases``: one bucket product per row, or shared tables when
    there are enough rows to repay them (cost model in multiplications, as :func:`best_window`)."""
    outputs, count = matrix.shape
    bits = max(int(matrix.max()).bit_length(), int((-matrix).max()).bit_length()) if matrix.size else 0
    if outputs < 2 or bits == 0:
        return [_product(bases, row, modulus) for row in matrix]
    window = best_window(count, bits)
    bucket = -(-(bits + 1) // window) * (count + 2 * (1 << window)) * outputs
    table_window, table = _table_window(outputs, count, bits + 1)
    if table >= bucket:
        return [_product(bases, row, modulus) for row in matrix]
    return _shared_base_products(bases, matrix, modulus, table_window)


def _table_window(outputs: int, count: int, bits: int) -> tuple[int, int]:
    """Digit width of :func:`_shared_base_products` minimising building the tables plus one product per
    base, position and output, within ``_TABLE_ENTRIES``; and that cost."""
    def cost(window: int) -> int:
        return count * -(-bits // window) * ((1 << window) + outputs)

    fits = [w for w in range(1, _MAX_WINDOW + 1) if count * -(-bits // w) << w <= _TABLE_ENTRIES] or [1]
    window = min(fits, key=cost)
    return window, cost(window)


def _shared_base_products(bases: Sequence[mpz], matrix: np.ndarray, modulus: mpz, window: int) -> list[mpz]:
    """Rows of exponents over the same bases by per-base tables ``table[j, t][d] = b_j ** (d 2**(w t))``.

    Exponents are shifted to be non-negative (``e - low`` for the smallest ``low <= 0``), so the tables
    hold positive powers only; the shift comes back as one factor ``(prod_j b_j) ** low`` shared by all rows.
    """
    count = len(bases)
    low = min(int(matrix.min()), 0)
    shifted = matrix - low
    bits = max(int(shifted.max()).bit_length(), 1)
    positions, size = -(-bits // window), 1 << window
    table: list[mpz] = []
    for base in bases:
        power = mpz(base)
        for _ in range(positions):
            row = [mpz(1), power]
            for _ in range(size - 2):
                row.append(row[-1] * power % modulus)
            table.extend(row)
            power = row[-1] * power % modulus  # base ** (2**(w (t + 1)))
    # flat table index of every (output, base, position): ((j * positions + t) << w) + digit, 0 for digit 0
    offsets = (np.arange(count * positions, dtype=object if shifted.dtype == object else np.int64) << window)
    digits = np.stack([(shifted >> (window * t)) & (size - 1) for t in range(positions)], axis=2).reshape(len(matrix), -1)
    indices = np.where(digits != 0, digits + offsets, 0).tolist()
    shift = mpz(1)
    if low:
        total = functools.reduce(lambda a, b: a * b % modulus, bases, mpz(1))
        shift = gmpy2.invert(gmpy2.powmod(total, -low, modulus), modulus)
    results = []
    for row in indices:
        result = shift
        for index in row:
            if index:
                result = result * table[index] % modulus
        results.append(result)
    return results


def _exponent_matrix(exponents: Exponents, count: int) -> np.ndarray:
    """A (k, count) integer array: int64 while every |e| < 2**62 (digit arithmetic cannot overflow),
    else exact Python ints in an object array (numpy's object loops use Python's operators)."""
    if isinstance(exponents, np.ndarray):
        matrix = exponents
    else:
        matrix = np.empty((len(exponents), count), dtype=object)
        for i, row in enumerate(exponents):
            if len(row) != count:
                raise ValueError(f"{count} bases but {len(row)} exponents")
            matrix[i, :] = [int(e) for e in row]
    if matrix.ndim != 2 or matrix.shape[1] != count or matrix.dtype.kind not in "iuO":
        raise ValueError(f"expected a 2-D integer exponent matrix with {count} columns, got shape {matrix.shape}")
    if matrix.size == 0 or (-_INT64_SAFE < int(matrix.min()) and int(matrix.max()) < _INT64_SAFE):
        return matrix.astype(np.int64, copy=False)
    return matrix.astype(object, copy=False)


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


def _products_bytes(modulus: int, bases: bytes, exponents: np.ndarray) -> bytes:
    """Worker-process side of :func:`matrix_products_of_powers`: some bases, some exponent rows."""
    modulus = mpz(modulus)
    width = bigints.byte_width(modulus)
    return bigints.to_bytes(_products(bigints.from_bytes(bases, width), exponents, modulus), width)


def _row_products(bases: Sequence[mpz], matrix: np.ndarray, modulus: mpz) -> list[mpz]:
    count = matrix.shape[1]
    return [_product(bases[i * count:(i + 1) * count], row, modulus) for i, row in enumerate(matrix)]


def _row_products_bytes(modulus: int, bases: bytes, exponents: np.ndarray) -> bytes:
    """Worker-process side of :func:`row_products_of_powers`."""
    modulus = mpz(modulus)
    width = bigints.byte_width(modulus)
    return bigints.to_bytes(_row_products(bigints.from_bytes(bases, width), exponents, modulus), width)


def _powers_bytes(modulus: int, bases: bytes, exponents: list[int]) -> bytes:
    """Worker-process side of :func:`powers`."""
    width = bigints.byte_width(modulus)
    return bigints.to_bytes(_powers(bigints.from_bytes(bases, width), exponents, mpz(modulus)), width)


def _powers(bases: Sequence[mpz], exponents: Sequence[int], modulus: mpz) -> list[mpz]:
    """:func:`powers` in this process (a worker's share must not spread again)."""
    return [gmpy2.powmod(b, e, modulus) for b, e in zip(bases, exponents)]
