"""What both FTL parties do alike: check the overlap, agree on batches without talking (large enough that
neither can solve what it decrypts for single rows), form the encrypted gradient of their own weights."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from isthmus.algorithms.base import Party
from isthmus.algorithms.hetero_ftl.exchange import Encrypted, times
from isthmus.algorithms.hetero_ftl.options import FtlOptions
from isthmus.errors import ConfigError, DataError
from isthmus.ml.scaling import RankGauss, Standardizer

#: Rows the host's labelling sends per masked decryption.
LABEL_CHUNK = 4096


def fit_inputs(features: np.ndarray, options: FtlOptions) -> RankGauss | Standardizer:
    """This party's own column transform, fitted on all its rows (local statistics, never sent)."""
    return (RankGauss if options.inputs == "rank_gauss" else Standardizer).fit(features)


def shared_rows(party: Party, options: FtlOptions) -> np.ndarray:
    """This party's positions of the shared rows, in the order both parties agreed in `intersect`."""
    if party.overlap is None:
        raise ConfigError("hetero_ftl trains on all of each party's rows and needs to know which are shared: "
                          "put an `intersect: {keep_all_rows: true}` step before it")
    if len(party.overlap) < options.min_overlap:
        raise DataError(f"hetero_ftl: the parties share {len(party.overlap)} rows, fewer than min_overlap "
                        f"({options.min_overlap}); nothing to transfer from")
    return party.overlap


def min_batch_rows(options: FtlOptions, parameters: int, peer_parameters: int) -> int:
    """Fewest shared rows in a batch, the same at both parties (each knows both weight counts).

    Each party decrypts the other's weight gradient: P sums over the batch of n x d per-row gradients,
    which hold the guest's labels (the host's gradient) or the host's representations (the guest's), with
    coefficients (its Jacobian) it knows. With n d <= P least squares gives them exactly, and the labels
    off them in one epoch (default_credit: AUC 0.99). So a batch holds more per-row values than the sums
    of every local round (one round's terms serve them all, so each adds P sums over the same values).
    Past that the sums still leak, over the epochs, as benchmarks/label_leakage.py measures and
    docs/security.md says; a higher floor cost accuracy without stopping that."""
    widest = max(parameters, peer_parameters)
    return options.local_rounds * widest // options.representation + 1


def partition(count: int, options: FtlOptions, min_rows: int) -> list[np.ndarray]:
    """The batches of shared rows, the same at both parties: drawn once from the job's seed, of
    ``max(batch_size, min_rows)`` rows, the short tail merged into the last. Every epoch visits the same
    batches: with a linear network (``hidden: 0``), whose Jacobian is its inputs, a host's sums then bear on
    the same subspace every epoch, as a vertical LR host's do (benchmarks/label_leakage.py)."""
    if count < min_rows:
        raise DataError(f"hetero_ftl: the parties share {count} rows, fewer than the {min_rows} a batch needs "
                        "(local_rounds x the larger network's weights / representation, plus one: fewer would let "
                        "a party solve what it decrypts for single rows); share more rows or lower `hidden`")
    size = max(options.batch_size, min_rows)
    order = np.random.default_rng(options.seed).permutation(count)
    edges = [i * size for i in range(max(1, count // size))] + [count]
    return [order[start:stop] for start, stop in zip(edges, edges[1:])]


def plan_batches(party: Party, options: FtlOptions, count: int, parameters: int, peer_parameters: int
                 ) -> list[np.ndarray]:
    """:func:`partition` at the floor of :func:`min_batch_rows`, saying so when it raised ``batch_size``."""
    parts = partition(count, options, min_batch_rows(options, parameters, peer_parameters))
    if len(parts[0]) > options.batch_size:
        party.progress(note=f"batch_size {options.batch_size} raised to {len(parts[0])} shared rows, so that "
                            "neither party can solve what it decrypts for single rows")
    return parts


def batches(parts: list[np.ndarray], options: FtlOptions, epoch: int) -> Iterator[np.ndarray]:
    """The batches of :func:`partition`, in the same new order at both parties each epoch."""
    for index in np.random.default_rng([options.seed, epoch]).permutation(len(parts)):
        yield parts[index]


def parameter_gradient(jacobian: np.ndarray, output_gradient: Encrypted) -> Encrypted:
    """[[dL/dtheta]] = J^T [[dL/doutputs]]: the gradient of a party's own weights, still encrypted, so
    the key holder decrypts (behind a mask) a sum over the batch, never a per-row gradient."""
    return times(jacobian.T, output_gradient.reshape(-1, 1)).reshape(-1)


def joined(parts: list[Encrypted]) -> Encrypted:
    flat = [p.reshape(-1) for p in parts]
    if isinstance(flat[0], np.ndarray):
        return np.concatenate(flat)
    from isthmus.crypto.paillier import CipherArray

    return CipherArray.concatenate(flat)
