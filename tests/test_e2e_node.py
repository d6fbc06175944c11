"""Three nodes as real processes on loopback: a proposal from the host, the guest's manual approval, PSI and
vertical LR run by each node's runner, the result in the guest's store; a restarted node fails its job."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from isthmus.cli_node import node_app
from isthmus.compute.ray_local import _descendants
from isthmus.errors import ConfigError
from isthmus.jobs.rundir import locked

from isthmus.node.client import NodeClient
from isthmus.node.peers import CONTROL_JOB, TAG
from isthmus.node.local import api_url, running_nodes, start_node, wait_ready
from isthmus.node.runner import job_folder
from isthmus.node.service import RESTARTED, STOPPED
from isthmus.node.serving import PING_S
from isthmus.node.status import PING_S as STATUS_PING_S
from isthmus.node.store import Store
from isthmus.transport.certs import tls_files_for
from isthmus.transport.grpc_transport import GrpcNode
from tests.node_helpers import federation, free_port_range, proposal

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HOST_JOB_PORTS = free_port_range(5, start=24_000)


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


def long_job_running(clients: dict[str, NodeClient], at: str) -> str:
    """A job proposed by the host that the guest approved, running at ``at`` (and for a while after)."""
    job_id = clients["host"].submit(proposal(epochs=200))
    wait(clients["guest"], job_id, "pending", timeout=15)
    clients["guest"].approve(job_id)
    wait(clients[at], job_id, "running", timeout=15)
    return job_id


def _still_running(run, timeout: float = 10.0) -> bool:
    """Whether a process still holds the job's run folder (its lock) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with locked(run):
                return False
        except ConfigError:
            if time.monotonic() > deadline:
                return True
            time.sleep(0.2)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    configs = federation(tmp_path_factory.mktemp("nodes"))
    with configs["host"].open("a", encoding="utf-8") as host_config:  # the host's firewall opens a few ports
        host_config.write(f"job_ports: '{HOST_JOB_PORTS.start}-{HOST_JOB_PORTS.stop - 1}'\n")
    with running_nodes(configs) as processes:  # the tests replace and kill some of them
        yield configs, processes, {party: NodeClient(api_url(path)) for party, path in configs.items()}


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
    document = yaml.safe_load((job_folder(configs["host"].parent / "store", job_id) / "job.yaml").read_text())
    assert int(document["parties"]["host"]["address"].rpartition(":")[2]) in HOST_JOB_PORTS


def test_the_published_model_predicts_online_as_in_batch(nodes):
    configs, _, clients = nodes
    job_id = next(job["id"] for job in clients["guest"].jobs() if job["status"] == "finished")
    assert clients["guest"].publish(job_id, "credit-v1")["hosts"] == ["host"]
    batch = pd.read_csv(job_folder(configs["guest"].parent / "store", job_id) / "run" / "predictions.csv")
    ids = [str(i) for i in batch["id"][:50]]
    online = clients["guest"].predict("credit-v1", ids)
    assert np.max(np.abs(np.array(online) - batch["score"][:50].to_numpy())) < 1e-9
    assert clients["guest"].predict("credit-v1", ids[:1]) == pytest.approx(online[:1], abs=1e-12)  # BLAS may sum one row in another order
    with pytest.raises(ConfigError, match="unknown id: the guest's table"):
        clients["guest"].predict("credit-v1", ["cust-99999"])
    data = configs["guest"].parent.parent / "data"
    guest_only = sorted(set(pd.read_csv(data / "guest.csv")["id"]) - set(pd.read_csv(data / "host.csv")["id"]))[0]
    with pytest.raises(ConfigError, match=r"hosts refused the prediction: 'host': its table lacks one of the ids "
                                          r"\(a host does not say which\)"):
        clients["guest"].predict("credit-v1", [str(guest_only)])
    with pytest.raises(ConfigError, match="no published model"):
        clients["host"].predict("credit-v1", ids[:1])  # a host serves its part to the guest only
    impostor_asks(configs, "host", ids[:3])  # the arbiter, a member, asks the host for its part's scores
    served = [json.loads(line) for line in (configs["host"].parent / "store" / "serving.jsonl").read_text().splitlines()]
    assert [(entry["guest"], entry["outcome"]) for entry in served] == [
        ("guest", "served"), ("guest", "served"), ("guest", "unknown id"), ("arbiter", "unknown model")]
    assert str(guest_only) not in json.dumps(served)
    assert not any(i in json.dumps(served) for i in ids)  # the host's log holds no id


def test_model_versions_through_the_api(nodes):
    configs, _, clients = nodes
    guest, host = clients["guest"], clients["host"]
    job_id = next(job["id"] for job in guest.jobs() if job["status"] == "finished")
    assert [guest.publish(job_id, "scorer")["version"] for _ in range(2)] == [1, 2]
    ids = [str(i) for i in pd.read_csv(job_folder(configs["guest"].parent / "store", job_id) / "run" /
                                       "predictions.csv")["id"][:3]]
    assert guest.predict("scorer", ids, version=1) == guest.predict("scorer", ids)
    assert guest.rollback("scorer") == {"name": "scorer", "version": 1}
    assert host.unpublish("scorer", 1)["unpublished"] == [1]  # the host withdraws what the guest now serves
    with pytest.raises(ConfigError, match="refused the prediction: 'host': unknown model"):
        guest.predict("scorer", ids)
    assert len(guest.predict("scorer", ids, version=2)) == 3
    guest.unpublish("scorer")
    assert [(m["version"], m["status"], m["current"]) for m in guest.models() if m["name"] == "scorer"] == [
        (1, "unpublished", False), (2, "unpublished", False)]


