"""Shared fixtures: where the shared data sets are, and running protocol roles as threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fate"


@pytest.fixture
def fate_data() -> Path:
    if not (DATASETS / "README.md").exists():
        pytest.skip(f"shared FATE data sets not found at {DATASETS}")
    return DATASETS


def run_parties(roles: dict[str, Callable[[], Any]], timeout: float = 120.0) -> dict[str, Any]:
    """Run each party's role function in its own thread; re-raise the first failure."""
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
    for t in threads:
        t.join(timeout)
    hung = [t.name for t in threads if t.is_alive()]
    if errors:
        name, exc = next(iter(errors.items()))
        raise AssertionError(f"party {name} failed: {exc!r}") from exc
    if hung:
        raise AssertionError(f"parties still running after {timeout} s: {hung}")
    return results


@pytest.fixture(scope="session")
def paillier_1024():
    """A 1024-bit key pair shared by the tests that need one (generating keys is slow)."""
    paillier = pytest.importorskip("isthmus.crypto.paillier")
    return paillier.generate_keypair(1024)


def pytest_collection_modifyitems(items):
    """Tests marked `ray` run last, in their own order: the session's Ray cluster (below) keeps its daemons
    busy until the session ends, which slowed every test after it."""
    items.sort(key=lambda item: item.get_closest_marker("ray") is not None)


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster (a head and one worker node, one CPU each, separate `ray start` processes),
    started once for every test marked `ray`: starting one costs seconds."""
    pytest.importorskip("ray")
    from isthmus.compute.ray_local import LocalRayCluster

    with LocalRayCluster(nodes=2, cpus_per_node=1) as running:
        yield running


@pytest.fixture(scope="session")
def ray_compute(ray_cluster):
    """This process's connection to ``ray_cluster`` (Ray Client allows one per process), once both nodes are in."""
    from isthmus.compute.ray_backend import RayCompute

    backend = RayCompute(ray_cluster.address)
    backend.check()
    wait_for_nodes(backend, 2)
    yield backend
    backend.close()


def wait_for_nodes(backend, cpus: int, timeout: float = 60.0) -> None:
    """Until the cluster has ``cpus`` CPUs: a (re)started node registers a little after its ``ray start``."""
    deadline = time.monotonic() + timeout
    while backend.parallelism() < cpus:
        assert time.monotonic() < deadline, f"the cluster never reached {cpus} CPUs"
        time.sleep(0.5)


@pytest.fixture
def ray_node_1_restarted(ray_cluster, ray_compute):
    """For a test that kills node 1: it is started again after the test, so the session's cluster is whole for
    the tests after it."""
    yield
    ray_cluster.restart_node(1)
    wait_for_nodes(ray_compute, 2)


@contextmanager
def killing_node_1_when_busy(cluster):
    """While the block runs, SIGKILL node 1 as soon as one of its workers runs a task (a machine dying mid-job);
    yields an event set once it has."""
    killed, done = threading.Event(), threading.Event()

    def watch() -> None:
        while not done.is_set():
            if "ray::_run" in cluster.process_titles(1):
                cluster.kill_node(1)
                killed.set()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield killed
    finally:
        done.set()
        watcher.join(5)


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
