"""Secure-aggregation primitives (Bonawitz et al. 2017): key agreement, signatures, mask PRG, the Z_2^64 ring, Shamir.

Protocol-free building blocks; :mod:`isthmus.horizontal.secure_sum` runs the rounds with them.

- Key agreement: X25519 from ``cryptography``; every secret derived from it goes through HKDF-SHA256
  with a context string, so a key is never used for two purposes.
- Signatures: Ed25519 from ``cryptography`` with the parties' long-term keys, over a prefix that no
  other isthmus signature uses, so a signed advertisement can mean nothing else.
- Masks: AES-128-CTR keystream from ``cryptography`` (AES-NI, ~10 GB/s here) read as little-endian
  uint64, so masks add and cancel exactly with numpy's wraparound arithmetic modulo 2^64.
- Fixed point: reals become two's-complement integers in Z_2^64; float masks could not cancel exactly.
- Shamir t-of-n over the prime field GF(2^256 + 297), written by hand: PyCryptodome's Shamir shares
  only 16-byte secrets over GF(2^128) at points it picks, and no maintained library found shares a
  32-byte key at caller-chosen points (the protocol needs x = the holder's roster index); the scheme
  itself is twenty lines of integer arithmetic.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Mapping, Sequence

import numpy as np
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from isthmus.errors import EncodingOverflowError, IsthmusError

#: The smallest prime above 2^256, so any 32-byte secret is a field element (tests check primality).
FIELD_PRIME = (1 << 256) + 297
#: Bytes of a field element on the wire.
FIELD_BYTES = 33
KEY_BYTES = 32
SIGNATURE_BYTES = 64
_NONCE_BYTES = 12
_SIGNED = b"isthmus secure aggregation v1\x00"
_UINT64 = np.dtype("<u8")


class SecAggError(IsthmusError):
    """Too few clients or shares are left to recover the sum, or recovered secrets fail their checks."""


# --- key agreement ---------------------------------------------------------------------------------


def generate_keypair() -> tuple[X25519PrivateKey, bytes]:
    """A fresh X25519 key pair from the OS generator; the public half as 32 raw bytes."""
    private = X25519PrivateKey.generate()
    return private, public_bytes(private)


def public_bytes(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes_raw()


def derive_key(secret: bytes, context: bytes, length: int = 16) -> bytes:
    """HKDF-SHA256 of ``secret``, bound to ``context`` (purpose, session, parties)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=b"isthmus-secagg/" + context).derive(secret)


def agree(private: X25519PrivateKey, peer_public: bytes, context: bytes) -> bytes:
    """A 32-byte secret shared with the owner of ``peer_public``; ``ValueError`` for a malformed or weak key."""
    shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    return derive_key(shared, context, KEY_BYTES)


def private_key_to_int(private: X25519PrivateKey) -> int:
    return int.from_bytes(private.private_bytes_raw(), "big")


def private_key_from_int(value: int) -> X25519PrivateKey:
    """Inverse of :func:`private_key_to_int`; ``ValueError`` if ``value`` is not 32 bytes long."""
    if not 0 <= value < 1 << (8 * KEY_BYTES):
        raise ValueError("value is not a 32-byte X25519 private key")
    return X25519PrivateKey.from_private_bytes(value.to_bytes(KEY_BYTES, "big"))


# --- signatures -----------------------------------------------------------------------------------


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    return key.sign(_SIGNED + message)


def signing_public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


