"""Choosing a party's compute backend: the default is the local pool, and a Ray address that cannot work
fails before the job starts, named to the party and its peers (no Ray cluster needed for these)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from isthmus.compute import ENV_VAR, ComputeError, LocalCompute, connect, from_environment
from isthmus.errors import ConfigError
from isthmus.jobs.launcher import FAILURE_GRACE_S, launch
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.transport.certs import create_federation


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


def test_unreachable_ray_cluster_is_named_at_once(refused_port):
    pytest.importorskip("ray")
    address = f"ray://127.0.0.1:{refused_port}"
    with pytest.raises(ComputeError, match=f"cluster at {address} is unreachable"):
        connect(address).check()


def psi_job(folder: Path, name: str) -> Path:
    """A guest and a host intersecting one id each, over loopback (a minute to connect)."""
    (folder / "ids.csv").write_text("id,x\n1,0.5\n")
    data = {"path": str(folder / "ids.csv"), "id": "id"}  # copied below: the job file allows no YAML aliases
    return write_job(folder / "job.yaml", {"job": name, "connect_timeout": 60,
                                           "parties": loopback_parties({"guest": {"data": dict(data)},
                                                                        "host": {"data": dict(data)}}),
                                           "steps": [{"intersect": {}}]})


@pytest.mark.e2e
def test_a_party_whose_cluster_is_unreachable_tells_its_peers_at_once(tmp_path, refused_port):
    """`isthmus run --compute` checks the backend once the party listens, and tells its peers why it stops, each
    as it comes up: checked before, the guest waited its whole connect timeout and then blamed the host's
    address ("nothing listens where 'host' should")."""
    pytest.importorskip("ray")
    create_federation(tmp_path / "certs", ["guest", "host"])
    job = psi_job(tmp_path, "compute-check")
    address = f"ray://127.0.0.1:{refused_port}"

    def run(party: str, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "isthmus", "run", str(job), "--party", party, "--certs",
                                 str(tmp_path / "certs"), "--out", str(tmp_path / "run"), *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    started = time.monotonic()
    host = run("host", "--compute", address)
    guest = run("guest")  # up after the host's check, most often: told as it comes
    host_out, guest_out = host.communicate(timeout=60)[1], guest.communicate(timeout=60)[1]
    assert time.monotonic() - started < 30, (host_out, guest_out)
    assert host.returncode == 1 and f"Ray cluster at {address} is unreachable" in host_out
    assert guest.returncode == 1 and "step connect failed at host (ComputeError" in guest_out, guest_out
    assert f"Ray cluster at {address} is unreachable" in (tmp_path / "run" / "host" / "events.jsonl").read_text()


@pytest.mark.e2e
def test_launch_gives_one_party_its_own_backend_and_names_it_when_unreachable(tmp_path, refused_port):
    """`isthmus launch --compute host=...`: the host's check fails, and the launch names the host (not the guest,
    which stops on the host's word)."""
    pytest.importorskip("ray")
    job = psi_job(tmp_path, "compute-launch")
    address = f"ray://127.0.0.1:{refused_port}"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "isthmus", "launch", str(job), "--out", str(tmp_path / "run"),
                             "--compute", f"host={address}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "host" in result.stderr and f"Ray cluster at {address} is unreachable" in result.stderr, result.stderr
    # The guest stops at once (told by the host, or stopped by the launch), not after the 15 s grace
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


def test_a_cluster_that_runs_no_task_fails_the_check_within_its_deadline(monkeypatch):
    """Ray's client can block submitting a task, with no timeout of its own (seen for over a minute under load):
    the check gives up after VERIFY_S, naming the cluster, instead of hanging the party before its job."""
    from isthmus.compute import ray_backend

    released = threading.Event()

    class StuckRay:
        """A Ray client whose task submission blocks until the test ends."""

        def remote(self, fn):
            return SimpleNamespace(remote=lambda: released.wait())

        def get(self, ref, timeout):
            raise AssertionError("never reached: submitting blocks")

    monkeypatch.setattr(ray_backend, "VERIFY_S", 0.3)
    started = time.monotonic()
    try:
        with pytest.raises(ComputeError, match=r"the Ray cluster at ray://head:10001 ran no task within 0.3 s"):
            ray_backend.RayCompute("ray://head:10001")._verify(StuckRay())
        assert time.monotonic() - started < 5
    finally:
        released.set()
