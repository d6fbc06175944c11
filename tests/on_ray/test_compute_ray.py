"""A party's compute on a real local Ray cluster (a head and one worker node, one CPU each, separate `ray start`
processes, stopped at the end): the same intersection, histogram ciphertexts and trees as the local pool; the
Ray and isthmus version checks; a hostile peer's point; `isthmus launch --compute`; a node killed mid-job.

The cluster and the connection are this package's (conftest.py). Ray Client allows one connection per process, so
the Ray version test runs before the shared connection opens (this module runs before the other Ray tests)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import killing_node_1_when_busy
from isthmus.compute import ComputeError, LocalCompute
from test_psi import run_roles, shared_ids

ray = pytest.importorskip("ray")
from isthmus.compute.ray_backend import RayCompute  # noqa: E402
from isthmus.protocols.psi import intersect  # noqa: E402
from isthmus.transport.local import LocalHub  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture
def cluster(ray_cluster):
    return ray_cluster


@pytest.fixture
def compute(ray_compute):
    return ray_compute


def _ids(rng: np.random.Generator, guest: int, host: int, shared: int) -> dict[str, list[str]]:
    common = [f"c{i}" for i in range(shared)]
    ids = {"guest": common + [f"g{i}" for i in range(guest - shared)],
           "host": common + [f"h{i}" for i in range(host - shared)]}
    return {party: [values[i] for i in rng.permutation(len(values))] for party, values in ids.items()}


def _psi(ids: dict[str, list[str]], host_compute) -> tuple[dict, dict]:
    hub = LocalHub(list(ids))
    roles = {}
    for party, role, backend in (("guest", "guest", LocalCompute(workers=1)), ("host", "host", host_compute)):
        channel = hub.channel(party, "job")
        channel.default_timeout = 60
        roles[party] = (lambda channel=channel, role=role, backend=backend, party=party:
                        intersect(channel, role, ids[party], compute=backend))
    return run_roles(roles, timeout=120)


def test_a_version_mismatch_is_named(cluster, monkeypatch):
    assert not ray.is_initialized()
    real = ray._private.utils.compute_version_info
    monkeypatch.setattr(ray._private.utils, "compute_version_info", lambda: ("2.0.0", real()[1]))
    with pytest.raises(ComputeError, match=r"Ray version mismatch with the cluster at ray://.*Ray: 2\.0\.0"):
        RayCompute(cluster.address).check()
    assert not ray.is_initialized()


def test_host_on_ray_finds_the_same_intersection_as_the_local_pool(compute):
    ids = _ids(np.random.default_rng(1), guest=3_000, host=12_000, shared=1_500)
    on_ray, errors = _psi(ids, compute)
    assert not errors, errors
    local, errors = _psi(ids, LocalCompute())
    assert not errors, errors
    for results in (on_ray, local):
        rows = shared_ids(results, ids)
        assert rows["guest"] == rows["host"]  # both parties hold the shared ids in one order
        assert set(rows["host"]) == {f"c{i}" for i in range(1_500)} and len(rows["host"]) == 1_500


@pytest.fixture
def histograms_on(monkeypatch):
    """Make this process's backend ``compute`` and spread every histogram build, however small."""
    from isthmus.compute import select
    from isthmus.tree import hist_kernel

    def use(compute):
        monkeypatch.setattr(select, "_current", compute)
        monkeypatch.setattr(hist_kernel, "PARALLEL_THRESHOLD", 0)
    return use


def test_histograms_on_ray_are_the_local_ciphertexts(compute, histograms_on, paillier_1024):
    from isthmus.tree.hist_kernel import HistogramKernel
    from isthmus.tree.gh import slots_per_plaintext

    public, _ = paillier_1024
    rng = np.random.default_rng(3)
    rows, n_bins = 400, np.array([5, 33, 2, 17])
    width = (int(public.nsquare).bit_length() + 7) // 8
    ciphertexts = rng.integers(0, 256, size=(rows, width), dtype=np.uint8)
    ciphertexts[:, 0] = 0  # below n^2
    binned = np.stack([rng.integers(0, b, size=rows) for b in n_bins], axis=1).astype(np.uint8)
    nodes = [(np.arange(rows), binned), (np.arange(0, rows, 3), binned[::3]), (np.arange(0), binned[:0])]
    histograms_on(compute)
    on_ray = HistogramKernel(public.nsquare, slots_per_plaintext(public.bits)).build(ciphertexts, nodes, n_bins)
    local = HistogramKernel(public.nsquare, slots_per_plaintext(public.bits), LocalCompute()).build(
        ciphertexts, nodes, n_bins)
    assert on_ray == local


