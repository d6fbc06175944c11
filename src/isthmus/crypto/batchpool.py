"""Spreading batches of group operations over this party's cores.

X25519 in ``cryptography`` holds the GIL (measured: two threads run no faster than one), so real
parallelism needs processes. Batches cross to the workers as ``bytes`` of fixed-width records and
come back the same way, which keeps the hand-over cheap. Workers are forked from a fork server, not
from the calling process, because protocols run beside other threads (a party's transport, other
parties in tests) and forking a threaded process can copy a held lock into the child.

Small jobs run inline: starting workers costs more than a few thousand operations.

The workers are this party's own processes, so batch arguments may include the party's per-job
secret keys. As with any ``forkserver`` or ``spawn`` pool, a script that uses it must keep its
top-level work under ``if __name__ == "__main__":`` (the fork server imports the main module).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import pairwise
from typing import Any, Self

from isthmus.processes import end_with, forkserver

_PRELOAD = ["isthmus.crypto.ecdh", "isthmus.crypto.rsa_blind"]


class BatchPool:
    """Runs ``fn(*args)`` on worker processes, or inline when ``workers`` is 1."""

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers if workers is not None else os.cpu_count() or 1)
        self._executor: ProcessPoolExecutor | None = None
        if self.workers > 1:
            self._executor = ProcessPoolExecutor(self.workers, mp_context=forkserver(_PRELOAD), initializer=end_with,
                                                 initargs=(os.getpid(),))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Schedule one batch; ``fn`` must be a module-level function so workers can import it."""
        if self._executor is not None:
            return self._executor.submit(fn, *args)
        done: Future = Future()
        try:
            done.set_result(fn(*args))
        except Exception as exc:  # handed to the caller through the future, exactly as a worker would
            done.set_exception(exc)
        return done

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def split_evenly(count: int, parts: int, max_part: int) -> list[tuple[int, int]]:
    """``(start, stop)`` ranges covering ``range(count)``: at least ``parts`` ranges of near-equal size
    (so every worker gets the same share) and none longer than ``max_part``."""
    if count == 0:
        return []
    pieces = min(count, max(parts, -(-count // max_part)))
    bounds = [count * i // pieces for i in range(pieces + 1)]
    return list(pairwise(bounds))
