"""Three nodes as real processes on loopback: a proposal from the host, the guest's manual approval, PSI and
hetero LR run by each node's runner, the result in the guest's store; a restarted node fails its job."""

from __future__ import annotations

import json
import time

import pytest

from isthmus.errors import ConfigError

from isthmus.node.client import NodeClient
from isthmus.node.local import api_url, start_node, wait_ready
from isthmus.node.runner import job_folder
from isthmus.node.service import RESTARTED
from tests.node_helpers import federation, proposal

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def wait(client: NodeClient, job_id: str, *statuses: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    job = None
    while time.monotonic() < deadline:
        try:
            job = client.job(job_id)
        except ConfigError:  # the proposal has not reached this node yet
            time.sleep(0.2)
            continue
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise AssertionError(f"{client.url}: job {job_id} is {job}, not {statuses}")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    configs = federation(tmp_path_factory.mktemp("nodes"))
    processes = {party: start_node(path, path.parent / "node.log") for party, path in configs.items()}
    try:
        clients = {}
        for party, path in configs.items():
            wait_ready(api_url(path), processes[party], path.parent / "node.log")
            clients[party] = NodeClient(api_url(path))
        yield configs, processes, clients
    finally:
        for process in processes.values():
            process.kill()
            process.wait()


def test_a_job_proposed_by_the_host_runs_after_the_guests_approval(nodes):
    configs, _, clients = nodes
    job_id = clients["host"].submit(proposal())
    wait(clients["guest"], job_id, "pending", timeout=15)
    assert clients["host"].job(job_id)["status"] == "accepted"
    clients["guest"].approve(job_id)
    for party in ("guest", "host", "arbiter"):
        assert wait(clients[party], job_id, "finished", "failed")["status"] == "finished", clients[party].logs(job_id)
    metrics = json.loads((job_folder(configs["guest"].parent / "store", job_id) / "run" / "metrics.json").read_text())
    assert metrics["metrics"]["auc"] > 0.9
    events = clients["guest"].events(job_id)
    assert any(e.get("step") == "train" and e["source"] == "run" for e in events)
    job = clients["guest"].job(job_id)
    assert job["votes"] == {"guest": {"decision": "accept", "reason": None}} and job["proposer"] == "host"
    assert set(clients["host"].job(job_id)["votes"]) == {"guest", "host", "arbiter"}


def test_a_node_restarted_during_a_job_marks_it_failed_and_its_peers_stop(nodes):
    configs, processes, clients = nodes
    job_id = clients["host"].submit(proposal(epochs=200))
    wait(clients["guest"], job_id, "pending", timeout=15)
    clients["guest"].approve(job_id)
    wait(clients["guest"], job_id, "running", timeout=15)
    processes["guest"].kill()
    processes["guest"].wait()
    log = configs["guest"].parent / "node.log"
    processes["guest"] = start_node(configs["guest"], log)
    wait_ready(api_url(configs["guest"]), processes["guest"], log)
    job = clients["guest"].job(job_id)
    assert job["status"] == "failed" and job["reason"] == RESTARTED
    for party in ("host", "arbiter"):
        stopped = wait(clients[party], job_id, "failed", timeout=30)
        assert stopped["reason"] in (f"guest: {RESTARTED}",) or "guest" in stopped["reason"], stopped
