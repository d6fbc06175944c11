"""What both FTL parties do alike: check the overlap, agree on batches without talking, take a step."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from isthmus.algorithms.base import Party
from isthmus.algorithms.hetero_ftl.options import FtlOptions
from isthmus.errors import ConfigError, DataError

#: Rows the host's labelling sends per masked decryption.
LABEL_CHUNK = 4096


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


def step(optimizer: Any, net: Any, gradients: Mapping[Any, np.ndarray], l2: float) -> None:
    """One optimiser step from the gradients of the loss w.r.t. the net's outputs (tensor -> array)."""
    import torch

    from isthmus.algorithms.hetero_ftl.nets import l2_penalty

    optimizer.zero_grad()
    surrogate = sum((tensor * torch.from_numpy(np.asarray(grad, dtype=np.float64))).sum()
                    for tensor, grad in gradients.items())
    (surrogate + 0.5 * l2 * l2_penalty(net)).backward()
    optimizer.step()
