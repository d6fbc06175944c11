"""Choosing, per job, how far the guest follows the alignment: by the loss of the host's scores on
shared rows held out of training, which only the guest's labels can score.

Why per job: the host learns from two signals on the shared rows, the labels (the Taylor term) and
the guest's representation u_A (the alignment). When the host's columns know about the label what
the guest's do not, u_A is a biased teacher and following it symmetrically is better; otherwise a
fixed teacher distils more (benchmarks/ftl.py). Which case holds is a property of the data.

How, without either party seeing the other's per-row values: both parties draw the same held-out
rows from the job's seed; for each candidate (one value of ``guest_alignment_weights``) they train on
the other shared rows, then the host sends its held-out terms [[u_B,j]], [[sum_j u_B,j u_B,j^T]] under
its own key (the same terms as a training batch), the guest forms the encrypted Taylor loss with its
labels and Phi (``terms.validation_loss``) and has the host decrypt it behind a mask: the guest learns
one number per candidate, the host a uniform value. The guest sends the index of the lowest; both
train that candidate again on all shared rows.
"""

from __future__ import annotations

import numpy as np

from isthmus.algorithms.hetero_ftl import terms
from isthmus.algorithms.hetero_ftl.exchange import Link
from isthmus.algorithms.hetero_ftl.options import FtlOptions
from isthmus.errors import DataError
from isthmus.protocols.inspect import Inspect

CHOICE = "ftl/choice"
#: Fewest held-out rows: the loss is one sum over them (a quadratic in each row's score), so over few rows
#: the guest, knowing its labels and Phi, could solve for a row's score.
MIN_HELD_OUT = 20


def split(overlap: np.ndarray, options: FtlOptions) -> tuple[np.ndarray, np.ndarray]:
    """(rows to train the candidates on, held-out rows), the same at both parties (drawn from the seed);
    with one candidate nothing is held out. Too few held-out rows stop the job before any message."""
    if len(options.guest_alignment_weights) == 1:
        return overlap, overlap[:0]
    held = int(round(options.validation_fraction * len(overlap)))
    if held < MIN_HELD_OUT:
        raise DataError(f"hetero_ftl: validation_fraction {options.validation_fraction} of {len(overlap)} shared "
                        f"rows holds out {held}, fewer than {MIN_HELD_OUT}: choosing among guest_alignment_weights "
                        f"needs more shared rows or a larger fraction")
    order = np.random.default_rng([options.seed, len(overlap), 1]).permutation(len(overlap))
    return np.sort(overlap[order[held:]]), np.sort(overlap[order[:held]])


def guest_loss(link: Link, phi: np.ndarray, y_held: np.ndarray) -> float:
    """The Taylor loss of the host's scores on the held-out rows (y_held in {-1, +1}), decrypted behind a mask."""
    theirs = link.swap_terms({}, terms.host_shapes(len(y_held), len(phi)))
    loss = link.decrypt_both({"loss": terms.validation_loss(theirs, phi, y_held)}, {})["loss"]
    return float(loss[0])


def host_loss(link: Link, u_held: np.ndarray) -> None:
    """The host's side of :func:`guest_loss`: its held-out terms under its key; it decrypts one masked value."""
    link.swap_terms(terms.host_terms(u_held), {})
    link.decrypt_both({}, {"loss": (1,)})


def send_choice(link: Link, losses: list[float]) -> int:
    best = int(np.argmin(losses))
    link.channel.send(link.peer, CHOICE, best)
    return best


def receive_choice(link: Link, options: FtlOptions) -> int:
    return Inspect(link.peer, CHOICE).integer(link.channel.recv(link.peer, CHOICE), 0,
                                              len(options.guest_alignment_weights) - 1, "candidate")
