"""Shared fixtures: where the shared data sets are, running protocol roles as threads, a port that refuses."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from isthmus.errors import PeerAbortedError

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fate"


def pytest_configure(config: pytest.Config) -> None:
    """Jobs launched in this process and the PSI tests' worker pools share its one fork server: name what a
    party imports before either starts it (started by a pool first, it would hold only the pool's modules
    and every launched party would import the rest again)."""
    from isthmus.jobs.party_process import PRELOAD
    from isthmus.processes import forkserver

    forkserver(PRELOAD)


@pytest.fixture
def fate_data() -> Path:
    if not (DATASETS / "README.md").exists():
        pytest.skip(f"shared FATE data sets not found at {DATASETS}")
    return DATASETS


#: Seconds the other parties get to finish (or fail in turn) once one has failed.
FAILED_PARTY_GRACE = 5.0


def run_parties(roles: dict[str, Callable[[], Any]], timeout: float = 120.0) -> dict[str, Any]:
    """Run each party's role function in its own thread; re-raise the failure that started it all: a party's own
    error, not a peer's abort notice about it (the notice may be recorded first, before the failing party has
    finished telling everyone)."""
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}

    def target(name: str, fn: Callable[[], Any]) -> None:
        try:
            results[name] = fn()
        except BaseException as exc:  # reported below
            errors[name] = exc

    threads = [threading.Thread(target=target, args=(n, f), daemon=True, name=n) for n, f in roles.items()]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        if errors:  # a peer of the failed party may wait for a message that never comes (in-process: no abort)
            deadline = min(deadline, time.monotonic() + FAILED_PARTY_GRACE)
        next(t for t in threads if t.is_alive()).join(0.05)
    hung = [t.name for t in threads if t.is_alive()]
    if errors:
        name, exc = min(errors.items(), key=lambda item: isinstance(item[1], PeerAbortedError))
        raise AssertionError(f"party {name} failed: {exc!r}") from exc
    if hung:
        raise AssertionError(f"parties still running after {timeout} s: {hung}")
    return results


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole test: bound, never listening. A port that was
    merely free when chosen may be taken meanwhile by a party of a test running beside this one."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@pytest.fixture(scope="session")
def paillier_1024():
    """A 1024-bit key pair shared by the tests that need one (generating keys is slow)."""
    paillier = pytest.importorskip("isthmus.crypto.paillier")
    return paillier.generate_keypair(1024)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    """Each module's tests stay together, on one pytest-xdist worker (``--dist loadgroup``, as ``make test`` runs
    them), so its module fixtures (certificates, launched jobs) are made once, and the Ray tests share one
    worker and its one cluster. Modules that start processes run first, the Ray package before them: the longest
    units start early, and the short ones fill the workers at the end."""
    def unit(item: pytest.Item) -> str:
        return "on_ray" if item.nodeid.startswith("tests/on_ray/") else item.nodeid.split("::")[0]

    starts_processes = {unit(item) for item in items if item.get_closest_marker("e2e")}
    order = {item: index for index, item in enumerate(items)}
    items.sort(key=lambda item: (unit(item) != "on_ray", unit(item) not in starts_processes, order[item]))
    for item in items:
        item.add_marker(pytest.mark.xdist_group(unit(item)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids: list[str]) -> None:
    """A pytest-xdist worker whose tests lost their group would split modules (and their fixtures) across
    workers and fail in confusing ways; say why instead (pytest 9.2 does this: pytest-xdist#1386)."""
    if node.config.getoption("dist") == "loadgroup" and any("@" not in nodeid for nodeid in ids):
        raise pytest.UsageError("pytest-xdist's --dist loadgroup did not group the tests: use pytest<9.2 "
                                "(pytest-xdist#1386), as pyproject.toml's test extra does")


class CountingCompute:
    """``backend`` as a cluster (``remote``), counting the tasks handed to it: a test knows the work went there."""

    remote = True

    def __init__(self, backend):
        self._backend = backend
        self.tasks = 0

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def pool(self, records, workers=None):
        pool = self._backend.pool(records, workers)
        submit = pool.submit

        def counted(fn, *args):
            self.tasks += 1
            return submit(fn, *args)

        pool.submit = counted
        return pool