def impostor_asks(configs, host: str, ids: list[str]) -> None:
    """The arbiter's keys, used to send the host a prediction request for the guest's model."""
    keys = configs["arbiter"].parent / "keys"
    members = yaml.safe_load((configs["arbiter"].parent / "federation.yaml").read_text())["members"]
    node = GrpcNode("arbiter", "127.0.0.1:0", {host: members[host]}, tls_files_for(keys, "arbiter"), connect_timeout=5)
    with node:
        node.channel(CONTROL_JOB).send(host, TAG, {"kind": "predict", "job": "0" * 16, "name": "credit-v1",
                                                   "version": 1, "rid": "0" * 16, "ids": ids})
    deadline = time.monotonic() + 10
    log = configs[host].parent / "store" / "serving.jsonl"
    while time.monotonic() < deadline and "arbiter" not in log.read_text():
        time.sleep(0.1)


def test_a_node_restarted_during_a_job_marks_it_failed_and_its_peers_stop(nodes):
    configs, processes, clients = nodes
    job_id = long_job_running(clients, at="guest")
    processes["guest"].kill()
    processes["guest"].wait()
    log = configs["guest"].parent / "node.log"
    processes["guest"] = start_node(configs["guest"], log)
    wait_ready(api_url(configs["guest"]), processes["guest"], log)
    job = clients["guest"].job(job_id)
    assert job["status"] == "failed" and job["reason"] == RESTARTED
    run = job_folder(configs["guest"].parent / "store", job_id) / "run"
    assert not _still_running(run), "the killed node's party process outlived it"
    first = next(j["id"] for j in clients["guest"].jobs() if j["status"] == "finished")
    batch = pd.read_csv(job_folder(configs["guest"].parent / "store", first) / "run" / "predictions.csv")
    again = clients["guest"].predict("credit-v1", [str(batch["id"][0])])  # served again after the restart
    assert abs(again[0] - batch["score"][0]) < 1e-9
    # Each peer stops: told of the guest's restart, or failing on its own as the guest's process ended (its
    # record names the guest), or told first of the other peer's failure (which a suite run once showed:
    # the arbiter failed 16 ms into training and its node told the host before the guest's node was back).
    reasons = {party: wait(clients[party], job_id, "failed", timeout=30)["reason"] for party in ("host", "arbiter")}
    assert any("guest" in reason for reason in reasons.values()), reasons


def test_a_party_process_killed_mid_job_is_told_to_its_peers_at_once(nodes):
    """Its node saw the process end at once, but only marked the job: the guest then failed after its 60 s
    connect timeout, the arbiter after 118 s."""
    configs, _, clients = nodes
    job_id = long_job_running(clients, at="host")
    marker = job_folder(configs["host"].parent / "store", job_id) / "run" / "run.json"
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(json.loads(marker.read_text())["pid"], signal.SIGKILL)  # as the kernel's out-of-memory killer does
    assert wait(clients["host"], job_id, "failed", timeout=15)["reason"].startswith("its process ended with status")
    ended = json.loads(marker.read_text())  # it said "running" for ever: the killed process could not mark it
    assert (ended["status"], ended["error"]) == ("failed", "its process was killed (SIGKILL)"), ended
    for party in ("guest", "arbiter"):
        assert wait(clients[party], job_id, "failed", timeout=15)["reason"] == \
            "host: its side of the job failed; the details are in its own log"


def test_a_second_start_is_refused_sigterm_stops_cleanly_and_a_job_proposed_meanwhile_fails(nodes):
    """A second start on the node's store is refused without touching it. On SIGTERM, uvicorn raises the
    signal again after its own shutdown: the default action used to end the node there, before it stopped
    its jobs and ports, so its peers waited out their timeouts. Now it exits 0, its job is failed with the
    reason, the job's process is gone and the peers stop the job naming the node. A job proposed while it
    is down fails naming it (it used to stay pending)."""
    configs, processes, clients = nodes
    job_id = long_job_running(clients, at="arbiter")
    second = subprocess.run([sys.executable, "-m", "isthmus", "node", "start", "--config", str(configs["arbiter"])],
                            capture_output=True, text=True, timeout=60)  # started twice by mistake
    assert second.returncode == 1 and "is that node running already?" in second.stderr, second.stderr
    assert clients["arbiter"].job(job_id)["status"] == "running"  # it used to mark it failed, as after a crash
    processes["arbiter"].terminate()
    assert processes["arbiter"].wait(timeout=30) == 0
    assert Store(configs["arbiter"].parent / "store" / "node.sqlite").job(job_id)["reason"] == STOPPED
    assert not _still_running(job_folder(configs["arbiter"].parent / "store", job_id) / "run")
    for party in ("guest", "host"):
        assert wait(clients[party], job_id, "failed", timeout=15)["reason"] == f"arbiter: {STOPPED}"
    job_id = clients["guest"].submit(proposal())
    for party in ("guest", "host"):
        failed = wait(clients[party], job_id, "failed", timeout=30)
        assert "the node of arbiter could not be reached" in failed["reason"], failed


