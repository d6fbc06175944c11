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

from isthmus.algorithms.hetero_linear import cipher, tags
from isthmus.errors import DataError, EncodingOverflowError, ProtocolError
from isthmus.protocols.inspect import Inspect

#: Largest |partial score| a party may contribute; beyond it packing could carry into a neighbour slot.
PART_BOUND = 2.0**16


def score_packer(public_key, bound: float):
    """Slots for values of magnitude below ``bound``, at the precision of encrypted values."""
    from isthmus.crypto.packing import Packer

    integer_bits = math.ceil(math.log2(bound)) + 1
    return Packer(public_key, precision=cipher.VALUE_PRECISION, value_bits=cipher.VALUE_PRECISION + integer_bits)


def sum_bound(n_parties: int) -> float:
    """Largest |score| a sum of every party's partial scores can reach."""
    return PART_BOUND * n_parties


def pack_for_arbiter(public_key, values, bound: float):
    """Encrypted values of magnitude below ``bound``, many per ciphertext (the payload as is in plaintext mode)."""
    if public_key is None:
        return values
    if values.exponent != cipher.VALUE_PRECISION:
        raise ValueError(f"scores must carry {cipher.VALUE_PRECISION} fractional bits, not {values.exponent}")
    packer = score_packer(public_key, bound)
    offset = np.full(len(values), 2.0 ** (packer.value_bits - 1 - packer.precision))
    return packer.merge(values + offset, slots=1)


def unpack_at_arbiter(check: Inspect, payload, public_key, private_key, size: int, bound: float) -> np.ndarray:
    """The ``size`` values of a :func:`pack_for_arbiter` payload, refused unless it holds exactly that many."""
    if public_key is None:
        return check.array(payload, (size,))
    packer = score_packer(public_key, bound)
    packed = check.cipher(payload, public_key, size=-(-size // packer.capacity))
    try:
        return packer.decrypt(private_key, packed, slots=1, groups=packer.capacity, count=size).ravel()
    except EncodingOverflowError:
        check.fail("the packed scores do not decode within the bound of every party's partial scores")


def encrypted_reply(channel, arbiter: str, tag: str, public_key, size: int, fields: tuple[str, str]):
    """The arbiter's reply: ``size`` encrypted values and one finite float (the batch's loss term)."""
    values, total = fields
    check = Inspect(arbiter, tag)
    reply = check.mapping(channel.recv(arbiter, tag), set(fields))
    encrypted = check.cipher(reply[values], public_key, size=size)
    if not isinstance(reply[total], float) or not math.isfinite(reply[total]):
        raise ProtocolError(f"{total} sum must be a finite float", peer=arbiter, tag=tag)
    return encrypted, reply[total]


def check_partial_scores(scores: np.ndarray, party: str) -> None:
    worst = float(np.max(np.abs(scores))) if scores.size else 0.0
    if worst >= PART_BOUND:
        raise DataError(f"party {party!r}: a partial score of {worst:.3g} exceeds {PART_BOUND:g}; "
                        "scale the features or use residual: taylor")


def sigmoid_via_arbiter(channel, arbiter: str, public_key, scores, n_parties: int):
    """[[sigmoid(z)]] in the batch's order, and sum(softplus(z)), without the arbiter seeing the order."""
    size = len(scores)
    order = secret_permutation(size)
    channel.send(arbiter, tags.ARBITER_CONTROL, {"op": "sigmoid"})
    payload = pack_for_arbiter(public_key, scores[order], sum_bound(n_parties))
    channel.send(arbiter, tags.SIGMOID_REQUEST, {"scores": payload, "size": size})
    sigmoid, softplus = encrypted_reply(channel, arbiter, tags.SIGMOID_REPLY, public_key, size, ("sigmoid", "softplus"))
    restored = np.empty(size, dtype=np.int64)
    restored[order] = np.arange(size)
    return sigmoid[restored], softplus


def secret_permutation(size: int) -> np.ndarray:
    """A uniformly random permutation from the OS's secret randomness: the arbiter must not predict it,
    and numpy's generators are not meant for secrets."""
    order = list(range(size))
    random.SystemRandom().shuffle(order)
    return np.array(order, dtype=np.int64)


def serve_sigmoid(channel, guest: str, public_key, private_key, parties: int, min_size: int, max_size: int) -> None:
    """The arbiter's side of one request, for the ``parties`` it knows from the start (never the guest's
    word). A batch of fewer than ``min_size`` scores is refused: from the softplus sum of a single score
    the guest would read the hosts' partial score."""
    check = Inspect(guest, tags.SIGMOID_REQUEST)
    request = check.mapping(channel.recv(guest, tags.SIGMOID_REQUEST), {"scores", "size"})
    size = check.integer(request["size"], 1, max_size, "sigmoid request size")
    if size < min_size:
        check.fail(f"refusing the sigmoid of a batch of {size} scores: at least {min_size} are needed")
    scores = unpack_at_arbiter(check, request["scores"], public_key, private_key, size, sum_bound(parties))
    sigmoid = cipher.encrypt(public_key, expit(scores))
    softplus = float(np.logaddexp(0.0, scores).sum())
    channel.send(guest, tags.SIGMOID_REPLY, {"sigmoid": sigmoid, "softplus": softplus})
