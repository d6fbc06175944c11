"""softmax(Z) - Y on shares, for hetero_lr_sshe with K >= 3 classes: nobody sees a score, a probability
or a residual; the guest and the lead host each end with a share of every row's K residuals.

Every step is either local (sums, public constants, the guest adding public constants) or a product of
two shared values (arith.py), followed by local truncation (shares.truncate). At FRACTION_BITS = 32
fractional bits and magnitudes below 2^3, a product before truncation is below 2^86, so a truncation
fails with probability below 2^(87 - 256) (shares.py) and is otherwise off by 2^-40.

1. shift: x_c = z_c - mean_j z_j, local (softmax does not change under a per-row shift; the mean is linear,
   a max would need comparisons). sum_c x_c = 0.
2. exp by a limit: exp(x) = exp(x / N)^N with N = 2^SQUARINGS. The base g = 1 + u + u^2/2 + u^3/6 at
   u = x / N (two products) is exp(u) to a relative u^4 / 24; after N powers, exp(x - x^4 / (24 N^3) + ...):
   at N = 64 and |x| = 10 (the largest shifted score of the pooled digits model, alpha 0.01) the log is
   off by 0.0016, at |x| = 32 (SPREAD, the stated range) by 0.17.
3. the powers by SQUARINGS squarings, each followed by a normalisation of the row: q <- q^2 / sum_c q_c^2.
   Why normalise every step: the row's sum stays near 1 (below, T = sum q^2 lies in [0.9 / K, 1.35]), so
   the reciprocal has a fixed, K-dependent range and a start point that needs no comparison; without it
   sum_c exp(x_c) spans [K, K e^32] and Newton would need ~50 iterations. A common factor of a row cancels
   at the next squaring and normalisation, so an inexact intermediate reciprocal costs nothing but range:
   only the last one must be accurate.
4. the reciprocal 1/T by Newton, r <- r (2 - T r), from the linear start r0 = c1 - c2 T that minimises
   the largest relative error |1 - T r0| on [lo, hi] (equal ripple; with rho = hi / lo, that error is
   1 - 8 rho / ((1 + rho)^2 + 4 rho)); the error squares every iteration. :func:`plan` counts the
   iterations: to MIDDLE_ERROR between squarings, to FINAL_ERROR after the last.

The start: q0 = g / K, whose row sums lie in [1, 1 + u^2 / 2 + |u|^3 / 6] since sum_c u_c = 0: at
|x| <= SPREAD that is [1, 1.15], and later rows sum to within MIDDLE_ERROR of 1, hence T's range.
Cost per batch of B rows: (2 + 2 SQUARINGS) B K products plus 2 B per Newton iteration. The float64 twin
(:func:`reference`) runs the same steps: the tests check the protocol against it and it against scipy.
"""

from __future__ import annotations

import numpy as np

from isthmus.algorithms.sshe_lr import arith, shares

FRACTION_BITS = 32
SQUARINGS = 6
LIMIT = 1 << SQUARINGS
#: The stated range of |z_c - mean_j z_j| (see the module docstring).
SPREAD = 32.0
MIDDLE_ERROR = 0.05
FINAL_ERROR = 2.0 ** -30
#: Fractional bits of the public constants multiplied into shares in arith.py's ring, and in shares.py's
#: (where the first one, 2^(FRACTION_BITS - z_bits) / (K LIMIT), may be as small as 2^-40).
CONSTANT_BITS, BIG_CONSTANT_BITS = 32, 96


def plan(classes: int) -> tuple[float, float, int, int]:
    """(c1, c2, iterations between squarings, iterations after the last) for 1/T, T in [0.9 / K, 1.35]."""
    lo, hi = 0.9 / classes, 1.35
    c2 = 8.0 / ((lo + hi) ** 2 + 4 * lo * hi)
    start = 1.0 - c2 * lo * hi

    def iterations(target: float) -> int:
        count, error = 0, start
        while error > target:
            count, error = count + 1, error * error
        return count

    return c2 * (lo + hi), c2, iterations(MIDDLE_ERROR), iterations(FINAL_ERROR)


def reference(Z: np.ndarray) -> np.ndarray:
    """The protocol's steps in float64 on the plain (rows x K) scores: what the shares add up to."""
    classes = Z.shape[1]
    u = (Z - Z.mean(axis=1, keepdims=True)) / LIMIT
    u2 = u * u
    q = (1.0 + u + u2 / 2 + u2 * u / 6) / classes
    c1, c2, middle, final = plan(classes)
    for step in range(SQUARINGS):
        q = q * q
        total = q.sum(axis=1)
        r = c1 - c2 * total
        for _ in range(final if step == SQUARINGS - 1 else middle):
            r = r * (2.0 - total * r)
        q = q * r[:, None]
    return q


def residual(side, z: list[int], classes: int, target: np.ndarray | None, z_bits: int, out_bits: int) -> list[int]:
    """My share of softmax(Z) - Y (row-major rows x ``classes``) at 2^out_bits, from my share of Z at
    2^z_bits; ``target`` (one-hot rows x classes) at the guest, None at the host. Both in Z_(2^256); the
    steps between run in arith.py's smaller ring."""
    first, bits, ring = side.first, FRACTION_BITS, arith.MODULUS
    one = (1 << bits) if first else 0

    def times(values: list[int], constant: float, modulus: int = ring) -> list[int]:
        """Times a public constant (CONSTANT_BITS fractional bits; in the big ring BIG_CONSTANT_BITS)."""
        point = CONSTANT_BITS if modulus == ring else BIG_CONSTANT_BITS
        factor = round(constant * 2.0 ** point)
        return shares.truncate([v * factor % modulus for v in values], point, first=first, modulus=modulus)

    def product(a: list[int], b: list[int] | None = None) -> list[int]:
        return shares.truncate(arith.multiply(side, a, b), bits, first=first, modulus=ring)

    rows = len(z) // classes
    spread = []
    for i in range(rows):
        row = z[i * classes:(i + 1) * classes]
        total = sum(row)
        spread.extend((classes * v - total) % shares.RING for v in row)  # K x_c
    u = arith.reduce(times(spread, 2.0 ** (bits - z_bits) / (classes * LIMIT), shares.RING))
    u2 = product(u)
    u3 = product(u2, u)
    g = shares.add(u, times(u2, 0.5), times(u3, 1.0 / 6.0), modulus=ring)
    q = times([(v + one) % ring for v in g], 1.0 / classes)
    c1, c2, middle, final = plan(classes)
    for step in range(SQUARINGS):
        q = product(q)
        total = [sum(q[i * classes:(i + 1) * classes]) % ring for i in range(rows)]
        r = [((round(c1 * 2.0 ** bits) if first else 0) - v) % ring for v in times(total, c2)]
        for _ in range(final if step == SQUARINGS - 1 else middle):
            r = product(r, [(((2 << bits) if first else 0) - v) % ring for v in product(total, r)])
        q = shares.truncate(arith.times_rows(side, q, r, classes), bits, first=first, modulus=ring)
    e = arith.lift(shares.truncate(q, bits - out_bits, first=first, modulus=ring), first=first)
    if target is not None:
        e = [(v - (int(t) << out_bits)) % shares.RING for v, t in zip(e, np.asarray(target).ravel(), strict=True)]
    return e