@functools.lru_cache(maxsize=1 << 15)
def signature_valid(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is the Ed25519 signature of ``message`` under the raw public key ``public``.

    Cached because it is a pure function: where many clients share a process (a simulation), each
    checks the same signatures, which are then verified once instead of once per client.
    """
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, _SIGNED + message)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- masks and the ring ----------------------------------------------------------------------------


class MaskExpander:
    """Expands seeds into masks of one length, reusing its buffers between masks.

    Allocating and faulting in fresh pages for every mask cost six times the AES work itself.
    """

    def __init__(self, length: int):
        self.length = length
        self._zeros = bytes(length * 8)
        self._stream = bytearray(length * 8)

    def mask(self, seed: bytes, context: bytes) -> np.ndarray:
        """AES-128-CTR keystream under HKDF(seed, context) as uint64; a view valid until the next call."""
        key = derive_key(seed, b"prg/" + context)
        encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        encryptor.update_into(self._zeros, self._stream)  # one fresh key per mask, so a zero counter is safe
        return np.frombuffer(self._stream, dtype=_UINT64)


def expand_mask(seed: bytes, length: int, context: bytes) -> np.ndarray:
    """``length`` pseudo-random uint64 values from ``seed`` (a fresh array; see :class:`MaskExpander`)."""
    return MaskExpander(length).mask(seed, context).copy()


def encode_fixed(values: np.ndarray, fractional_bits: int, summands: int) -> np.ndarray:
    """Reals as integers modulo 2^64 (two's complement) with ``fractional_bits`` after the point.

    ``summands`` is how many such vectors will be added: every value must stay below
    2^63 / summands so that the sum cannot wrap; anything larger is an :class:`EncodingOverflowError`.
    """
    return to_ring(to_lattice(values, fractional_bits), fractional_bits, summands)


def to_lattice(values: np.ndarray, fractional_bits: int, *, toward_zero: bool = False) -> np.ndarray:
    """Reals as int64 multiples of 2^-fractional_bits, to the nearest or (``toward_zero``) rounded toward zero.

    Rounding toward zero never lets a coordinate, hence a norm, grow: what a clipped update under
    differential privacy needs, whose sensitivity is its norm bound.
    """
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise EncodingOverflowError("cannot encode NaN or infinity")
    scaled = values * float(1 << fractional_bits)
    scaled = np.trunc(scaled) if toward_zero else np.rint(scaled)
    if scaled.size and float(np.max(np.abs(scaled))) >= 2.0**63:
        raise EncodingOverflowError(f"value {float(np.max(np.abs(values))):.4g} too large for {fractional_bits} "
                                    "fractional bits")
    return scaled.astype(np.int64)


def to_ring(lattice: np.ndarray, fractional_bits: int, summands: int) -> np.ndarray:
    """int64 lattice values as elements of Z_2^64, refusing any that ``summands`` such vectors could wrap."""
    limit = (1 << 63) // max(summands, 1)
    if lattice.size and int(np.max(np.abs(lattice))) >= limit:
        raise EncodingOverflowError(
            f"value {int(np.max(np.abs(lattice))) / (1 << fractional_bits):.4g} too large for {fractional_bits} "
            f"fractional bits and {summands} summands"
        )
    return lattice.astype(np.int64).view(_UINT64)


def decode_fixed(ring: np.ndarray, fractional_bits: int) -> np.ndarray:
    """Inverse of :func:`encode_fixed` for a vector or a sum of vectors that did not wrap."""
    return np.asarray(ring, dtype=_UINT64).view(np.int64).astype(np.float64) / float(1 << fractional_bits)


# --- sealed share messages -------------------------------------------------------------------------


def seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """AES-GCM under ``key`` with a random nonce; ``associated`` (who, to whom, which round) is authenticated."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def unseal(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    """Inverse of :func:`seal`; ``ValueError`` when the message was altered, misrouted or truncated."""
    if len(sealed) < _NONCE_BYTES + 16:
        raise ValueError("sealed message too short")
    try:
        return AESGCM(key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], associated)
    except InvalidTag:
        raise ValueError("sealed message failed authentication") from None


# --- Shamir secret sharing over GF(FIELD_PRIME) ----------------------------------------------------


def shamir_split(secret: int, xs: Sequence[int], threshold: int) -> list[int]:
    """Shares of ``secret`` at the points ``xs`` (distinct, nonzero); any ``threshold`` of them recover it."""
    if not 0 <= secret < FIELD_PRIME:
        raise ValueError("secret is not a field element")
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold {threshold} impossible with {len(xs)} shares")
    coefficients = [secrets.randbelow(FIELD_PRIME) for _ in range(threshold - 1)]
    shares = []
    for x in xs:
        y = 0
        for c in reversed(coefficients):  # Horner; x is small, so reducing once at the end is cheaper
            y = y * x + c
        shares.append((y * x + secret) % FIELD_PRIME)
    return shares


def shamir_combine(shares: Mapping[int, int], threshold: int) -> int:
    """The secret from at least ``threshold`` shares ``{x: y}`` (Lagrange interpolation at 0)."""
    if len(shares) < threshold:
        raise SecAggError(f"{len(shares)} shares cannot recover a secret shared {threshold}-of-n")
    xs = tuple(sorted(shares)[:threshold])
    return sum(w * shares[x] for w, x in zip(_lagrange_at_zero(xs), xs)) % FIELD_PRIME


@functools.lru_cache(maxsize=4096)
def _lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """Lagrange weights at 0 for the points ``xs``; cached because one round reuses the same holders."""
    weights = []
    for j, xj in enumerate(xs):
        numerator = denominator = 1
        for m, xm in enumerate(xs):
            if m != j:
                numerator = numerator * xm % FIELD_PRIME
                denominator = denominator * (xm - xj) % FIELD_PRIME
        weights.append(numerator * pow(denominator, -1, FIELD_PRIME) % FIELD_PRIME)
    return tuple(weights)


def field_to_bytes(value: int) -> bytes:
    return value.to_bytes(FIELD_BYTES, "big")


def field_from_bytes(raw: bytes) -> int:
    """A field element from the wire; ``ValueError`` if the length or the value is out of range."""
    if len(raw) != FIELD_BYTES:
        raise ValueError(f"field element must be {FIELD_BYTES} bytes, got {len(raw)}")
    value = int.from_bytes(raw, "big")
    if value >= FIELD_PRIME:
        raise ValueError("field element out of range")
    return value
