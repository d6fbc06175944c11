"""Products of two values that are both secret-shared (shares.py), between the two parties of a Side.

a = a0 + a1 and b = b0 + b1 (mod RING), a0, b0 at the first party (the guest), a1, b1 at the second:
a b = a0 b0 + a1 b1 + (a0 b1 + b0 a1). The first two terms are local; the cross term goes through
Paillier under the first party's key: it sends [[a0]], [[b0]]; the second returns
[[a0 b1 + b0 a1 - r]] and keeps r; the first decrypts. No dealer and no precomputed triples: the
same one-round pattern as protocol.py's masked products, with ring elements as exponents.

What each sees: the second party ciphertexts under a key it does not hold; the first party the
integer a0 b1 + b0 a1 - r with |a0 b1 + b0 a1| < 2^(2 RING_BITS + 1) and r uniform on
2^(2 RING_BITS + 1 + SIGMA) values, so statistically (2^-SIGMA) independent of b1 and a1, and its
reduction mod RING uniform (shares.py). The result is untruncated: the caller truncates
(shares.truncate) at its fixed-point scale. Why by hand: no maintained Python library does two-party
Paillier-based multiplication of additive shares over Z_2^k (MP-SPDZ, CrypTen, SecretFlow need a
dealer or their own runtimes and transports).
"""

from __future__ import annotations

import numpy as np

from isthmus.algorithms.sshe_lr import shares, tags
from isthmus.crypto.cipherarray import CipherArray
from isthmus.crypto.multiexp import powers
from isthmus.protocols.inspect import Inspect

#: Bits by which a cross term exceeds the ring: |a0 b1 + b0 a1| < 2^(RING_BITS + CROSS_EXTRA).
CROSS_EXTRA = shares.RING_BITS + 1


def multiply(side, a: list[int], b: list[int] | None = None) -> list[int]:
    """My share of a * b element by element (b None: a * a, one ciphertext per element instead of two),
    untruncated (the scales add). ``side`` is the protocol.Side pairing me with the other holder."""
    count = len(a)
    square = b is None
    b = a if square else b
    if len(b) != count:
        raise ValueError(f"multiplying {count} shares by {len(b)}")
    local = [x * y % shares.RING for x, y in zip(a, b, strict=True)]
    channel, peer = side.channel, side.peer
    if side.first:
        channel.send(peer, tags.PRODUCT_SHARE, shares.encrypt(side.public_key, a if square else a + b))
        check = Inspect(peer, tags.PRODUCT)
        reply = check.cipher(channel.recv(peer, tags.PRODUCT), side.public_key, size=count)
        return shares.add(local, shares.decrypt(side.private_key, reply, CROSS_EXTRA, check))
    check = Inspect(peer, tags.PRODUCT_SHARE)
    sent = check.cipher(channel.recv(peer, tags.PRODUCT_SHARE), side.peer_key, size=count if square else 2 * count)
    modulus = side.peer_key.nsquare
    bases = sent.ciphertexts()
    if square:  # [[a0]]^(2 a1)
        cross = powers(bases, [2 * x for x in a], modulus)
    else:  # [[a0]]^b1 [[b0]]^a1
        raised = powers(bases, list(b) + list(a), modulus)
        cross = [x * y % modulus for x, y in zip(raised[:count], raised[count:], strict=True)]
    masked, kept = shares.masked(CipherArray.from_ciphertexts(side.peer_key, cross, (count,), 0), CROSS_EXTRA)
    channel.send(peer, tags.PRODUCT, masked)
    return shares.add(local, kept)


def times_rows(side, values: list[int], factors: list[int], columns: int) -> list[int]:
    """My share of each row-major (rows x ``columns``) value times its row's factor (both shared)."""
    return multiply(side, values, [f for f in factors for _ in range(columns)])
