"""Exact discrete Gaussian noise on the integers (Canonne, Kamath & Steinke 2020, "CKS20"), vectorised.

Why not floating-point Gaussian noise: secure aggregation sums integers (fixed point in Z_2^64), so
noise on that lattice is what the sum carries exactly, and sampling it from uniform integers only
leaves no floating-point artefact for an observer to exploit (Mironov 2012 showed the low bits of
floating-point Laplace samples leak the value they hide). The privacy of the discrete Gaussian is
that of the continuous one with the same sigma (CKS20, Theorems 4 and 14), so the accounting does
not change (see :mod:`isthmus.horizontal.dp`).

The sampler is CKS20's Algorithm 3: discrete Laplace proposals (their Algorithm 2) accepted with
probability exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2)), and every Bernoulli(exp(-gamma)) drawn by their
Algorithm 1 from uniform integers. It is written here because no maintained library samples it both
exactly and fast: OpenDP's exact sampler costs 25 us a value (2.5 s for a 100,000-parameter update).
Here every step runs on whole arrays of pending samples; a loop ends when the last sample of the batch
is decided, and batches shrink geometrically.

We take t = floor(sigma) + 1 and round sigma^2 up to t * m for an integer m: then sigma^2 / t = m and
every number in the acceptance test is an integer that fits int64 (for sigma up to 2^30). So the
samples follow N_Z(0, t * m) with t * m >= sigma^2: never less noise than asked for, at most a factor
1 + 1/sigma more. (The variance of N_Z(0, s^2) is below s^2, indistinguishably close for s above a few.)
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction

import numpy as np

from isthmus.errors import ConfigError

#: Largest standard deviation (in lattice units) whose acceptance test stays within int64.
MAX_SIGMA = float(1 << 30)


def discrete_gaussian(size: int, sigma: float) -> np.ndarray:
    """``size`` independent samples of the discrete Gaussian N_Z(0, sigma^2) (sigma^2 rounded up, see above)."""
    if not 0 <= sigma <= MAX_SIGMA:
        raise ConfigError(f"discrete Gaussian noise needs 0 <= sigma <= 2^30 lattice units, got {sigma:.4g}")
    if sigma == 0 or size == 0:
        return np.zeros(size, dtype=np.int64)
    return _Sampler().gaussian(size, *lattice_variance(sigma))


def lattice_variance(sigma: float) -> tuple[int, int]:
    """``(t, m)`` with t = floor(sigma) + 1 and m = ceil(sigma^2 / t): the sampler draws N_Z(0, t * m)."""
    t = math.floor(sigma) + 1
    return t, max(1, math.ceil(Fraction(sigma) ** 2 / t))


class _Sampler:
    """CKS20's algorithms on arrays, fed by one buffer of OS randomness (one sampler per call: no shared state)."""

    _BLOCK = 1 << 16  # 64-bit words fetched from the OS at a time

    def __init__(self) -> None:
        self._words = np.empty(0, dtype=np.uint64)
        self._used = 0

    def gaussian(self, size: int, t: int, m: int) -> np.ndarray:
        """CKS20 Algorithm 3 with sigma^2 = t * m: Laplace proposals Y accepted w.p. exp(-(|Y| - m)^2 / (2tm))."""
        out = np.empty(size, dtype=np.int64)
        todo = np.arange(size)
        while todo.size:
            y = self.laplace(todo.size, t)
            whole, rest = _divmod_square(np.abs(y) - m, 2 * t * m)
            accepted = self.bernoulli_exp(whole, rest, 2 * t * m)
            out[todo[accepted]] = y[accepted]
            todo = todo[~accepted]
        return out

    def laplace(self, size: int, t: int) -> np.ndarray:
        """CKS20 Algorithm 2: P(Y = y) proportional to exp(-|y| / t)."""
        out = np.empty(size, dtype=np.int64)
        todo = np.arange(size)
        while todo.size:
            n = todo.size
            u = self.below(t, n).astype(np.int64)
            keep = self.bernoulli_exp_fraction(u, t)
            x = u + t * self.count_until_failure(n)
            negative = self.below(2, n) == 1
            keep &= ~(negative & (x == 0))  # -0 would count zero twice
            out[todo[keep]] = np.where(negative, -x, x)[keep]
            todo = todo[~keep]
        return out

    def count_until_failure(self, size: int) -> np.ndarray:
        """How many Bernoulli(exp(-1)) succeed before the first fails (geometric)."""
        count = np.zeros(size, dtype=np.int64)
        live = np.arange(size)
        while live.size:
            live = live[self.bernoulli_exp_one(live.size)]
            count[live] += 1
        return count

    def bernoulli_exp(self, whole: np.ndarray, num: np.ndarray, den: int) -> np.ndarray:
        """Bernoulli(exp(-(whole + num/den))) with 0 <= num <= den: ``whole`` Bernoulli(exp(-1)) must all succeed,
        then one Bernoulli(exp(-num/den)) (CKS20 Algorithm 1)."""
        result = np.ones(whole.size, dtype=bool)
        live, left = np.flatnonzero(whole > 0), whole[whole > 0]
        while live.size:
            hit = self.bernoulli_exp_one(live.size)
            result[live[~hit]] = False
            live, left = live[hit], left[hit] - 1
            live, left = live[left > 0], left[left > 0]
        live = np.flatnonzero(result)
        result[live] = self.bernoulli_exp_fraction(num[live], den)
        return result

    def bernoulli_exp_fraction(self, num: np.ndarray, den: int) -> np.ndarray:
        """Bernoulli(exp(-gamma)) for gamma = num/den in [0, 1]: draw A_k ~ Bernoulli(gamma / k), k = 1, 2, ...,
        until one fails; the result is whether that k is odd. Bernoulli(gamma / k) is drawn as Bernoulli(gamma)
        and Bernoulli(1 / k) together, which keeps every bound within int64."""
        result = np.empty(num.size, dtype=bool)
        live = np.arange(num.size)
        k = 1
        while live.size:
            success = self.below(den, live.size).astype(np.int64) < num[live]
            if k > 1:
                success &= self.below(k, live.size) == 0
            result[live[~success]] = k % 2 == 1
            live = live[success]
            k += 1
        return result

    def bernoulli_exp_one(self, size: int) -> np.ndarray:
        """Bernoulli(exp(-1)): :meth:`bernoulli_exp_fraction` with gamma = 1, whose Bernoulli(gamma) always succeed."""
        result = np.empty(size, dtype=bool)
        live = np.arange(size)
        k = 2
        while live.size:
            success = self.below(k, live.size) == 0
            result[live[~success]] = k % 2 == 1
            live = live[success]
            k += 1
        return result

    def below(self, bound: int, size: int) -> np.ndarray:
        """Uniform integers in [0, bound), 1 <= bound < 2^63, unbiased: the lowest 2^bits mod bound words are
        redrawn. Small bounds (most draws) use 32-bit words, halving the randomness read."""
        bits = 32 if bound <= 1 << 16 else 64
        words = self._take(size, bits)
        floor = (1 << bits) % bound
        for i in np.flatnonzero(words < floor) if floor else ():  # probability below bound / 2^bits each
            while words[i] < floor:
                words[i] = self._take(1, bits)[0]
        return words % words.dtype.type(bound)

    def _take(self, size: int, bits: int) -> np.ndarray:
        count = size if bits == 64 else (size + 1) // 2
        if self._used + count > self._words.size:
            self._words = np.frombuffer(secrets.token_bytes(8 * max(count, self._BLOCK)), dtype=np.uint64)
            self._used = 0
        self._used += count
        words = self._words[self._used - count : self._used]
        return (words if bits == 64 else words.view(np.uint32)[:size]).copy()


def _divmod_square(d: np.ndarray, den: int) -> tuple[np.ndarray, np.ndarray]:
    """``divmod(d * d, den)`` exactly: in int64 where d^2 fits, with Python integers for the rare rest."""
    whole, rest = np.empty_like(d), np.empty_like(d)
    small = np.abs(d) < (1 << 31)
    whole[small], rest[small] = np.divmod(d[small] * d[small], den)
    for i in np.flatnonzero(~small):  # |Y| beyond ~30 sigma when sigma < 2^26: practically never
        whole[i], rest[i] = divmod(int(d[i]) ** 2, den)
    return whole, rest
