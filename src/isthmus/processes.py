"""This machine's own processes (parties, crypto workers), forked from one fork server per process.

A party's process must not inherit the state of whoever started it (threads, held locks, open
connections, in tests other parties' keys), so it is not forked from its launcher. A fresh interpreter
per party (spawn) gives that, but pays the imports each time: 2-3 CPU s for pandas, pydantic, grpc and
the algorithms, more than a small job's training. multiprocessing's fork server gives both: a process
that has only imported modules, from which each child is forked.

multiprocessing keeps one fork server per process, started on first use with the modules named until
then; callers name theirs here, so one caller's list does not replace another's. A module that reads
the environment as it is imported read the environment of the fork server's start, not of the child's.
A child starts its own processes (a party's worker pools) from the same server, and holds it open: the
server ends when its starter and all its children have, so a child that must end with its starter
watches the starter itself (:func:`multiprocessing.parent_process`).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import threading
from collections.abc import Callable, Iterable
from multiprocessing.context import ForkServerContext, ForkServerProcess
from typing import Any

_preload: set[str] = set()
_lock = threading.Lock()


def forkserver(preload: Iterable[str] = ()) -> ForkServerContext:
    """The fork server's context, with ``preload`` imported by the server if it has not started yet."""
    context = multiprocessing.get_context("forkserver")
    with _lock:
        _preload.update(preload)
        context.set_forkserver_preload(sorted(_preload))
    return context


def start_forkserver(preload: Iterable[str] = ()) -> None:
    """Start the fork server now, without waiting for it: it imports ``preload`` in the background, so the
    first process asked of it later (a node's first job) does not wait for those imports."""
    forkserver(preload)
    multiprocessing.forkserver.ensure_running()


def fresh_process(target: Callable[..., Any], args: tuple, *, name: str,
                  preload: Iterable[str] = ()) -> ForkServerProcess:
    """A process running ``target(*args)`` with this process's environment as it is now (a child of the
    fork server would otherwise see the environment of the server's start)."""
    return forkserver(preload).Process(target=_in_environment, args=(dict(os.environ), target, args), name=name)


def _in_environment(environment: dict[str, str], target: Callable[..., Any], args: tuple) -> None:
    os.environ.clear()
    os.environ.update(environment)
    target(*args)
