"""The exact multinomial residual (``residual: sigmoid`` with 3+ classes): the arbiter applies the softmax
to disguised rows of scores.

One multinomial model has K weight columns per party, so a batch's scores Z (rows x K) are the sum of
every party's parts, Z_guest + sum_h U_h, and no party sees it whole. A row's softmax depends only on the differences between
its K scores, and the guest sends the arbiter no more than those: for every row a fresh secret order of
the classes, and the K - 1 gaps z_c - z_r between the others and the first of them (the reference class
r); the rows shuffled with a fresh secret permutation; every party packs its own part (disguise.py). The
arbiter returns [[softmax]] of every disguised row (0 standing for the reference) freshly encrypted, and
the batch's summed logsumexp; the guest undoes both orders.

What the arbiter sees per batch: an unordered multiset of rows, each the K - 1 gaps between a row's
class scores, classes unnamed. The softmax it computes is a function of exactly that (and shows it back),
so no arbiter that computes the softmax can see less; it sees no ids, labels, class names or absolute
scores. For K = 2 that would be |z|, less than the sigmoid mode's z. docs/security.md has the rest.

Loss: sum_i lse(z_i) - y_i . z_i = sum_i lse(gaps_i) - (y_i - e_r(i)) . z_i; the last term is the guest's
part in clear plus each host's [[(e_r - y) . U_h]], formed from the batch's [[y]] (guest.py, host.py).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax

from isthmus.algorithms.hetero_linear import cipher, tags
from isthmus.algorithms.hetero_linear.disguise import Disguise, encrypted_reply, unpack_at_arbiter
from isthmus.protocols.inspect import Inspect


def softmax_via_arbiter(channel, arbiter: str, public_key, disguise: Disguise, request):
    """[[softmax(Z)]] of the batch's flat row-major (rows x classes) scores in their order, the batch's summed
    logsumexp of the gaps, and each row's secret reference class (one-hot, rows x classes), from
    ``request``: every party's :meth:`Disguise.pack` of its part of the scores, summed."""
    rows = len(disguise.picked) // disguise.classes
    channel.send(arbiter, tags.ARBITER_CONTROL, {"op": "softmax"})
    channel.send(arbiter, tags.SOFTMAX_REQUEST, {"gaps": request, "rows": rows})
    probabilities, lse = encrypted_reply(channel, arbiter, tags.SOFTMAX_REPLY, public_key, len(disguise.picked),
                                         ("softmax", "logsumexp"))
    return disguise.restore(probabilities), lse, disguise.references()


def serve_softmax(channel, guest: str, public_key, private_key, parties: int, classes: int, min_rows: int,
                  max_size: int) -> int:
    """The arbiter's side of one request, for the ``parties`` and ``classes`` known from the start; returns how
    many values it encrypted. A batch of fewer than ``min_rows`` rows is refused: from the logsumexp of a
    single row the guest would learn about the hosts' partial scores."""
    check = Inspect(guest, tags.SOFTMAX_REQUEST)
    request = check.mapping(channel.recv(guest, tags.SOFTMAX_REQUEST), {"gaps", "rows"})
    rows = check.integer(request["rows"], 1, max_size // classes, "softmax request rows")
    if rows < min_rows:
        check.fail(f"refusing the softmax of a batch of {rows} rows: at least {min_rows} are needed")
    gaps = unpack_at_arbiter(check, request["gaps"], public_key, private_key, rows, classes, parties)
    disguised = np.hstack([np.zeros((rows, 1)), gaps.reshape(rows, classes - 1)])
    probabilities = cipher.encrypt(public_key, softmax(disguised, axis=1).ravel())
    lse = float(logsumexp(disguised, axis=1).sum())
    channel.send(guest, tags.SOFTMAX_REPLY, {"softmax": probabilities, "logsumexp": lse})
    return rows * classes
