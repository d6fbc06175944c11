"""Plain numpy work over blocks of a party's array on its cluster: binning a table, scoring a batch.

Cheap per value: measured on a two-node local cluster (benchmarks/scale_out.py, docs/scale-out.md),
binning 250k to 1M rows of 10 features took 2.4x to 5.5x the local time on the cluster, because
handing an array from the party's process to the cluster through Ray Client costs more per value
than numpy's work on it, at any size. So by default (:data:`CLUSTER_MIN_VALUES` None) the function
runs once, here, on the whole array, as on the local backend; a party whose cluster is faster per
value than that (or a test) sets a size from which blocks go to the cluster. What would pay is
features read on the nodes (not done). The blocks are contiguous and in order, and the functions
treat rows (or columns) independently, so joining the blocks' results gives the whole array's result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from isthmus.compute.base import Compute, map_partitions
from isthmus.compute.select import current
from isthmus.crypto.parallel import chunks

#: Arrays of at least this many values go to the cluster in blocks; None: none do (see above).
CLUSTER_MIN_VALUES: int | None = None


def map_blocks(fn: Callable[..., Any], array: np.ndarray, *args: Any, axis: int = 0,
               compute: Compute | None = None) -> list[Any]:
    """``[fn(*args, block) for block in blocks of array along axis]``: the party's cluster tasks when its backend
    is one and the array is big, else ``[fn(*args, array)]``."""
    backend = compute or current()
    if not backend.remote or CLUSTER_MIN_VALUES is None or array.size < CLUSTER_MIN_VALUES:
        return [fn(*args, array)]
    length = array.shape[axis]
    with backend.pool(length) as pool:
        before = (slice(None),) * axis
        blocks = [array[(*before, slice(part.start, part.stop))] for part in chunks(length, pool.workers)]
        return [future.result() for future in map_partitions(pool, fn, args, blocks)]
