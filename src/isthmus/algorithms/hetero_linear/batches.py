"""How many rows a training batch needs, so that no party can solve what it decrypts for single rows.

Every party decrypts an aggregate over the batch's m rows: a host its gradient X_hᵀ d, the guest its
gradient X_gᵀ d, in which d mixes the hosts' partial scores. With m no larger than the party's k
features, d = pinv(X_hᵀ) g exactly; with the Taylor residual d = z + 2 - 4y, and in epoch 1 (all
weights 0) d = 2 - 4y, so a host reads the guest's labels off its own gradient. Beyond linear
algebra, epoch 1 gives a host k subset-sum equations sum_i a_ij y_i = t_j over the m label bits, with
integer coefficients a_ij = round(x_ij 2^precision): each equation carries about
b = precision + log2(m)/2 + 1 bits (standardised features), and lattice reduction solves such
knapsacks while the labels carry fewer bits than the equations, m < k b. So a batch needs
comfortably more rows than that: at least ``(precision + SAFETY_BITS)`` rows per feature of the
widest party, and the guest, which knows its labels, multiplies that by ``label_growth``: rare
positives carry less than one bit each, and K classes give K - 1 equations per feature.

The floor bounds one batch. Batches drawn afresh every epoch would give a host k new equations over
other rows' labels each time, and stacked over the epochs (d = p - y, with p a prediction it models
as one unknown per epoch) they determine the labels: on 6,000 rows of default_credit, a host of 11
columns read them at AUC 0.94 after 20 epochs and 0.996 after 50, by least squares. So the guest draws
the batches once and every epoch visits the same ones (in a new order): a host's equations then
always bear on the same k sums per batch, and the same attack reads 0.60, what the host's columns
alone predict of the labels in-sample (0.635). Hosts refuse a batch that mixes rows of earlier ones
(:class:`Partition`): that also keeps a deviating guest from stacking equations over their partial
scores. docs/security.md gives the argument and what still leaks.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from isthmus.errors import DataError
from isthmus.protocols.inspect import Inspect

#: Rows per feature above ``precision``: covers the log2(m)/2 + 1 bits of each equation and leaves
#: k (7 - log2(m)/2) bits of the labels undetermined at the floor: 51 bits for k = 20, 176 for
#: k = 300, none near k = 680 (wider parties should raise ``batch_rows_per_feature``).
SAFETY_BITS = 8
#: Most features a party may declare; a larger claim is a peer's mistake or an attack.
MAX_FEATURES = 1_000_000


def safe_rows_per_feature(precision: int) -> int:
    """The default and smallest safe ``batch_rows_per_feature`` at this fixed-point ``precision``."""
    return precision + SAFETY_BITS


def min_batch_rows(rows_per_feature: int, features: Mapping[str, int]) -> int:
    """Fewest rows every party accepts in a batch: ``rows_per_feature`` times the widest party's features."""
    return rows_per_feature * max(features.values())


def label_growth(targets: np.ndarray) -> float:
    """How many times more rows than balanced binary labels a batch needs, for 0/1 ``targets`` of shape
    (rows, columns): one column for a binary model, one per class (one-hot) for multiclass, whether
    one-vs-rest or softmax (1.0 for continuous targets, which no knapsack recovers).

    A party decrypts (columns - 1) independent equations per feature (the one-hot columns sum to 1), so
    jointly the rows' labels must carry more bits than those: m H(y) > k (C - 1) b, with H the labels'
    entropy; and each class alone, an m-bit indicator of entropy m h(p_c), must beat its k equations.
    With one column both give the binary rule, 1 / h(p); ten balanced classes need 9 / log2(10) = 2.7x.
    """
    targets = np.asarray(targets, dtype=np.float64)
    targets = targets.reshape(len(targets), -1)
    if not np.isin(targets, (0.0, 1.0)).all():
        return 1.0
    shares = targets.mean(axis=0)
    if targets.shape[1] == 1:
        shares = np.array([1.0 - shares[0], shares[0]])
    elif not np.allclose(targets.sum(axis=1), 1.0):
        raise ValueError("multiclass targets must be one-hot rows")
    present = shares[(shares > 0) & (shares < 1)]
    if len(present) < 2:
        return 1.0  # nothing to learn: every label is the same
    joint = (len(shares) - 1) / _entropy(present)
    alone = max(1.0 / _entropy(np.array([p, 1.0 - p])) for p in present)
    return max(joint, alone)


def _entropy(shares: np.ndarray) -> float:
    """Shannon entropy in bits of a distribution given by its non-zero shares."""
    return float(-(shares * np.log2(shares)).sum())


def plan_batches(n_rows: int, batch_size: int, min_rows: int, *, why: str) -> list[int]:
    """Batch boundaries over ``n_rows`` shuffled rows: batches of ``max(batch_size, min_rows)`` rows, the
    short tail merged into the last batch. ``why`` explains ``min_rows`` in the error when even all
    rows are too few."""
    if n_rows < min_rows:
        raise DataError(f"the guest has {n_rows} training rows, fewer than the {min_rows} a batch needs "
                        f"({why}); add rows, give the widest party fewer columns or lower the option "
                        "'precision' (batch_rows_per_feature below the safe value is for benchmarks only)")
    size = max(batch_size if batch_size > 0 else n_rows, min_rows)
    count = max(1, n_rows // size)
    return [i * size for i in range(count)] + [n_rows]


def check_batch(rows: np.ndarray, min_rows: int, check: Inspect) -> None:
    """Refuse a batch of fewer than ``min_rows`` distinct rows (a repeated row counts once)."""
    distinct = int(np.unique(rows).size)
    if distinct != len(rows) or distinct < min_rows:
        check.fail(f"refusing a batch of {len(rows)} rows ({distinct} distinct): at least {min_rows} distinct rows "
                   "are needed so that no party can solve its decrypted gradient for single rows")


class Partition:
    """The batches a host has been asked to train on: each row belongs to one batch for the whole fit."""

    def __init__(self, n_rows: int):
        self._batch_of = np.full(n_rows, -1, dtype=np.int64)  # which batch each row is in; -1: none yet
        self._sizes: list[int] = []

    def check(self, rows: np.ndarray, check: Inspect) -> int:
        """Accept ``rows`` (distinct) if they are a batch seen before or rows never batched, and return which
        batch they are; refuse a mix."""
        owners = self._batch_of[rows]
        if (owners == -1).all():
            self._batch_of[rows] = len(self._sizes)
            self._sizes.append(len(rows))
        elif not (owners[0] >= 0 and (owners == owners[0]).all() and self._sizes[owners[0]] == len(rows)):
            check.fail(f"refusing a batch of {len(rows)} rows that mixes rows of earlier batches: gradients over "
                       "batches drawn afresh, stacked over the epochs, solve for the labels and partial scores")
        return int(self._batch_of[rows[0]])


def feature_counts(obj, check: Inspect) -> dict[str, int]:
    """A party name -> feature count map, as the guest announces it."""
    if (not isinstance(obj, dict) or not 0 < len(obj) <= 1000
            or not all(isinstance(k, str) and type(v) is int and 0 <= v <= MAX_FEATURES for k, v in obj.items())):
        check.fail("feature counts must map party names to integers >= 0")
    return obj
