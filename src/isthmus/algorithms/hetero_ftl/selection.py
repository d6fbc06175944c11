"""Choosing, per job, how far the guest follows the alignment: by the loss of the host's scores on
shared rows held out of training, which only the guest's labels can score.

Why per job: the host learns from two signals on the shared rows, the labels (the Taylor term) and
the guest's representation u_A (the alignment). When the host's columns know about the label what
the guest's do not, u_A is a biased teacher and following it symmetrically is better; otherwise a
fixed teacher distils more (benchmarks/ftl.py). Which case holds is a property of the data.

How, without either party seeing the other's per-row values: both parties split the shared rows
into folds drawn from the job's seed; each candidate (one value of ``guest_alignment_weights``) is
trained once per fold on the other folds' rows, then the host sends that fold's terms [[u_B,j]],
[[sum_j u_B,j u_B,j^T]] under its own key (the same terms as a training batch), and the guest forms
[[sum z_j]], [[sum y_j z_j]], [[sum z_j^2]] (z_j = Phi . u_B,j) with its labels and Phi
(``terms.held_out_sums``). Summed over the folds, still encrypted, they are decrypted by the host
behind a mask: the guest learns three sums over all shared rows per candidate (each row scored by a
network that did not train on it), the host uniform values. The guest keeps the candidate whose
scores correlate best with its labels and sends its index; both train that candidate again on all
shared rows. Folds rather than one held-out part: with 100 shared rows of which 7% positive, a part
of 30 rows holds two positives, and the choice followed the noise.

Why the correlation and not the held-out Taylor loss (one sum): the loss also judges the scores'
scale and offset, and on development seeds it preferred the symmetric candidate nearly always, also
where the fixed teacher ranked the rows better; AUC, what the host's labels are judged by, depends on
the ranking only.
"""

from __future__ import annotations

import numpy as np

from isthmus.algorithms.hetero_ftl import terms
from isthmus.algorithms.hetero_ftl.exchange import Encrypted, Link
from isthmus.algorithms.hetero_ftl.options import FtlOptions
from isthmus.errors import DataError
from isthmus.protocols.inspect import Inspect

CHOICE = "ftl/choice"
#: Fewest shared rows to choose on: the guest learns sums over them, so over few rows it could pin down
#: a row's score.
MIN_HELD_OUT = 20


def folds(overlap: np.ndarray, options: FtlOptions) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows to train a candidate on, rows it is scored on) per fold: each shared row is held out once, drawn
    from the seed, so the same at both parties; none with one candidate. Too few shared rows stop the job."""
    if len(options.guest_alignment_weights) == 1:
        return []
    if len(overlap) < max(MIN_HELD_OUT, options.validation_folds):
        raise DataError(f"hetero_ftl: choosing among guest_alignment_weights needs at least {MIN_HELD_OUT} shared "
                        f"rows, the parties share {len(overlap)}")
    order = np.random.default_rng([options.seed, len(overlap), 1]).permutation(len(overlap))
    held = [np.sort(order[fold::options.validation_folds]) for fold in range(options.validation_folds)]
    # positions are taken in the agreed order (each party's positions of the shared rows differ)
    return [(overlap[np.setdiff1d(np.arange(len(overlap)), rows)], overlap[rows]) for rows in held]


def guest_sums(link: Link, phi: np.ndarray, y_held: np.ndarray) -> Encrypted:
    """[[sum z_j, sum y_j z_j, sum z_j^2]] of the host's scores of one fold's held-out rows, under its key."""
    theirs = link.swap_terms({}, terms.host_shapes(len(y_held), len(phi)))
    return terms.held_out_sums(theirs, phi, y_held)


def host_terms(link: Link, u_held: np.ndarray) -> None:
    """The host's side of :func:`guest_sums`: its held-out terms under its own key."""
    link.swap_terms(terms.host_terms(u_held), {})


def guest_correlation(link: Link, sums: Encrypted, y: np.ndarray) -> float:
    """The correlation of the host's scores with the labels (in {-1, +1}) over all folds' held-out rows, from
    their three sums decrypted behind a mask: it judges how the scores rank the rows, whatever their scale
    and offset."""
    z_sum, yz_sum, zz_sum = link.decrypt_both({"sums": sums}, {})["sums"]
    m = len(y)
    covariance, z_variance = yz_sum / m - y.mean() * z_sum / m, zz_sum / m - (z_sum / m) ** 2
    if y.var() == 0 or z_variance <= 0:
        return 0.0  # one class, or constant scores: nothing to rank; ties keep the first candidate
    return float(covariance / np.sqrt(z_variance * y.var()))


def host_decrypts_sums(link: Link) -> None:
    link.decrypt_both({}, {"sums": (3,)})


def send_choice(link: Link, correlations: list[float]) -> int:
    best = int(np.argmax(correlations))
    link.channel.send(link.peer, CHOICE, best)
    return best


def receive_choice(link: Link, options: FtlOptions) -> int:
    return Inspect(link.peer, CHOICE).integer(link.channel.recv(link.peer, CHOICE), 0,
                                              len(options.guest_alignment_weights) - 1, "candidate")
