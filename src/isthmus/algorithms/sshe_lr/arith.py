"""Products of two values that are both secret-shared, between the two parties of a protocol.Side, in the
ring Z_(2^BITS) of the softmax (smaller than shares.py's: see below).

a = a0 + a1 and b = b0 + b1 (mod 2^BITS), a0, b0 at the first party (the guest), a1, b1 at the second:
a b = a0 b0 + a1 b1 + (a0 b1 + b0 a1). The first two terms are local; the cross term goes through
Paillier under the first party's key: it sends [[a0]], [[b0]]; the second returns
[[a0 b1 + b0 a1 - r]] and keeps r; the first decrypts. No dealer and no precomputed triples: the
same one-round pattern as protocol.py's masked products, with ring elements as exponents. Results
travel packed (shares.Packing): the first party encrypts each value already shifted into the slot
its product will take, so the second's multi-exponentiation of a group lands in one plaintext.

What each sees: the second party ciphertexts under a key it does not hold; the first the integers
a0 b1 + b0 a1 - r with 0 <= a0 b1 + b0 a1 < 2^(2 BITS + 1) and r uniform on 2^(2 BITS + 1 + SIGMA)
values, so statistically (2^-SIGMA) independent of a1 and b1, and reduced mod 2^BITS uniform.

Why a smaller ring: exponents of BITS bits and cross terms of 2 BITS + 1 make each product's cost and
slot width proportional to BITS; 128 bits halves the exponentiations of 256 and packs three products
to a 1024-bit plaintext instead of one. Shares of 2^256 reduce to shares of 2^BITS locally (2^BITS
divides 2^256); back (:func:`lift`) is local too, for values far below 2^BITS. Why by hand: no
maintained Python library does two-party Paillier products of additive shares over Z_(2^k) (MP-SPDZ,
CrypTen and SecretFlow bring a dealer or their own runtimes and transports).
"""

from __future__ import annotations

from isthmus.algorithms.sshe_lr import shares, tags
from isthmus.crypto.cipherarray import CipherArray
from isthmus.crypto.multiexp import powers
from isthmus.protocols.inspect import Inspect

BITS = 128
MODULUS = 1 << BITS
#: shares.Packing's ``extra`` for cross terms below 2^(2 BITS + 1).
_EXTRA = 2 * BITS + 1 - shares.RING_BITS


def reduce(values: list[int]) -> list[int]:
    """Shares of Z_(2^256) as shares of Z_(2^BITS) of the same value (mod 2^BITS)."""
    return [v % MODULUS for v in values]


def lift(values: list[int], *, first: bool) -> list[int]:
    """Shares of Z_(2^BITS) as shares of Z_(2^256), for values x with |x| < 2^l. As integers in
    [0, 2^BITS), x0 + x1 = x + 2^BITS unless the first share falls within 2^l of the edge of the ring,
    which a share uniform in the ring does with probability below 2^(l + 1 - BITS): the first party
    subtracts 2^BITS, as the truncation of shares.py bets on the same event."""
    if first:
        return [(v - MODULUS) % shares.RING for v in values]
    return list(values)


def multiply(side, a: list[int], b: list[int] | None = None) -> list[int]:
    """My share of a * b element by element in Z_(2^BITS) (b None: a * a, one ciphertext per element
    instead of two), untruncated (the scales add)."""
    count = len(a)
    square = b is None
    b = a if square else b
    if len(b) != count:
        raise ValueError(f"multiplying {count} shares by {len(b)}")
    local = [x * y % MODULUS for x, y in zip(a, b, strict=True)]
    channel, peer = side.channel, side.peer
    if side.first:
        packing = shares.Packing(side.public_key.bits, _EXTRA)
        shifts = packing.shifts(count)
        sent = [v << s for v, s in zip(a, shifts, strict=True)]
        if not square:
            sent += [v << s for v, s in zip(b, shifts, strict=True)]
        channel.send(peer, tags.PRODUCT_SHARE, shares.encrypt(side.public_key, sent))
        check = Inspect(peer, tags.PRODUCT)
        reply = check.cipher(channel.recv(peer, tags.PRODUCT), side.public_key, size=packing.groups(count))
        return shares.add(local, reduce(packing.decrypt(side.private_key, reply, count, check)), modulus=MODULUS)
    packing = shares.Packing(side.peer_key.bits, _EXTRA)
    check = Inspect(peer, tags.PRODUCT_SHARE)
    sent = check.cipher(channel.recv(peer, tags.PRODUCT_SHARE), side.peer_key, size=count if square else 2 * count)
    # [[a0]]^(2 a1) or [[a0]]^b1 [[b0]]^a1 per element (plain powers: on exponents of 128 bits twice as fast
    # as multiexp's bucket products), then multiplied together per group of packed slots
    modulus = side.peer_key.nsquare
    raised = powers(sent.ciphertexts(), [2 * x for x in a] if square else list(b) + list(a), modulus)
    if not square:
        raised = [x * y % modulus for x, y in zip(raised[:count], raised[count:], strict=True)]
    groups = []
    for start in range(0, count, packing.per):
        group = raised[start]
        for value in raised[start + 1:start + packing.per]:
            group = group * value % modulus
        groups.append(group)
    packed = CipherArray.from_ciphertexts(side.peer_key, groups, (len(groups),), 0)
    masked, kept = packing.masked(packed, count)
    channel.send(peer, tags.PRODUCT, masked)
    return shares.add(local, reduce(kept), modulus=MODULUS)


def times_rows(side, values: list[int], factors: list[int], columns: int) -> list[int]:
    """My share of each row-major (rows x ``columns``) value times its row's factor (both shared)."""
    return multiply(side, values, [f for f in factors for _ in range(columns)])
