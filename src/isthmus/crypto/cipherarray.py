"""Arrays of Paillier ciphertexts that behave like numpy arrays of fixed-point numbers.

Each element stands for ``signed(m) / 2**exponent``; the array carries its public key, so combining
arrays under different keys raises :class:`KeyMismatchError`. Results of homomorphic operations
are linkable to their inputs (the key holder can tell ``c1 * c2`` from a fresh ciphertext), so
:meth:`CipherArray.to_wire` re-randomises any array that is not fresh from encryption, as phe's
obfuscation does; :meth:`CipherArray.masked` always does.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from typing import Any

import gmpy2
import numpy as np
from gmpy2 import mpz

from isthmus.crypto import bigints, fixedpoint
from isthmus.crypto.keys import PaillierPublicKey
from isthmus.crypto.multiexp import inverses, matrix_products_of_powers, powers
from isthmus.errors import ProtocolError

#: Fractional bits of float multipliers when none are given (fewer when the values need fewer).
DEFAULT_SCALAR_PRECISION = 32
#: Fractional bits of the plaintext matrix in ``X @ [[d]]``: short exponents keep the product fast;
#: 2**-16 ~ 1.5e-5 absolute per entry, and these rounding errors average out over the rows.
DEFAULT_MATMUL_PRECISION = 16
MAX_NDIM = 8


class CipherArray:
    """An n-dimensional array of ciphertexts under one public key, at one fixed-point exponent."""

    __array_ufunc__ = None  # ndarray (op) CipherArray defers to our reflected operators

    def __init__(self, public_key: PaillierPublicKey, ciphertexts: np.ndarray, exponent: int, *, fresh: bool = False):
        self.public_key = public_key
        self._c = ciphertexts
        self.exponent = exponent
        self._fresh = fresh

    @classmethod
    def from_ciphertexts(
        cls, public_key: PaillierPublicKey, ciphertexts: Sequence[mpz], shape: tuple[int, ...], exponent: int, *, fresh: bool = False
    ) -> CipherArray:
        return cls(public_key, _object_array(ciphertexts, shape), exponent, fresh=fresh)

    # -- array protocol ------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self._c.shape

    @property
    def ndim(self) -> int:
        return self._c.ndim

    @property
    def size(self) -> int:
        return self._c.size

    def __len__(self) -> int:
        return len(self._c)

    def __repr__(self) -> str:
        return f"CipherArray(shape={self.shape}, exponent={self.exponent}, key={self.public_key.fingerprint[:16]}...)"

    def __getitem__(self, index: Any) -> CipherArray:
        picked = self._c[index]
        if not isinstance(picked, np.ndarray):
            picked = _object_array([picked], ())
        return self._like(picked, fresh=self._fresh)

    def reshape(self, *shape: Any) -> CipherArray:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return self._like(self._c.reshape(shape), fresh=self._fresh)

    def ravel(self) -> CipherArray:
        return self.reshape(-1)

    @property
    def T(self) -> CipherArray:
        return self._like(self._c.T, fresh=self._fresh)

    def copy(self) -> CipherArray:
        return self._like(self._c.copy(), fresh=self._fresh)

    def ciphertexts(self) -> list[mpz]:
        """The raw ciphertexts, flat in C order."""
        return self._c.ravel().tolist()

    @staticmethod
    def concatenate(arrays: Sequence[CipherArray], axis: int = 0) -> CipherArray:
        """Join arrays under one key along ``axis``, at the largest of their exponents."""
        if not arrays:
            raise ValueError("need at least one array to concatenate")
        first = arrays[0]
        for other in arrays[1:]:
            first.public_key.check_same(other.public_key)
        exponent = max(a.exponent for a in arrays)
        aligned = [a._at_exponent(exponent) for a in arrays]
        joined = np.concatenate([a._c for a in aligned], axis=axis)
        return first._like(joined, exponent, fresh=all(a._fresh for a in aligned))

    # -- homomorphic arithmetic ----------------------------------------------------------------
    def __add__(self, other: Any) -> CipherArray:
        if isinstance(other, CipherArray):
            self.public_key.check_same(other.public_key)
            exponent = max(self.exponent, other.exponent)
            a, b = self._at_exponent(exponent)._c, other._at_exponent(exponent)._c
            nsquare = self.public_key.nsquare
            return self._like(_elementwise(lambda x, y: x * y % nsquare, a, b), exponent)
        plain = _plaintext(other)
        return NotImplemented if plain is None else self._plus_plaintext(plain)

    __radd__ = __add__

    def __neg__(self) -> CipherArray:
        inverted = inverses(self.ciphertexts(), self.public_key.nsquare)
        return self._like(_object_array(inverted, self.shape))

    def __sub__(self, other: Any) -> CipherArray:
        if isinstance(other, CipherArray):
            return self + (-other)
        plain = _plaintext(other)
        return NotImplemented if plain is None else self._plus_plaintext(plain, negate=True)

    def __rsub__(self, other: Any) -> CipherArray:
        return -self + other

    def __mul__(self, other: Any) -> CipherArray:
        plain = _plaintext(other)
        if plain is None:
            return NotImplemented  # ciphertext x ciphertext is not additively homomorphic
        return self.mul(plain, precision=fixedpoint.minimal_precision(plain, DEFAULT_SCALAR_PRECISION))

    __rmul__ = __mul__

    def mul(self, other: Any, precision: int = DEFAULT_SCALAR_PRECISION) -> CipherArray:
        """Multiply by a plaintext scalar or array encoded with ``precision`` fractional bits."""
        plain = fixedpoint.as_array(other)
        scalars = _object_array(fixedpoint.to_integers(plain, precision), plain.shape)
        bases, exponents = np.broadcast_arrays(self._c, scalars)
        products = powers(bases.ravel().tolist(), exponents.ravel().tolist(), self.public_key.nsquare)
        return self._like(_object_array(products, bases.shape), self.exponent + precision)

    def __truediv__(self, other: Any) -> CipherArray:
        plain = _plaintext(other)
        return NotImplemented if plain is None else self * (1.0 / plain.astype(np.float64))

    def sum(self, axis: int | None = None) -> CipherArray:
        """Homomorphic sum over all elements (``axis=None``) or along one axis."""
        nsquare = self.public_key.nsquare
        if axis is None:
            total = functools.reduce(lambda x, y: x * y % nsquare, self.ciphertexts(), mpz(1))
            return self._like(_object_array([total], ()))
        rows = np.moveaxis(self._c, axis, 0)
        total = functools.reduce(lambda x, y: _elementwise(lambda a, b: a * b % nsquare, x, y), rows, _ones(rows.shape[1:]))
        return self._like(total)

    def __rmatmul__(self, matrix: Any) -> CipherArray:
        plain = _plaintext(matrix)
        if plain is None:
            return NotImplemented
        return self.rmatmul(plain, precision=fixedpoint.minimal_precision(plain, DEFAULT_MATMUL_PRECISION))

    def __matmul__(self, matrix: Any) -> CipherArray:
        """``[[d]] @ X`` for 1-D ``d`` of length k and ``X`` of shape (k, m), i.e. ``X.T @ [[d]]``."""
        plain = _plaintext(matrix)
        if plain is None:
            return NotImplemented
        return plain.T @ self

    def rmatmul(self, matrix: Any, precision: int = DEFAULT_MATMUL_PRECISION) -> CipherArray:
        """``matrix @ self`` for a plaintext (k, n) matrix and this 1-D array of n ciphertexts -> (k,)."""
        plain = fixedpoint.as_array(matrix)
        if self.ndim != 1 or plain.ndim != 2 or plain.shape[1] != self.shape[0]:
            raise ValueError(f"cannot multiply a plaintext {plain.shape} matrix by ciphertexts of shape {self.shape}")
        integers = fixedpoint.to_integer_array(plain, precision)
        products = matrix_products_of_powers(self.ciphertexts(), integers, self.public_key.nsquare)
        return self._like(_object_array(products, (plain.shape[0],)), self.exponent + precision)

    # -- privacy -------------------------------------------------------------------------------
    def rerandomize(self) -> CipherArray:
        """Same plaintexts, ciphertexts unlinkable to these (multiplied by fresh encryptions of zero)."""
        nsquare = self.public_key.nsquare
        fresh = _object_array(self.public_key.random_factors(self.size), self.shape)
        return self._like(_elementwise(lambda c, r: c * r % nsquare, self._c, fresh), fresh=True)

    def sendable_as_is(self) -> CipherArray:
        """These ciphertexts, marked to be sent without re-randomising. Only for arrays derived, by adding
        plaintexts, from ciphertexts that the receiver has never seen and that were fresh: to it they are
        as random as fresh encryptions, and re-randomising would cost one random factor each."""
        return self._like(self._c, fresh=True)

    def masked(self) -> tuple[CipherArray, Mask]:
        """Add a uniform random r in Z_n to every element; the returned Mask removes it after decryption."""
        n = int(self.public_key.n)
        randoms = [secrets.randbelow(n) for _ in range(self.size)]
        with_mask = self._plus_encoded(_object_array(randoms, self.shape)).rerandomize()
        return with_mask, Mask(self.public_key, randoms, self.exponent, self.shape)

    # -- wire ----------------------------------------------------------------------------------
    def to_wire(self) -> dict:
        """Fixed-width big-endian ciphertexts; re-randomised first unless fresh from encryption."""
        sendable = self if self._fresh else self.rerandomize()
        return {
            "key": self.public_key.to_wire(),
            "shape": list(self.shape),
            "exponent": self.exponent,
            "data": sendable.to_bytes(),
        }

    def to_bytes(self) -> bytes:
        """The ciphertexts as they are (no re-randomisation), each ``byte_length(n^2)`` bytes."""
        return bigints.to_bytes(self.ciphertexts(), _width(self.public_key))

    @classmethod
    def from_bytes(cls, public_key: PaillierPublicKey, data: bytes, shape: Sequence[int], exponent: int) -> CipherArray:
        """Parse and validate fixed-width ciphertexts; ValueError/TypeError for anything malformed."""
        shape = _valid_shape(shape)
        if type(exponent) is not int or not 0 <= exponent <= public_key.bits:
            raise ValueError(f"exponent {exponent!r} outside [0, {public_key.bits}]")
        if not isinstance(data, bytes):
            raise TypeError(f"ciphertext data must be bytes, got {type(data).__name__}")
        width = _width(public_key)
        count = int(np.prod(shape, dtype=object))
        if len(data) != count * width:
            raise ValueError(f"ciphertext data has {len(data)} bytes, shape {shape} needs {count * width}")
        nsquare = public_key.nsquare
        ciphertexts = bigints.from_bytes(data, width)
        if not all(0 < c < nsquare for c in ciphertexts):
            raise ValueError("a ciphertext is not in (0, n^2)")
        return cls.from_ciphertexts(public_key, ciphertexts, shape, exponent, fresh=True)

    @classmethod
    def from_wire(cls, fields: dict) -> CipherArray:
        if not isinstance(fields, dict) or set(fields) != {"key", "shape", "exponent", "data"}:
            raise TypeError("ciphertext array must be a map with fields key, shape, exponent, data")
        public_key = PaillierPublicKey.from_wire(fields["key"])
        return cls.from_bytes(public_key, fields["data"], fields["shape"], fields["exponent"])

    # -- internals -----------------------------------------------------------------------------
    def _like(self, ciphertexts: np.ndarray, exponent: int | None = None, *, fresh: bool = False) -> CipherArray:
        return CipherArray(self.public_key, ciphertexts, self.exponent if exponent is None else exponent, fresh=fresh)

    def _at_exponent(self, exponent: int) -> CipherArray:
        """The same values with ``exponent`` fractional bits: plaintexts times ``2**(exponent - self.exponent)``."""
        if exponent == self.exponent:
            return self
        power, nsquare = 1 << (exponent - self.exponent), self.public_key.nsquare
        return self._like(_elementwise(lambda c: gmpy2.powmod(c, power, nsquare), self._c), exponent)

    def _plus_plaintext(self, plain: np.ndarray, *, negate: bool = False) -> CipherArray:
        """Add (or subtract) plaintext values encoded at this array's exponent."""
        integers = fixedpoint.to_integers(plain, self.exponent)
        if negate:
            integers = [-m for m in integers]
        fixedpoint.check_range(integers, self.exponent, self.public_key.n)
        return self._plus_encoded(_object_array(integers, plain.shape))

    def plus_encoded(self, plaintexts: Sequence[int]) -> CipherArray:
        """Add integer plaintexts as they are, element by element (e.g. packed slots already at this
        array's scale, see :mod:`isthmus.crypto.signedslots`), modulo n."""
        return self._plus_encoded(_object_array(list(plaintexts), self.shape))

    def _plus_encoded(self, plaintexts: np.ndarray) -> CipherArray:
        """Add integer plaintexts (any sign, broadcast): ``c * (1 + m n) = c + n (c m mod n)  (mod n^2)``."""
        n, nsquare = self.public_key.n, self.public_key.nsquare
        return self._like(_elementwise(lambda c, m: (c + n * (c * m % n)) % nsquare, self._c, plaintexts))


