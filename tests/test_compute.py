"""Choosing a party's compute backend: the default is the local pool, and a Ray address that cannot work
fails before the job starts (no Ray cluster needed for these)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from isthmus.compute import ENV_VAR, ComputeError, LocalCompute, connect, from_environment
from isthmus.errors import ConfigError
from isthmus.jobs.launcher import FAILURE_GRACE_S, launch
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.transport.certs import create_federation
from isthmus.transport.ports import free_port


def test_default_is_the_local_pool(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert isinstance(from_environment(), LocalCompute)
    assert isinstance(connect("local"), LocalCompute)
    with connect(None).pool(records=10) as pool:  # small runs stay inline
        assert pool.workers == 1 and pool.submit(sum, [1, 2]).result() == 3


@pytest.mark.parametrize("address", ["spark://head:7077", "ray://no-port", "ray://host:99999"])
def test_unknown_backend_or_bad_address_is_a_config_error(address):
    pytest.importorskip("ray") if address.startswith("ray") else None
    with pytest.raises(ConfigError, match="ray://HOST:PORT"):
        connect(address)


def test_unreachable_ray_cluster_is_named_at_once():
    pytest.importorskip("ray")
    address = f"ray://127.0.0.1:{free_port()}"
    with pytest.raises(ComputeError, match=f"cluster at {address} is unreachable"):
        connect(address).check()


def test_run_with_an_unreachable_cluster_fails_before_the_job_starts(tmp_path):
    """`isthmus run --compute` checks the backend before opening a port or writing the run folder."""
    pytest.importorskip("ray")
    create_federation(tmp_path / "certs", ["guest", "host"])
    (tmp_path / "host.csv").write_text("id,x\n1,0.5\n")
    job = write_job(tmp_path / "job.yaml", {
        "job": "compute-check",
        "parties": loopback_parties({"guest": {"data": {"path": str(tmp_path / "host.csv"), "id": "id"}},
                                     "host": {"data": {"path": str(tmp_path / "host.csv"), "id": "id"}}}),
        "steps": [{"intersect": {}}]})
    address = f"ray://127.0.0.1:{free_port()}"
    result = subprocess.run([sys.executable, "-m", "isthmus", "run", str(job), "--party", "host",
                             "--certs", str(tmp_path / "certs"), "--out", str(tmp_path / "run"),
                             "--compute", address], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"Ray cluster at {address} is unreachable" in result.stderr
    assert not (tmp_path / "run" / "host").exists()


@pytest.mark.e2e
def test_launch_gives_one_party_its_own_backend_and_names_it_when_unreachable(tmp_path):
    """`isthmus launch --compute host=...`: the host's check fails before its start, and the launch names it
    (not the guest, which then waits in vain for it)."""
    pytest.importorskip("ray")
    (tmp_path / "ids.csv").write_text("id,x\n1,0.5\n")
    data = {"path": str(tmp_path / "ids.csv"), "id": "id"}  # copied below: the job file allows no YAML aliases
    job = write_job(tmp_path / "job.yaml", {"job": "compute-launch", "connect_timeout": 60,
                                            "parties": loopback_parties({"guest": {"data": dict(data)},
                                                                         "host": {"data": dict(data)}}),
                                            "steps": [{"intersect": {}}]})
    address = f"ray://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "isthmus", "launch", str(job), "--out", str(tmp_path / "run"),
                             "--compute", f"host={address}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "host" in result.stderr and f"Ray cluster at {address} is unreachable" in result.stderr, result.stderr
    # The guest cannot hear of a host that never started: it is stopped at once, not after the 15 s grace
    assert time.monotonic() - started < FAILURE_GRACE_S
    with pytest.raises(ConfigError, match=r"does not have: \['bank'\]"):
        launch(job, tmp_path / "run2", compute={"bank": address})
    with pytest.raises(ConfigError, match=r"--compute host=rey://x: compute backend must be"):
        launch(job, tmp_path / "run3", compute={"host": "rey://x"})
    assert not (tmp_path / "run3").exists()



def test_crypto_work_follows_the_backend_the_party_uses_and_returns_to_local_after():
    """crypto never asks compute which backend is in use: compute.use registers it, and unregisters it."""
    from isthmus.compute import use
    from isthmus.crypto import parallel

    from conftest import CountingCompute

    fake = CountingCompute(LocalCompute())  # a "cluster" whose tasks run on this machine's pool
    assert parallel.cluster() is None
    with use(fake):
        assert parallel.cluster() is fake
        assert parallel.in_processes(pow, [(2, 10), (3, 3), (5, 2)]) == [1024, 27, 25]
        assert fake.tasks == 3
    assert parallel.cluster() is None
    assert parallel.in_processes(pow, [(2, 10), (3, 3)]) == [1024, 27] and fake.tasks == 3
