"""The exact logistic residual (``residual: sigmoid``): the arbiter applies the sigmoid to shuffled scores.

The white paper's Taylor residual turns logistic regression into least squares on 4y - 2; on data
with heavy tails (give_credit) or where the two losses rank differently (default_credit) that costs
0.006 - 0.025 AUC against a true logistic regression. Here the arbiter receives the batch's scores
encrypted, shuffled with the guest's fresh secret order and packed many per ciphertext (disguise.py);
it decrypts them, returns [[sigmoid(z)]] freshly encrypted plus the batch's summed softplus(z) for the
loss, and the guest un-shuffles. The arbiter thus sees the batch's scores as an unordered multiset
(never labels, ids, features or gradients): that is the price of this mode. Packing bounds |z|: each
party checks its own partial score against ``PART_BOUND``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from isthmus.algorithms.hetero_linear import cipher, tags
from isthmus.algorithms.hetero_linear.disguise import Disguise, encrypted_reply, unpack_at_arbiter
from isthmus.protocols.inspect import Inspect


def sigmoid_via_arbiter(channel, arbiter: str, public_key, disguise: Disguise, request):
    """[[sigmoid(z)]] in the batch's order, and sum(softplus(z)), from ``request``: every party's
    :meth:`Disguise.pack` of its part of the batch's scores, summed."""
    size = len(disguise.picked)
    channel.send(arbiter, tags.ARBITER_CONTROL, {"op": "sigmoid"})
    channel.send(arbiter, tags.SIGMOID_REQUEST, {"scores": request, "size": size})
    sigmoid, softplus = encrypted_reply(channel, arbiter, tags.SIGMOID_REPLY, public_key, size, ("sigmoid", "softplus"))
    return disguise.restore(sigmoid), softplus


def serve_sigmoid(channel, guest: str, public_key, private_key, parties: int, min_size: int, max_size: int) -> int:
    """The arbiter's side of one request, for the ``parties`` it knows from the start (never the guest's
    word); returns how many values it encrypted. A batch of fewer than ``min_size`` scores is refused:
    from the softplus sum of a single score the guest would read the hosts' partial score."""
    check = Inspect(guest, tags.SIGMOID_REQUEST)
    request = check.mapping(channel.recv(guest, tags.SIGMOID_REQUEST), {"scores", "size"})
    size = check.integer(request["size"], 1, max_size, "sigmoid request size")
    if size < min_size:
        check.fail(f"refusing the sigmoid of a batch of {size} scores: at least {min_size} are needed")
    scores = unpack_at_arbiter(check, request["scores"], public_key, private_key, size, 1, parties)
    sigmoid = cipher.encrypt(public_key, expit(scores))
    softplus = float(np.logaddexp(0.0, scores).sum())
    channel.send(guest, tags.SIGMOID_REPLY, {"sigmoid": sigmoid, "softplus": softplus})
    return size