class Mask:
    """The random offsets of a masked array; stays with the party that masked, never sent."""

    def __init__(self, public_key: PaillierPublicKey, randoms: list[int], exponent: int, shape: tuple[int, ...]):
        self._n = int(public_key.n)
        self._randoms = randoms
        self.exponent = exponent
        self.shape = shape

    def __repr__(self) -> str:
        return f"Mask(shape={self.shape}, exponent={self.exponent})"

    def unmask(self, raw: Any, *, peer: str | None = None, tag: str | None = None) -> np.ndarray:
        """Values from the key holder's ``decrypt_raw`` of the masked array: ``(raw - r) mod n``, decoded.

        ``raw`` comes from a peer: anything but a list of ``size`` integers in ``[0, n)`` is a ProtocolError.
        """
        n = self._n
        signed = [fixedpoint.signed(m, n) for m in self.plaintexts(raw, peer=peer, tag=tag)]
        return fixedpoint.decode(signed, self.exponent, self.shape)

    def plaintexts(self, raw: Any, *, peer: str | None = None, tag: str | None = None) -> list[int]:
        """The unmasked plaintexts ``(raw - r) mod n``, flat, not decoded (e.g. packed slots); ``raw`` as
        for :meth:`unmask`."""
        n = self._n
        if not isinstance(raw, (list, tuple)) or len(raw) != len(self._randoms):
            raise ProtocolError(f"expected a list of {len(self._randoms)} decrypted integers", peer=peer, tag=tag)
        if not all(type(m) is int and 0 <= m < n for m in raw):
            raise ProtocolError("decrypted values must be integers in [0, n)", peer=peer, tag=tag)
        return [(m - r) % n for m, r in zip(raw, self._randoms)]


def _plaintext(value: Any) -> np.ndarray | None:
    """``value`` as a numeric ndarray, or None if it is not a plaintext operand."""
    if isinstance(value, CipherArray):
        return None
    try:
        return fixedpoint.as_array(value)
    except TypeError:
        return None


def _object_array(items: Sequence[Any], shape: tuple[int, ...]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)


def _ones(shape: tuple[int, ...]) -> np.ndarray:
    return _object_array([mpz(1)] * int(np.prod(shape, dtype=np.int64)), shape)


def _elementwise(func: Any, *arrays: np.ndarray) -> np.ndarray:
    """``func`` over broadcast object arrays, element by element (numpy's object loops are no faster)."""
    broadcast = np.broadcast_arrays(*arrays)
    flat = [array.ravel().tolist() for array in broadcast]
    return _object_array([func(*items) for items in zip(*flat)], broadcast[0].shape)


def _width(public_key: PaillierPublicKey) -> int:
    return bigints.byte_width(public_key.nsquare)


def _valid_shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_NDIM:
        raise TypeError(f"shape must be a list of at most {MAX_NDIM} dimensions")
    if not all(type(d) is int and d >= 0 for d in shape):
        raise ValueError(f"bad shape {shape!r}")
    return tuple(shape)
