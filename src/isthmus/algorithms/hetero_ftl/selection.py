"""Choosing, per job, how far the guest follows the alignment: by the loss of the host's scores on
shared rows held out of training, which only the guest's labels can score.

Why per job: the host learns from two signals on the shared rows, the labels (the Taylor term) and
the guest's representation u_A (the alignment). When the host's columns know about the label what
the guest's do not, u_A is a biased teacher and following it symmetrically is better; otherwise a
fixed teacher distils more (benchmarks/ftl.py). Which case holds is a property of the data.

How, without either party seeing the other's per-row values: both parties draw the same held-out
rows from the job's seed; for each candidate (one value of ``guest_alignment_weights``) they train on
the other shared rows, then the host sends its held-out terms [[u_B,j]], [[sum_j u_B,j u_B,j^T]] under
its own key (the same terms as a training batch), the guest forms [[sum z_j]], [[sum y_j z_j]],
[[sum z_j^2]] (z_j = Phi . u_B,j) with its labels and Phi (``terms.held_out_sums``) and has the host
decrypt them behind masks: the guest learns three sums per candidate, the host uniform values. The
guest keeps the candidate whose scores correlate best with its labels and sends its index; both train
that candidate again on all shared rows.

Why the correlation and not the held-out Taylor loss (one sum): the loss also judges the scores'
scale and offset, and on development seeds it preferred the symmetric candidate nearly always, also
where the fixed teacher ranked the rows better; AUC, what the host's labels are judged by, depends on
the ranking only.
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
    return overlap[np.sort(order[held:])], overlap[np.sort(order[:held])]  # kept in the agreed order


def guest_correlation(link: Link, phi: np.ndarray, y_held: np.ndarray) -> float:
    """The correlation of the host's scores with the labels (in {-1, +1}) on the held-out rows, from three
    sums decrypted behind masks: it judges how the scores rank the rows, whatever their scale and offset."""
    theirs = link.swap_terms({}, terms.host_shapes(len(y_held), len(phi)))
    z_sum, yz_sum, zz_sum = link.decrypt_both({"sums": terms.held_out_sums(theirs, phi, y_held)}, {})["sums"]
    m = len(y_held)
    covariance, z_variance = yz_sum / m - y_held.mean() * z_sum / m, zz_sum / m - (z_sum / m) ** 2
    if y_held.var() == 0 or z_variance <= 0:
        return 0.0  # one class held out, or constant scores: nothing to rank; ties keep the first candidate
    return float(covariance / np.sqrt(z_variance * y_held.var()))


def host_sums(link: Link, u_held: np.ndarray) -> None:
    """The host's side of :func:`guest_correlation`: its held-out terms under its key; it decrypts masked sums."""
    link.swap_terms(terms.host_terms(u_held), {})
    link.decrypt_both({}, {"sums": (3,)})


def send_choice(link: Link, correlations: list[float]) -> int:
    best = int(np.argmax(correlations))
    link.channel.send(link.peer, CHOICE, best)
    return best


def receive_choice(link: Link, options: FtlOptions) -> int:
    return Inspect(link.peer, CHOICE).integer(link.channel.recv(link.peer, CHOICE), 0,
                                              len(options.guest_alignment_weights) - 1, "candidate")
