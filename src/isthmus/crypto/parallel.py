"""Spreading big arrays over cores: threads where gmpy2 releases the GIL, worker processes elsewhere.

Measured on 2048-bit keys (2 cores): ``gmpy2.powmod_base_list`` releases the GIL and two threads run
it twice as fast, so decryption uses threads. Single ``powmod`` calls and the short 4096-bit modular
products of fixed-base encryption and of the bucket method gain nothing or ~1.2x from threads even
with ``allow_release_gil`` (handing the GIL over costs as much as the product), so that work runs in
worker processes. They receive and return plain bytes and ints (moduli, ciphertexts, exponents),
never private keys. The processes come from loky (joblib's executor): they start as fresh
interpreters, so threads of the caller cannot deadlock them, and unlike multiprocessing's spawn and
forkserver they do not re-run the caller's ``__main__``. Work is only spread when it is big enough
to repay the hand-over (thresholds at the callers).

When the party's compute backend is a cluster (:mod:`isthmus.compute`, ``ray://``), the same tasks run
as the cluster's tasks instead, cut into as many pieces as the cluster has CPUs: Paillier's random
factors and ``X.T @ [[d]]`` are then spread over its nodes. The task functions are pure functions of
their bytes, so the results are the same integers as from the local workers. The compute package
builds on this module, so it registers the cluster here (:func:`use_cluster`) rather than this module
asking it: crypto stays below compute.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from joblib.externals.loky.process_executor import ProcessPoolExecutor

from isthmus.processes import end_with

T = TypeVar("T")


class Submitter(Protocol):
    def submit(self, fn: Callable[..., Any], *args: Any) -> Future: ...


class Cluster(Protocol):
    """What this module needs of a cluster backend (:class:`isthmus.compute.Compute` with ``remote``)."""

    remote: bool

    def parallelism(self) -> int: ...

    def pool(self, records: int) -> AbstractContextManager[Submitter]: ...


_lock = threading.Lock()
_workers: int | None = None  # until configured: ISTHMUS_CRYPTO_WORKERS, read when asked (see isthmus.processes)
_processes: ProcessPoolExecutor | None = None
_cluster: Cluster | None = None


def configure(workers: int) -> None:
    """Use ``workers`` cores for big arrays (1: everything in the calling thread)."""
    global _workers, _processes
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    with _lock:
        _workers = workers
        if _processes is not None:
            _processes.shutdown(wait=False)
            _processes = None


def shutdown() -> None:
    """Stop the worker processes now, killing any still busy: for a process about to exit, which must
    leave nothing running behind it."""
    global _processes
    with _lock:
        if _processes is not None:
            _processes.shutdown(wait=True, kill_workers=True)
            _processes = None
            # The pool's queues hold semaphores its resource tracker counts; freed by a collection, not by
            # a process that ends with os._exit, they were reported as "leaked semlock objects" in party logs.
            gc.collect()


def workers() -> int:
    """This machine's cores for crypto work (threads and worker processes)."""
    return _workers or int(os.environ.get("ISTHMUS_CRYPTO_WORKERS", "0")) or os.cpu_count() or 1


def use_cluster(backend: Cluster | None) -> None:
    """Run work for processes on ``backend`` from now on when it is a cluster (None or a local backend:
    this machine's worker processes). Called by :mod:`isthmus.compute` whenever the party's backend changes."""
    global _cluster
    with _lock:
        _cluster = backend if backend is not None and backend.remote else None


def cluster(compute: Cluster | None = None) -> Cluster | None:
    """``compute`` (default: the registered backend) when it is a cluster (work for processes then runs
    there), else None."""
    if compute is not None:
        return compute if compute.remote else None
    return _cluster


def processes() -> int:
    """How many pieces to cut work for :func:`in_processes` into: the cluster's CPUs, else this machine's."""
    backend = cluster()
    return backend.parallelism() if backend is not None else workers()


def chunks(count: int, parts: int) -> list[range]:
    """``range(count)`` cut into at most ``parts`` contiguous, nearly equal, non-empty pieces."""
    parts = max(1, min(parts, count))
    edges = [count * i // parts for i in range(parts + 1)]
    return [range(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def in_processes(function: Callable[..., T], tasks: Sequence[tuple[Any, ...]],
                 compute: Cluster | None = None) -> list[T]:
    """``[function(*task) for task in tasks]`` in worker processes, or as tasks of the cluster when ``compute``
    (default: the party's backend) is one; ``function`` must be module-level."""
    if len(tasks) <= 1:
        return [function(*task) for task in tasks]
    backend = cluster(compute)
    if backend is not None:
        with backend.pool(len(tasks)) as pool:
            futures = [pool.submit(function, *task) for task in tasks]
            return [future.result() for future in futures]
    if workers() == 1:
        return [function(*task) for task in tasks]
    futures = [_process_pool().submit(function, *task) for task in tasks]
    return [future.result() for future in futures]


def in_threads(function: Callable[..., T], tasks: Sequence[tuple[Any, ...]]) -> list[T]:
    """``[function(*task) for task in tasks]`` in threads (for calls that release the GIL)."""
    if len(tasks) <= 1 or workers() == 1:
        return [function(*task) for task in tasks]
    with ThreadPoolExecutor(min(workers(), len(tasks))) as pool:
        return list(pool.map(lambda task: function(*task), tasks))


def _process_pool() -> ProcessPoolExecutor:
    global _processes
    with _lock:
        if _processes is None:
            _processes = ProcessPoolExecutor(max_workers=workers(), initializer=end_with, initargs=(os.getpid(),))
        return _processes
