"""Plain numpy work over blocks of a party's array on its cluster: binning a table, scoring a batch.

Cheap per value, so worth a cluster only for big arrays: below :data:`CLUSTER_MIN_VALUES` (and always
on the local backend) the function runs once, here, on the whole array, exactly as before. The blocks
are contiguous and in order, and the functions treat rows (or columns) independently, so joining the
blocks' results gives the whole array's result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from isthmus.compute.base import Compute, map_partitions
from isthmus.compute.select import current
from isthmus.crypto.parallel import chunks

#: Below this many values a cluster's hand-over (the block out, the result back) costs more than the work.
CLUSTER_MIN_VALUES = 4_000_000


def map_blocks(fn: Callable[..., Any], array: np.ndarray, *args: Any, axis: int = 0,
               compute: Compute | None = None) -> list[Any]:
    """``[fn(*args, block) for block in blocks of array along axis]``: the party's cluster tasks when its backend
    is one and the array is big, else ``[fn(*args, array)]``."""
    backend = compute or current()
    if not backend.remote or array.size < CLUSTER_MIN_VALUES:
        return [fn(*args, array)]
    length = array.shape[axis]
    with backend.pool(length) as pool:
        before = (slice(None),) * axis
        blocks = [array[(*before, slice(part.start, part.stop))] for part in chunks(length, pool.workers)]
        return [future.result() for future in map_partitions(pool, fn, args, blocks)]
