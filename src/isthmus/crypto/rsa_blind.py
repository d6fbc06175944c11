"""RSA blind signatures for PSI when one set is far larger than the other (De Cristofaro-Tsudik style).

The server (larger set) signs the full-domain hash of each of its ids once and publishes the digests
of those signatures. The client (smaller set) blinds the hash of each of its ids with a random
``r^e``, the server signs without seeing the hash, and the client unblinds, checks each signature
with the public key and compares digests. The server learns only how many ids the client has.

Who does the work: the server, one RSA private operation per id of either set (2048-bit CRT:
0.7 ms here, spread over cores); the client only cheap public-exponent operations. Unlike
Diffie-Hellman PSI, the client alone learns the intersection.

Limit: blinding hides the client's ids perfectly only when ``gcd(e, phi(n)) == 1``. A malicious
server could pick a modulus where ``e`` divides ``phi(n)`` and learn the e-th power residue class
of each blinded hash. Checking the signatures (which ``unblind`` does) catches wrong signatures but
not such a key; use this method with a server trusted to follow the protocol (semi-honest).

Key generation uses ``cryptography`` (vetted prime generation); the arithmetic uses gmpy2, since no
library offers raw (unpadded) RSA, which blind signing needs. Batches are ``bytes`` of fixed-width
big-endian integers, one modulus length each.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gmpy2
from cryptography.hazmat.primitives.asymmetric import rsa

DEFAULT_BITS = 2048
MIN_BITS = 2048
MAX_BITS = 8192
PUBLIC_EXPONENT = 65537
DIGEST_BYTES = 32

_FDH_DOMAIN = b"isthmus.psi.rsa-fdh.v1"
_DIGEST_PERSON = b"isthmus-psi-rsa"


@dataclass(frozen=True)
class RsaPublicKey:
    n: int
    e: int

    @property
    def byte_length(self) -> int:
        return (self.n.bit_length() + 7) // 8

    def to_wire(self) -> dict[str, Any]:
        return {"n": self.n.to_bytes(self.byte_length, "big"), "e": self.e}

    @classmethod
    def from_wire(cls, fields: Any) -> RsaPublicKey:
        """Parse a peer's key; ``ValueError`` for anything that is not a plausible RSA key of ours."""
        if not (isinstance(fields, dict) and set(fields) == {"n", "e"}):
            raise ValueError("public key must be a map with exactly 'n' and 'e'")
        n, e = fields["n"], fields["e"]
        if not isinstance(n, bytes) or not MIN_BITS <= len(n) * 8 <= MAX_BITS:
            raise ValueError(f"modulus must be {MIN_BITS}..{MAX_BITS} bits of big-endian bytes")
        modulus = int.from_bytes(n, "big")
        if modulus.bit_length() != len(n) * 8 or modulus % 2 == 0:
            raise ValueError("modulus must be odd and use its full byte length")
        if e != PUBLIC_EXPONENT:
            raise ValueError(f"public exponent must be {PUBLIC_EXPONENT}")
        return cls(modulus, e)


@dataclass(frozen=True)
class RsaPrivateKey:
    public: RsaPublicKey
    p: int
    q: int
    dp: int
    dq: int
    q_inv: int  # q^-1 mod p, for CRT recombination

    @classmethod
    def generate(cls, bits: int = DEFAULT_BITS) -> RsaPrivateKey:
        numbers = rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=bits).private_numbers()
        public = RsaPublicKey(numbers.public_numbers.n, numbers.public_numbers.e)
        return cls(public, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp)


def full_domain_hash(public: RsaPublicKey, salt: bytes, identifier: str) -> int:
    """Hash an id onto ``[0, n)``: SHAKE-256 stretched 128 bits past the modulus, so the bias is negligible."""
    xof = hashlib.shake_256(_FDH_DOMAIN + len(salt).to_bytes(1, "big") + salt + identifier.encode("utf-8"))
    return int.from_bytes(xof.digest(public.byte_length + 16), "big") % public.n


def sign_ids(key: RsaPrivateKey, salt: bytes, ids: Sequence[str]) -> bytes:
    """The server's own set: digests of ``FDH(id)^d``, ``DIGEST_BYTES`` each."""
    hashed = [full_domain_hash(key.public, salt, identifier) for identifier in ids]
    width = key.public.byte_length
    return b"".join(_digest(s.to_bytes(width, "big")) for s in _sign(key, hashed))


def sign_blinded(key: RsaPrivateKey, blinded: bytes) -> bytes:
    """Sign a client's blinded values; ``ValueError`` names the first one outside ``[1, n)``."""
    values = _ints(key.public, blinded)
    for index, value in enumerate(values):
        if not 0 < value < key.public.n:
            raise ValueError(f"blinded value {index} is outside [1, n)")
    width = key.public.byte_length
    return b"".join(s.to_bytes(width, "big") for s in _sign(key, values))


def blind_ids(public: RsaPublicKey, salt: bytes, ids: Sequence[str]) -> tuple[bytes, bytes]:
    """The client's request ``FDH(id) * r^e mod n`` per id, and the unblinding factors ``r^-1`` to keep."""
    n, width = public.n, public.byte_length
    blinded, unblinders = [], []
    for identifier in ids:
        r = secrets.randbelow(n - 2) + 2
        r_inv = int(gmpy2.invert(r, n))  # r shares no factor with n unless r reveals a prime of n
        blinded.append(full_domain_hash(public, salt, identifier) * int(gmpy2.powmod(r, public.e, n)) % n)
        unblinders.append(r_inv)
    return b"".join(v.to_bytes(width, "big") for v in blinded), b"".join(v.to_bytes(width, "big") for v in unblinders)


def unblind(public: RsaPublicKey, salt: bytes, ids: Sequence[str], signed: bytes, unblinders: bytes) -> bytes:
    """Digests of the client's signatures; ``ValueError`` names the first signature that does not verify."""
    n, width = public.n, public.byte_length
    digests = []
    for index, (identifier, blind_sig, r_inv) in enumerate(zip(ids, _ints(public, signed), _ints(public, unblinders), strict=True)):
        signature = blind_sig * r_inv % n
        if gmpy2.powmod(signature, public.e, n) != full_domain_hash(public, salt, identifier):
            raise ValueError(f"signature {index} does not verify under the server's public key")
        digests.append(_digest(signature.to_bytes(width, "big")))
    return b"".join(digests)


def _sign(key: RsaPrivateKey, values: list[int]) -> list[int]:
    """``value^d mod n`` by the Chinese remainder theorem, each half as one gmpy2 batch call
    that lets other threads run meanwhile (parties in one process, a transport's threads)."""
    p, q = gmpy2.mpz(key.p), gmpy2.mpz(key.q)
    with gmpy2.context(allow_release_gil=True):
        mod_p = gmpy2.powmod_base_list([v % p for v in values], key.dp, p)
        mod_q = gmpy2.powmod_base_list([v % q for v in values], key.dq, q)
    return [int(sq + (key.q_inv * (sp - sq) % p) * q) for sp, sq in zip(mod_p, mod_q)]


def _ints(public: RsaPublicKey, data: bytes) -> list[int]:
    width = public.byte_length
    if len(data) % width:
        raise ValueError(f"{len(data)} bytes is not a whole number of {width}-byte values")
    return [int.from_bytes(data[i : i + width], "big") for i in range(0, len(data), width)]


def _digest(signature: bytes) -> bytes:
    return hashlib.blake2b(signature, digest_size=DIGEST_BYTES, person=_DIGEST_PERSON).digest()
