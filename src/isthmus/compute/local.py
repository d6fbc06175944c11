"""The default backend: this machine's worker processes (:class:`isthmus.crypto.batchpool.BatchPool`)."""

from __future__ import annotations

import os

from isthmus.compute.base import Compute
from isthmus.crypto.batchpool import BatchPool

#: Below this many rows a run works inline: starting worker processes costs more than it saves.
POOL_MIN_RECORDS = 10_000


class LocalCompute(Compute):
    label = "local"

    def __init__(self, workers: int | None = None):
        self.workers = workers

    def parallelism(self) -> int:
        return self.workers or os.cpu_count() or 1

    def pool(self, records: int, workers: int | None = None) -> BatchPool:
        chosen = workers if workers is not None else self.workers
        if chosen is not None:
            return BatchPool(chosen)
        return BatchPool(os.cpu_count() if records >= POOL_MIN_RECORDS else 1)
