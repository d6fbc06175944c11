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
import select
import signal
import threading
import time
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


def interrupt_once() -> None:
    """SIGINT or SIGTERM raise KeyboardInterrupt once, and are ignored after it: a process stopped as Ctrl-C
    stops it tells its peers and marks its run, and a second signal (the launcher's SIGTERM on top of the
    terminal's SIGINT, a second Ctrl-C) must not cut that short. kill, systemd, docker and batch schedulers
    stop a process with SIGTERM, which by default ended it at once, its peers left to wait out their timeouts."""
    def interrupt(signum: int, frame: Any) -> None:
        for stopping in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stopping, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)


def when_starter_ends(then: Callable[[], None]) -> None:
    """Call ``then``, in a thread, as soon as the process that started this one ends (killed, say). The
    starter is not this process's parent: the fork server is, and it outlives the starter while any of its
    children lives, so the thread waits on the starter's sentinel (already closed if the starter died while
    this process was starting)."""
    starter = multiprocessing.parent_process()

    def wait() -> None:
        starter.join()
        then()

    threading.Thread(target=wait, name="starter-watch", daemon=True).start()


def end_with(pid: int) -> None:
    """Exit this process as soon as process ``pid`` ends: the initializer of worker pools. Their workers wait
    on a task queue whose ends they hold themselves, so a party killed outright (a node cancelling its job,
    the OOM killer) never told them, and they stayed, idle, for hours."""
    def wait() -> None:
        try:
            select.select([os.pidfd_open(pid)], [], [])  # readable once ``pid`` has ended
        except ProcessLookupError:  # it ended before this process started watching
            pass
        except AttributeError:  # no pidfd (not Linux): ask every second
            while alive(pid):
                time.sleep(1)
        os._exit(1)

    threading.Thread(target=wait, name="owner-watch", daemon=True).start()


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie not yet reaped counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