def test_with_a_host_down_a_prediction_fails_naming_it_and_works_once_it_is_back(nodes):
    configs, processes, clients = nodes
    processes["host"].kill()
    processes["host"].wait()
    started = time.monotonic()
    status = CliRunner().invoke(node_app, ["status", "--node", clients["guest"].url])
    assert time.monotonic() - started < 2 * STATUS_PING_S and status.exit_code == 3, status.output
    assert re.search(r"^  host +\S+ +no answer to a ping$", status.stdout, re.M), status.stdout  # (the arbiter's
    # node is down since the test before)
    assert re.search(r"^certificate valid until 20\d\d-\d\d-\d\d \(36\d days\)$", status.stdout, re.M), status.stdout
    ids = [str(i) for i in pd.read_csv(configs["guest"].parent.parent / "data" / "guest.csv")["id"][:1]]
    started = time.monotonic()
    with pytest.raises(ConfigError, match="host 'host' did not answer .* no connection within 2.5 s: nothing listens"):
        clients["guest"].predict("credit-v1", ids)  # it retried the host for the node's whole timeout
    assert time.monotonic() - started < 2 * PING_S
    started = time.monotonic()
    with pytest.raises(ConfigError, match="host 'host' did not answer .* it is down \\(no answer to a ping"):
        clients["guest"].predict("credit-v1", ids)  # the second one too waited out the node's timeout before
    assert time.monotonic() - started < 2 * PING_S
    published = clients["guest"].models()
    started = time.monotonic()
    with pytest.raises(ConfigError, match="host 'host' does not answer a ping: .* nothing was published"):
        clients["guest"].publish(published[0]["job"], "credit-v1")  # it took the node's timeout, naming nobody
    assert time.monotonic() - started < 2 * PING_S and clients["guest"].models() == published  # no version spent
    with ThreadPoolExecutor(60) as pool:  # sixty predictions at once had left the guest's API unable to answer
        answers = [pool.submit(httpx.post, f"{clients['guest'].url}/v1/models/credit-v1/predict", json={"ids": ids},
                               timeout=60) for _ in range(60)]
        asked = time.monotonic()
        clients["guest"].jobs()
        assert time.monotonic() - asked < 2
        statuses = {answer.result().status_code for answer in answers}
    assert statuses <= {502, 503} and time.monotonic() - started < 8 * PING_S  # the host named, or busy
    log = configs["host"].parent / "node.log"
    processes["host"] = start_node(configs["host"], log)
    wait_ready(api_url(configs["host"]), processes["host"], log)
    assert len(clients["guest"].predict("credit-v1", ids)) == 1  # the guest's node did not give up on it for good
    assert {name: peer["answers"] for name, peer in clients["guest"].status(peers=True)["peers"].items()} == {
        "arbiter": False, "host": True}


def test_a_taken_api_port_stops_the_node_before_it_touches_its_store(tmp_path):
    configs = federation(tmp_path)
    host, _, port = yaml.safe_load(configs["guest"].read_text())["api"]["listen"].rpartition(":")
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        started = subprocess.run([sys.executable, "-m", "isthmus", "node", "start", "--config", str(configs["guest"])],
                                 capture_output=True, text=True, timeout=60)
    assert started.returncode == 1, started.stderr  # uvicorn exited with its own message and status 3
    assert f"error: node 'guest' cannot serve its API on {host}:{port}: Address already in use" in started.stderr
    assert not (configs["guest"].parent / "store" / "node.sqlite").exists()


def test_the_api_socket_the_node_binds_gets_tcp_nodelay(tmp_path):
    """asyncio sets TCP_NODELAY on the connections of a socket only when it says IPPROTO_TCP; the node's own
    bind left it out, and every API answer then waited about 40 ms for a delayed ACK (a prediction's p50,
    benchmarks/serving.py: 13 ms before, 56 ms after)."""
    from isthmus.node.config import load_node_config
    from isthmus.node.service import _api_socket

    with _api_socket(load_node_config(federation(tmp_path)["guest"])) as api:
        assert (api.family, api.type, api.proto) == (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)


def test_a_node_starts_its_fork_server_before_any_job(tmp_path):
    """So that its first job's processes need not wait for the party stack's imports (2-4 s on 2 cores with
    every node of a federation importing at once; benchmarks/serving.py)."""
    config = federation(tmp_path)["guest"]
    log = config.parent / "node.log"
    node = start_node(config, log)
    try:
        wait_ready(api_url(config), node, log)
        commands = [_command_line(pid) for pid in _descendants(node.pid)]
        assert any("multiprocessing.forkserver" in command for command in commands), commands
    finally:
        node.terminate()
        node.wait()


def _command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:  # it ended meanwhile
        return ""
