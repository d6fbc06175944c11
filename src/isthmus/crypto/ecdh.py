"""Commutative blinding on Curve25519 for Diffie-Hellman PSI: ids hashed to points, raised to secret keys.

Why X25519 from ``cryptography`` (OpenSSL): it is the fastest well-kept variable-base scalar
multiplication reachable from Python here. Measured on this 2-core machine, per operation:
X25519 27.5 us (``openssl speed`` itself: 25.8 us, so the Python call costs little); Ed25519 via
PyNaCl 71 us per ``scalarmult_ed25519_noclamp`` plus 19 us per ``from_uniform``; P-256 ECDH 33 us.
libsodium's ristretto255 (through pysodium) 42 us; PyNaCl 1.6 does not expose ristretto255 at all.
PSI costs about two scalar multiplications per id on each side, so the curve decides the run time.
X25519 in ``cryptography`` holds the GIL, hence worker processes (:mod:`isthmus.crypto.batchpool`).

Why the result is a proper Diffie-Hellman group (the security argument):

- ``hash_to_point`` reads a salted, domain-separated BLAKE2b digest as a Montgomery u-coordinate and
  retries with a counter until u is canonical (< p) and lies on Curve25519 itself, not on its
  quadratic twist. Without the retry, every blinded value would reveal which of the two groups its
  id hashed into, one bit per id that a peer could test against guessed ids (the curve/twist test
  survives blinding). The retry loop's timing depends on the hash, not on the key; it reveals
  nothing that the salted hash does not, and only to someone timing this process.
- X25519 clamps every secret scalar to a multiple of 8, the cofactor, so ``x([k]P)`` lands in the
  prime-order subgroup (order 2**252 + ...); blinding commutes: ``x([b][a]P) == x([a][b]P)``.
- Points from a peer are hostile: ``blind_points`` refuses non-canonical u, twist points, and
  small-order points (their product is the all-zero value, which OpenSSL refuses).

Keys are 32 bytes from :mod:`secrets`, fresh per job. Batches are ``bytes`` of concatenated 32-byte
u-coordinates, the form that crosses both the wire and the worker-process boundary.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

import gmpy2
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)

POINT_BYTES = 32
KEY_BYTES = 32
MIN_SALT_BYTES = 16
MAX_SALT_BYTES = 64  # BLAKE2b's key limit

_P = 2**255 - 19
_A = 486662  # Curve25519: v^2 = u^3 + A u^2 + u
_ORDER = 2**252 + 27742317777372353535851937790883648493  # of the prime-order subgroup
_PERSON = b"isthmus-psi-ecdh"  # BLAKE2b personalisation: domain separation from every other hash of ids


def new_key() -> bytes:
    """A fresh secret scalar; X25519 clamps it, so any 32 random bytes serve."""
    return secrets.token_bytes(KEY_BYTES)


def new_key_with_inverse() -> tuple[bytes, bytes]:
    """A fresh key and its unblinding key: blinding a point with one and then the other gives the
    point back, for points of the prime-order subgroup (every point blinded once already is one).

    X25519 clamps scalars to ``2**254 + 8 m`` with ``m < 2**251``, which reaches only half of the
    inverses modulo the group order; keys are drawn until the inverse is reachable (two draws on average).
    """
    while True:
        key = new_key()
        clamped = (int.from_bytes(key, "little") & ~7 & ((1 << 255) - 1)) | (1 << 254)
        m = (pow(clamped, -1, _ORDER) - 2**254) * pow(8, -1, _ORDER) % _ORDER
        if m < 2**251:
            return key, (2**254 + 8 * m).to_bytes(KEY_BYTES, "little")


def hash_to_point(identifier: str, salt: bytes) -> bytes:
    """The u-coordinate of a point of Curve25519 (not its twist) derived from ``identifier`` and the job's salt."""
    data = identifier.encode("utf-8")
    attempt = 0  # each attempt lands on the curve with probability about 1/2
    while True:
        digest = hashlib.blake2b(attempt.to_bytes(4, "big") + data, digest_size=32, key=salt, person=_PERSON).digest()
        u = int.from_bytes(digest, "little") & ((1 << 255) - 1)  # X25519 ignores the top bit; so do we
        if _on_curve(u):
            return u.to_bytes(POINT_BYTES, "little")
        attempt += 1


def blind_ids(key: bytes, salt: bytes, ids: Sequence[str]) -> bytes:
    """``H(id)^key`` for each id, concatenated: a party's own set, ready to send."""
    exchange = X25519PrivateKey.from_private_bytes(key).exchange
    load = X25519PublicKey.from_public_bytes
    return b"".join([exchange(load(hash_to_point(identifier, salt))) for identifier in ids])


def blind_points(key: bytes, points: bytes) -> bytes:
    """Raise each of a peer's points to ``key``; ``ValueError`` names the first invalid one."""
    if len(points) % POINT_BYTES:
        raise ValueError(f"{len(points)} bytes is not a whole number of {POINT_BYTES}-byte points")
    exchange = X25519PrivateKey.from_private_bytes(key).exchange
    load = X25519PublicKey.from_public_bytes
    out = []
    for index, start in enumerate(range(0, len(points), POINT_BYTES)):
        point = points[start : start + POINT_BYTES]
        if not _on_curve(int.from_bytes(point, "little")):
            raise ValueError(f"point {index} is not a canonical point of Curve25519")
        try:
            out.append(exchange(load(point)))
        except ValueError:
            raise ValueError(f"point {index} has small order") from None
    return b"".join(out)


def _on_curve(u: int) -> bool:
    """Whether ``u`` is canonical and u^3 + A u^2 + u is a non-zero square mod p (then u is on the curve)."""
    return u < _P and gmpy2.legendre(u * (u * (u + _A) + 1) % _P, _P) == 1