def test_secureboost_with_the_host_on_ray_grows_the_reference_trees(compute, histograms_on):
    from test_secureboost_protocol import assert_same_trees, federated
    from sklearn.datasets import load_breast_cancer

    from isthmus.tree.booster import SecureBoostReference

    X, y = load_breast_cancer(return_X_y=True)
    X_guest, X_host = X[:, :10], X[:, 10:]
    params = {"n_trees": 2, "max_depth": 3, "seed": 5}
    histograms_on(compute)
    guest, _, _ = federated(LocalHub(["guest", "host"]), X_guest, y, {"host": X_host}, predict=False, **params)
    reference = SecureBoostReference(**params).fit([X_guest, X_host], y)
    assert_same_trees(guest, reference)
    assert 1 in {party for tree in guest.ensemble_.trees for party in tree.party}  # the host did split


def test_an_isthmus_version_mismatch_is_named(compute, monkeypatch):
    """The cluster's workers run this isthmus; the party claims another (checked on the open connection)."""
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.9.9" if name == "isthmus" else real(name))
    with pytest.raises(ComputeError, match=r"its workers run isthmus .* this party isthmus 9\.9\.9"):
        compute._verify(ray)


def test_a_hostile_point_sent_to_a_host_on_ray_is_the_same_protocol_error(compute):
    """A peer's invalid point fails the Ray task with the function's own ValueError, which the host reports
    as a ProtocolError naming the peer, exactly as with the local pool (not as a cluster fault, not a hang)."""
    from isthmus.errors import ProtocolError
    from isthmus.protocols import psi
    from test_psi import _hello, _host_and_fake_guest, _points

    def fake_guest(channel):
        channel.send("host", psi.TAG_HELLO, _hello())
        channel.recv("host", psi.TAG_REPLY)
        channel.send("host", psi.TAG_START, {"go": True})
        channel.send("host", psi.TAG_GUEST_POINTS, (1).to_bytes(32, "little") + _points(2))

    _, errors = _host_and_fake_guest(fake_guest, compute=compute)
    error = errors["host"]
    assert isinstance(error, ProtocolError) and "small order" in str(error), error
    assert error.peer == "guest" and error.tag == psi.TAG_GUEST_POINTS


@pytest.mark.e2e
def test_launch_runs_the_hosts_psi_on_its_cluster(cluster, compute, tmp_path):
    """Real party processes: `isthmus launch --compute host=ray://...`; the guest stays on its local pool. The host's
    ids are read from its CSV by the cluster's tasks."""
    import subprocess
    import sys

    from isthmus.jobs.local import loopback_parties, write_job

    ids = _ids(np.random.default_rng(4), guest=300, host=3_000, shared=200)
    for party, values in ids.items():
        (tmp_path / f"{party}.csv").write_text("id,x\n" + "".join(f"{v},1\n" for v in values))
    parties = {party: {"data": {"path": str(tmp_path / f"{party}.csv"), "id": "id"}} for party in ids}
    job = write_job(tmp_path / "job.yaml", {"job": "ray-psi", "parties": loopback_parties(parties),
                                            "steps": [{"intersect": {}}]})
    result = subprocess.run([sys.executable, "-m", "isthmus", "launch", str(job), "--out", str(tmp_path / "run"),
                             "--compute", f"host={cluster.address}"], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"compute backend: {cluster.address}" in (tmp_path / "run" / "host" / "party.log").read_text()
    assert "compute backend: local" in (tmp_path / "run" / "guest" / "party.log").read_text()
    shared = [json.loads(line) for line in (tmp_path / "run" / "host" / "events.jsonl").read_text().splitlines()]
    assert any(event.get("shared_rows") == 200 for event in shared)
    assert any(event.get("stage") == "read and blind own set" for event in shared)  # the cluster read its ids


def test_a_worker_node_killed_mid_job_gives_the_right_intersection_or_a_clear_error(cluster, compute,
                                                                                     ray_node_1_restarted):
    """The worker node is killed while it runs one of the host's tasks: Ray re-runs the lost task on the head;
    if it could not, the job would fail with a ComputeError. Never a wrong intersection."""
    # Ray may place every task of a small job on the head (seen in CI under load): larger jobs until one lands on node 1
    for host_rows in (30_000, 90_000, 270_000):
        ids = _ids(np.random.default_rng(2), guest=2_000, host=host_rows, shared=1_000)
        with killing_node_1_when_busy(cluster) as killed:
            results, errors = _psi(ids, compute)
        if killed.is_set():
            break
    assert killed.is_set(), "node 1 never ran a task"
    if errors:
        assert isinstance(errors.get("host"), ComputeError), errors
        return
    rows = shared_ids(results, ids)
    assert rows["guest"] == rows["host"] and set(rows["host"]) == {f"c{i}" for i in range(1_000)}
