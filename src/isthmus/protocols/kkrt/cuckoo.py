"""Cuckoo hashing of the receiver's ids into bins, one id per bin (KKRT16 section 5; PSZ14 section 3.2).

Three hash functions and ``1.27 n`` bins, no stash: each id sits in one of its three candidate bins,
and the sender evaluates the OPRF of each of its own ids in all three. The table is built by parallel
cuckoo insertion over whole arrays (as on GPUs, Alcantara et al. 2009): every pending id claims its
current candidate bin at once, one claimant per bin wins and evicts the previous occupant, and every
id that lost or was evicted moves on to its next candidate. A table that does not settle within
``MAX_ROUNDS`` (rare at this load) is rebuilt under a fresh hash key by the caller; the key is sent to
the sender only once a table is built, so a failed attempt reveals nothing.
"""

from __future__ import annotations

import math

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HASHES = 3
EXPANSION = 1.27
MIN_BINS = 256
MAX_ROUNDS = 2_000


class CuckooFailure(RuntimeError):
    """The table did not settle; build it again under another key."""


def bin_count(ids: int) -> int:
    """Bins for ``ids`` ids: ``1.27 n``, at least ``MIN_BINS``, a multiple of 128 (one AES block of bits)."""
    return max(MIN_BINS, math.ceil(EXPANSION * ids / 128) * 128)


def candidates(key: bytes, digests: np.ndarray, bins: int) -> np.ndarray:
    """(n, HASHES) candidate bins of ids given as (n, 15) digests: ``AES_key(digest || i) mod bins``."""
    n = len(digests)
    blocks = np.empty((n, HASHES, 16), dtype=np.uint8)
    blocks[:, :, :15] = digests[:, None, :]
    blocks[:, :, 15] = np.arange(HASHES, dtype=np.uint8)
    encrypted = Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(blocks.tobytes())
    words = np.frombuffer(encrypted, dtype="<u8").reshape(n, HASHES, 2)[:, :, 0]
    return (words % np.uint64(bins)).astype(np.int64)


def build(choices: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Place every id: returns ``table`` (bins,) holding an id's index or -1, and ``used`` (n,) the
    hash function that placed each id (its bin is ``choices[i, used[i]]``)."""
    n = len(choices)
    table = np.full(bins, -1, dtype=np.int64)
    used = np.zeros(n, dtype=np.int64)
    pending = np.arange(n, dtype=np.int64)
    for _ in range(MAX_ROUNDS):
        if not len(pending):
            return table, used
        wanted = choices[pending, used[pending]]
        claimed, first = np.unique(wanted, return_index=True)
        winners = pending[first]
        lost = np.ones(len(pending), dtype=bool)
        lost[first] = False
        evicted = table[claimed]
        table[claimed] = winners
        pending = np.concatenate([pending[lost], evicted[evicted >= 0]])
        used[pending] = (used[pending] + 1) % HASHES
    raise CuckooFailure(f"cuckoo table of {bins} bins did not settle in {MAX_ROUNDS} rounds")
