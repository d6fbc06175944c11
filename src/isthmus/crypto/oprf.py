"""Oblivious pseudo-random function 2HashDH over ristretto255, batch-oriented.

``F_k(x) = SHA-512(domain, x, k * H1(x))`` with ``H1`` the ristretto255 hash-to-group of RFC 9496
(two Elligator maps, so ``H1`` behaves as a random oracle). The client sends ``r * H1(x)`` for a
fresh random scalar ``r``, the key holder answers ``k * r * H1(x)`` and the client removes ``r``:
the key holder sees a uniformly random group element, never ``x``; the client learns ``F_k(x)`` for
the inputs it blinded and nothing about ``k``. This is the OPRF of RFC 9497 (mode 0), though not
its wire format or its exact finalisation hash.

Why ristretto255 through libsodium (``rbcl``): it is a prime-order group with a real
hash-to-group, canonical encodings and scalar inversion, which blinding needs. ``rbcl`` ships its
own libsodium inside its wheel, so a fresh machine needs no system library (``pysodium``, used
before, needed the system's libsodium; PyNaCl bundles libsodium too but exposes neither ristretto255
nor its symbols). Measured on the project machine, per element: ristretto255 hash 13 us + scalar
multiplication 42 us (in one run on a loaded machine: through rbcl 14-17 + 50-55 us, through
pysodium 17-21 + 54-66 us); PyNaCl's ed25519 core 68 + 71 us, since each multiplication re-checks
subgroup membership; X25519 from ``cryptography`` 31 us but it clamps every scalar (so ``r`` can not
be inverted) and offers no hash onto the curve, so an OPRF on it would need hand-written curve code.
libsodium's calls (through ``ctypes``) release the GIL, so batches are spread over threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import rbcl

# rbcl writes its bundled libsodium to a fresh temporary file on import and loads it from there,
# leaving ~3 MB in the temporary folder per process; the loaded library no longer needs the file.
with contextlib.suppress(AttributeError, KeyError, OSError):
    os.unlink(sys.modules["rbcl._sodium"].lib_path)

ELEMENT_BYTES = 32
SCALAR_BYTES = 32
OUTPUT_BYTES = 64
_CHUNK = 4096  # elements per thread task: large enough that scheduling costs nothing


class OprfKey:
    """A key holder's secret scalar ``k``; generated from the OS's randomness by libsodium."""

    def __init__(self, scalar: bytes):
        if len(scalar) != SCALAR_BYTES or rbcl.crypto_core_ristretto255_scalar_reduce(scalar + bytes(32)) != scalar:
            raise ValueError("an OPRF key is a canonical 32-byte ristretto255 scalar")
        if scalar == bytes(SCALAR_BYTES):
            raise ValueError("the OPRF key must not be zero")
        self._scalar = scalar

    @classmethod
    def generate(cls) -> OprfKey:
        return cls(rbcl.crypto_core_ristretto255_scalar_random())

    def to_bytes(self) -> bytes:
        return self._scalar

    def evaluate_blinded(self, blinded: bytes, *, workers: int | None = None) -> bytes:
        """Multiply each of a client's elements by ``k``; raises ``ValueError`` on any invalid element."""
        elements = split_elements(blinded)
        return b"".join(_parallel(elements, lambda chunk: [_multiply(self._scalar, p) for p in chunk], workers))

    def evaluate(self, domain: bytes, inputs: Sequence[bytes], *, workers: int | None = None) -> list[bytes]:
        """``F_k(x)`` for the key holder's own inputs, equal to what a client obtains obliviously."""

        def work(chunk: Sequence[bytes]) -> list[bytes]:
            return [_finalize(domain, x, _multiply(self._scalar, _hash_to_group(domain, x))) for x in chunk]

        return _parallel(inputs, work, workers)

    def __repr__(self) -> str:  # never print the scalar
        return "OprfKey(<secret>)"


class Blinding:
    """A client's blinded inputs: ``blinded`` goes to key holders, the rest stays with the client.

    One blinding may be finalised against the answers of several key holders (one per key); each
    answer yields that key's outputs for the same inputs.
    """

    def __init__(self, domain: bytes, inputs: Sequence[bytes], *, workers: int | None = None):
        self.domain = domain
        self.inputs = list(inputs)
        pairs = _parallel(self.inputs, lambda chunk: [_blind(domain, x) for x in chunk], workers)
        self._unblinders = [inverse for inverse, _ in pairs]
        self.blinded = b"".join(element for _, element in pairs)
        self.workers = workers

    def finalize(self, evaluated: bytes) -> list[bytes]:
        """Outputs ``F_k(x)`` from a key holder's answer; ``ValueError`` if the answer is malformed."""
        elements = split_elements(evaluated)
        if len(elements) != len(self.inputs):
            raise ValueError(f"expected {len(self.inputs)} evaluated elements, got {len(elements)}")
        triples = list(zip(self.inputs, self._unblinders, elements))

        def work(chunk: Sequence[tuple[bytes, bytes, bytes]]) -> list[bytes]:
            return [_finalize(self.domain, x, _multiply(inverse, point)) for x, inverse, point in chunk]

        return _parallel(triples, work, self.workers)


def split_elements(data: bytes) -> list[bytes]:
    """Concatenated 32-byte elements as a list; ``ValueError`` unless the length is a multiple of 32."""
    if not isinstance(data, bytes) or len(data) % ELEMENT_BYTES:
        raise ValueError(f"group elements must come as bytes in multiples of {ELEMENT_BYTES}")
    return [data[i : i + ELEMENT_BYTES] for i in range(0, len(data), ELEMENT_BYTES)]


def _hash_to_group(domain: bytes, x: bytes) -> bytes:
    return rbcl.crypto_core_ristretto255_from_hash(hashlib.sha512(_framed(b"H1", domain, x)).digest())


def _blind(domain: bytes, x: bytes) -> tuple[bytes, bytes]:
    r = rbcl.crypto_core_ristretto255_scalar_random()
    return rbcl.crypto_core_ristretto255_scalar_invert(r), _multiply(r, _hash_to_group(domain, x))


def _multiply(scalar: bytes, point: bytes) -> bytes:
    # libsodium rejects non-canonical encodings and the identity (rbcl: RuntimeError); a peer's bad
    # element ends here.
    try:
        return rbcl.crypto_scalarmult_ristretto255(scalar, point)
    except (ValueError, TypeError, RuntimeError):
        raise ValueError("not a valid ristretto255 element") from None


def _finalize(domain: bytes, x: bytes, point: bytes) -> bytes:
    return hashlib.sha512(_framed(b"F", domain, x, point)).digest()


def _framed(label: bytes, *parts: bytes) -> bytes:
    """Length-prefixed concatenation, so no two different part lists hash alike."""
    return b"isthmus-oprf-v1/" + label + b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def _parallel(items: Sequence, work: Callable[[Sequence], list], workers: int | None) -> list:
    threads = workers or os.cpu_count() or 1
    if threads == 1 or len(items) <= _CHUNK:
        return work(items)
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    with ThreadPoolExecutor(threads, thread_name_prefix="isthmus-oprf") as pool:
        return [out for part in pool.map(work, chunks) for out in part]
