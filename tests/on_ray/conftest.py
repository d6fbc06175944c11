"""The tests that need a real local Ray cluster: one cluster for all of them, stopped when they are done.
A package (``__init__.py``) so the cluster's fixture is package-scoped and this conftest does not shadow the
top one; the top conftest keeps these tests together, on one pytest-xdist worker."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest


@pytest.fixture(scope="package")
def ray_cluster():
    """A real local Ray cluster (a head and one worker node, one CPU each, separate `ray start` processes),
    started once for this package's tests (starting one costs seconds) and stopped after them: its idle
    daemons slowed every test that ran after them."""
    pytest.importorskip("ray")
    from isthmus.compute.ray_local import LocalRayCluster

    with LocalRayCluster(nodes=2, cpus_per_node=1) as running:
        yield running


@pytest.fixture(scope="package")
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
    """For a test that kills node 1: it is started again after the test, so the package's cluster is whole for
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
