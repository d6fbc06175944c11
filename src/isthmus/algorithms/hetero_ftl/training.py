"""What both FTL parties do alike: check the overlap, agree on batches without talking, form the
encrypted gradient of their own weights."""

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


def batches(count: int, options: FtlOptions, epoch: int) -> Iterator[np.ndarray]:
    """The same batches of shared rows at both parties: a permutation drawn from the job's seed."""
    order = np.random.default_rng([options.seed, epoch]).permutation(count)
    for start in range(0, count, options.batch_size):
        yield order[start:start + options.batch_size]


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
