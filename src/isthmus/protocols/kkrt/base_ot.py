"""Base oblivious transfers: Chou-Orlandi's "simplest OT" (CO15, ePrint 2015/267, figure 1) on Curve25519.

The OT extension (:mod:`.ot_extension`) needs a few hundred random OTs to start from; their cost is
independent of the set sizes. The OT-extension *receiver* (the guest) is the base-OT sender, and the
other way round (KKRT16 section 3, as in IKNP).

Sender: ``A = a G``. Receiver with choice ``c``: ``B = b G`` for ``c = 0`` or ``B = A + b G`` for
``c = 1``; its key is ``H(i, A, B, b A)``. Sender: ``k0 = H(i, A, B, a B)``, ``k1 = H(i, A, B, a (B - A))``.
The point ``B`` is uniform either way, so the sender learns nothing of ``c``; the receiver cannot
compute ``a (B - A)`` for ``c = 0`` (or ``a B`` for ``c = 1``) without solving Diffie-Hellman.
Semi-honest security; one ``A`` serves all transfers, keys are bound to the index ``i``.

Why the hand-written part: X25519 in ``cryptography`` (OpenSSL) multiplies x-only points, but CO15
needs one point addition (``A + b G`` and ``B - A``), which no library reachable here exposes for
Curve25519 (PyNaCl 1.6 has no ristretto255). So points travel as full affine ``(u, v)`` on the
Montgomery curve ``v^2 = u^3 + 486662 u^2 + u``, one addition is done with gmpy2, and every scalar
multiplication stays in OpenSSL (its clamping keeps results in the prime-order subgroup; x-only
results do not depend on the sign of ``v``, so either square root serves).
"""

from __future__ import annotations

import hashlib
import secrets

import gmpy2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

POINT_BYTES = 64  # u || v, 32 bytes little-endian each
KEY_BYTES = 16  # an AES-128 key per transfer, the seed of one column of the extension
_P = 2**255 - 19
_A = 486662
_SQRT_MINUS_ONE = pow(2, (_P - 1) // 4, _P)
_PERSON = b"isthmus-kkrt-ot"

Point = tuple[int, int]


class Sender:
    """The base-OT sender: one secret ``a``, and for each transfer both keys."""

    def __init__(self) -> None:
        self._a = secrets.token_bytes(32)
        u = _public_u(self._a)
        self.point = (u, _lift(u))

    def message(self) -> bytes:
        return _encode(self.point)

    def keys(self, reply: bytes, count: int) -> list[tuple[bytes, bytes]]:
        """Both keys of each of ``count`` transfers, from the receiver's points (ValueError if malformed)."""
        if not isinstance(reply, bytes) or len(reply) != count * POINT_BYTES:
            raise ValueError(f"expected {count} points of {POINT_BYTES} bytes")
        own = _encode(self.point)
        pairs = []
        for index in range(count):
            encoded = reply[index * POINT_BYTES : (index + 1) * POINT_BYTES]
            point = _decode(encoded)
            minus_a = _add(point, (self.point[0], (-self.point[1]) % _P))
            pairs.append((_kdf(index, own, encoded, _shared(self._a, point[0])), _kdf(index, own, encoded, _shared(self._a, minus_a[0]))))
        return pairs


def receive(message: bytes, choices: np.ndarray) -> tuple[bytes, list[bytes]]:
    """The receiver's points for the sender and its key of each transfer (``choices``: 0/1 per transfer)."""
    a_point = _decode(message)
    reply, keys = [], []
    for index, choice in enumerate(choices.tolist()):
        b = secrets.token_bytes(32)
        u = _public_u(b)
        point = (u, _lift(u))
        if choice:
            point = _add(a_point, point)
        encoded = _encode(point)
        reply.append(encoded)
        keys.append(_kdf(index, message, encoded, _shared(b, a_point[0])))
    return b"".join(reply), keys


def _kdf(index: int, a: bytes, b: bytes, shared: bytes) -> bytes:
    return hashlib.blake2b(index.to_bytes(4, "little") + a + b + shared, digest_size=KEY_BYTES, person=_PERSON).digest()


def _public_u(scalar: bytes) -> int:
    return int.from_bytes(X25519PrivateKey.from_private_bytes(scalar).public_key().public_bytes_raw(), "little")


def _shared(scalar: bytes, u: int) -> bytes:
    """``x(scalar * P)``; OpenSSL refuses (ValueError) a small-order ``P``, whose product is zero."""
    return X25519PrivateKey.from_private_bytes(scalar).exchange(X25519PublicKey.from_public_bytes(u.to_bytes(32, "little")))


def _lift(u: int) -> int:
    """A square root ``v`` of ``u^3 + A u^2 + u`` (p = 5 mod 8: Atkin's formula); ValueError if none."""
    rhs = (u * u * u + _A * u * u + u) % _P
    v = int(gmpy2.powmod(rhs, (_P + 3) // 8, _P))
    if (v * v - rhs) % _P:
        v = v * _SQRT_MINUS_ONE % _P
    if (v * v - rhs) % _P:
        raise ValueError("not a point of Curve25519")
    return v


def _add(p: Point, q: Point) -> Point:
    """Affine addition on the Montgomery curve, for ``p != +-q`` (one inversion)."""
    (u1, v1), (u2, v2) = p, q
    if u1 == u2:
        raise ValueError("points to add must differ")
    slope = (v2 - v1) * int(gmpy2.invert(u2 - u1, _P)) % _P
    u3 = (slope * slope - _A - u1 - u2) % _P
    return u3, (slope * (u1 - u3) - v1) % _P


def _encode(point: Point) -> bytes:
    return point[0].to_bytes(32, "little") + point[1].to_bytes(32, "little")


def _decode(data: bytes) -> Point:
    """A peer's point: canonical coordinates on the curve itself (not the twist), else ValueError."""
    if not isinstance(data, bytes) or len(data) != POINT_BYTES:
        raise ValueError(f"a point is {POINT_BYTES} bytes")
    u, v = int.from_bytes(data[:32], "little"), int.from_bytes(data[32:], "little")
    if u >= _P or v >= _P or (v * v - (u * u * u + _A * u * u + u)) % _P:
        raise ValueError("not a canonical point of Curve25519")
    return u, v
