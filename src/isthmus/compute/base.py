"""The compute interface: map a module-level function over partitions of a party's rows, combine at the driver.

This is FATE's table-engine idea (``mapPartitions`` then a reduce at the driver) cut to what isthmus'
protocols use: a :class:`Pool` runs ``fn(*args, partition)`` per partition and hands back one future
per partition, in order. The driver (the party's own process, which holds the channel) consumes
them in that order, so a protocol can send each partition's result while later ones still run, or
fold them into one (a sum of histograms). Arguments and results are plain bytes, ints and numpy
arrays, so they cross process and machine boundaries cheaply and without custom classes.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, Self

from isthmus.errors import IsthmusError


class ComputeError(IsthmusError):
    """The compute backend cannot be used or lost work it could not redo (names the backend and why)."""


class Pool(Protocol):
    """Workers for one protocol run; closed when the run ends."""

    workers: int  # how many partitions run at once: protocols cut their rows into a multiple of it

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class Compute(ABC):
    """One party's backend. ``pool`` is called per protocol run; ``check`` before a job starts."""

    label: str  # for logs and errors: "local", "ray://10.0.0.5:10001"
    #: Work crosses machines: protocols then cut by rows (which scale out) and share big inputs once.
    remote: bool = False

    @abstractmethod
    def pool(self, records: int, workers: int | None = None) -> Pool:
        """Workers for a run over about ``records`` rows (small runs may stay inline); ``workers``
        overrides the backend's own choice where the backend has one (the local pool)."""

    def parallelism(self) -> int:
        """Partitions that run at once (work is cut into a multiple of it): this machine's cores by default."""
        return os.cpu_count() or 1

    def share(self, value: Any) -> Any:
        """``value`` in a form that tasks of this backend's pools take as an argument in its place, sent
        to the workers once however many tasks take it (the local pool: ``value`` itself)."""
        return value

    def check(self) -> None:
        """Raise :class:`ComputeError` if the backend cannot run work (called before a job starts)."""

    def close(self) -> None:
        """Release what :meth:`check` or :meth:`pool` acquired for the process."""


def map_partitions(pool: Pool, fn: Callable[..., Any], args: tuple, partitions: Sequence[Any]) -> list[Future]:
    """``fn(*args, partition)`` for each partition, as futures in partition order."""
    return [pool.submit(fn, *args, partition) for partition in partitions]
