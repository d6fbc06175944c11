"""The exact logistic residual (``residual: sigmoid``): the arbiter applies the sigmoid to shuffled scores.

The white paper's Taylor residual turns logistic regression into least squares on 4y - 2; on data
with heavy tails (give_credit) or where the two losses rank differently (default_credit) that costs
0.006 - 0.025 AUC against a true logistic regression. Here the guest sends the arbiter the batch's
encrypted scores [[z]], shuffled with a fresh secret permutation and packed many per ciphertext;
the arbiter decrypts them, returns [[sigmoid(z)]] freshly encrypted plus the batch's summed
softplus(z) for the loss, and the guest un-shuffles. The arbiter thus sees the batch's scores as an
unordered multiset (never labels, ids, features or gradients): that is the price of this mode, and
it is opt-in. Packing bounds |z|: each party checks its own partial score against ``PART_BOUND``.
"""

from __future__ import annotations

import math
import random

import numpy as np
from scipy.special import expit

from isthmus.errors import DataError, ProtocolError
from isthmus.algorithms.hetero_linear import cipher, tags
from isthmus.protocols.inspect import Inspect

#: Largest |partial score| a party may contribute; beyond it packing could carry into a neighbour slot.
PART_BOUND = 2.0**16


def score_packer(public_key, n_parties: int):
    from isthmus.crypto.packing import Packer

    integer_bits = math.ceil(math.log2(PART_BOUND * n_parties)) + 1
    return Packer(public_key, precision=cipher.VALUE_PRECISION, value_bits=cipher.VALUE_PRECISION + integer_bits)


def check_partial_scores(scores: np.ndarray, party: str) -> None:
    worst = float(np.max(np.abs(scores))) if scores.size else 0.0
    if worst >= PART_BOUND:
        raise DataError(f"party {party!r}: a partial score of {worst:.3g} exceeds {PART_BOUND:g}; "
                        "scale the features or use residual: taylor")


def sigmoid_via_arbiter(channel, arbiter: str, public_key, scores, n_parties: int):
    """[[sigmoid(z)]] in the batch's order, and sum(softplus(z)), without the arbiter seeing the order."""
    size = len(scores)
    order = secret_permutation(size)
    shuffled = scores[order]
    channel.send(arbiter, tags.ARBITER_CONTROL, {"op": "sigmoid"})
    if public_key is None:
        payload = shuffled
    else:
        if scores.exponent != cipher.VALUE_PRECISION:
            raise ValueError(f"scores must carry {cipher.VALUE_PRECISION} fractional bits, not {scores.exponent}")
        packer = score_packer(public_key, n_parties)
        offset = np.full(size, 2.0 ** (packer.value_bits - 1 - packer.precision))
        payload = packer.merge(shuffled + offset, slots=1)
    channel.send(arbiter, tags.SIGMOID_REQUEST, {"scores": payload, "size": size, "parties": n_parties})
    check = Inspect(arbiter, tags.SIGMOID_REPLY)
    reply = check.mapping(channel.recv(arbiter, tags.SIGMOID_REPLY), {"sigmoid", "softplus"})
    sigmoid = check.cipher(reply["sigmoid"], public_key, size=size)
    softplus = reply["softplus"]
    if not isinstance(softplus, float) or not math.isfinite(softplus):
        raise ProtocolError("softplus sum must be a finite float", peer=arbiter, tag=tags.SIGMOID_REPLY)
    restored = np.empty(size, dtype=np.int64)
    restored[order] = np.arange(size)
    return sigmoid[restored], softplus


def secret_permutation(size: int) -> np.ndarray:
    """A uniformly random permutation from the OS's secret randomness: the arbiter must not predict it,
    and numpy's generators are not meant for secrets."""
    order = list(range(size))
    random.SystemRandom().shuffle(order)
    return np.array(order, dtype=np.int64)


def serve_sigmoid(channel, guest: str, public_key, private_key, min_size: int, max_size: int) -> None:
    """The arbiter's side of one request. A batch of fewer than ``min_size`` scores is refused: from the
    softplus sum of a single score the guest would read the hosts' partial score."""
    check = Inspect(guest, tags.SIGMOID_REQUEST)
    request = check.mapping(channel.recv(guest, tags.SIGMOID_REQUEST), {"scores", "size", "parties"})
    size = check.integer(request["size"], 1, max_size, "sigmoid request size")
    parties = check.integer(request["parties"], 2, 1000, "number of parties")
    if size < min_size:
        check.fail(f"refusing the sigmoid of a batch of {size} scores: at least {min_size} are needed")
    if public_key is None:
        scores = check.array(request["scores"], (size,))
        sigmoid = expit(scores)
    else:
        packer = score_packer(public_key, parties)
        packed = check.cipher(request["scores"], public_key, size=-(-size // packer.capacity))
        scores = packer.decrypt(private_key, packed, slots=1, groups=packer.capacity, count=size).ravel()
        sigmoid = public_key.encrypt(expit(scores), precision=cipher.VALUE_PRECISION)
    softplus = float(np.logaddexp(0.0, scores).sum())
    channel.send(guest, tags.SIGMOID_REPLY, {"sigmoid": sigmoid, "softplus": softplus})
