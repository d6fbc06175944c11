"""`isthmus job status --wait` says what the job waits for: it waited silently for as long as a proposer's
operator took to approve (hours), at a node that cannot see the other votes."""

from __future__ import annotations

import json
import threading

from isthmus.cli_node import waiting_for
from tests.board_helpers import job_cli, pending_job
from tests.node_helpers import federation, local_nodes

PARTIES = {"guest": "guest", "host": "host", "arbiter": "arbiter"}


def job(status: str, votes: tuple[str, ...] = (), reason: str | None = None) -> dict:
    return {"status": status, "proposer": "host", "parties": PARTIES, "reason": reason,
            "votes": {party: {"decision": "accept", "reason": None} for party in votes}}


def test_the_proposers_node_names_who_has_not_answered():
    pending = job("pending", ("guest", "arbiter"), "waiting for the operator: isthmus job approve/refuse")
    assert waiting_for(pending, "host", []) == ("pending: waiting for the operator: isthmus job approve/refuse; "
                                                "no answer yet from host")
    assert waiting_for(job("accepted", ("host",)), "host", []) == "accepted; no answer yet from arbiter, guest"
    assert waiting_for(job("accepted", tuple(PARTIES)), "host", []) == "accepted; every party consented"


def test_another_node_says_whose_turn_it_is():
    assert waiting_for(job("accepted", ("guest",)), "guest", []) == (
        "accepted here; host, the proposer, starts the job once every party has consented")
    assert waiting_for(job("pending", (), "waiting for the operator: isthmus job approve/refuse"), "guest", []) == (
        "pending here: waiting for the operator: isthmus job approve/refuse")


def test_a_running_job_shows_its_step_and_epoch():
    events = [{"source": "node", "status": "running"}, {"source": "run", "step": "intersect", "status": "done"},
              {"source": "run", "step": "train", "epoch": 3, "epochs": 5, "loss": 0.4}]
    assert waiting_for(job("running"), "guest", events[:1]) == "running: starting"
    assert waiting_for(job("running"), "guest", events[:2]) == "running: step intersect"
    assert waiting_for(job("running"), "guest", events) == "running: step train, epoch 3/5"


def test_the_cli_says_what_a_pending_job_waits_for_and_that_it_has_no_log_yet(tmp_path, monkeypatch):
    """Through a node's API (in process): `job logs` printed nothing at all for a job that had not run."""
    nodes = local_nodes(federation(tmp_path))
    try:
        job_id, cli = pending_job(nodes), job_cli(nodes, "guest", monkeypatch)
        logs = cli("logs", job_id)
        assert logs.exit_code == 0 and logs.stdout == ""
        assert logs.stderr == f"job {job_id} has no log here (it is pending; its side writes one once it runs)\n"
        operator = threading.Timer(1.0, nodes.coordinators["guest"].refuse, (job_id, "not this quarter"))
        operator.start()
        waited = cli("status", job_id, "--wait")
        operator.join()
        assert waited.exit_code == 0 and json.loads(waited.stdout)["status"] == "refused", waited.output
        assert waited.stderr == "[0 s] pending here: waiting for the operator: isthmus job approve/refuse\n"
    finally:
        nodes.stop()
