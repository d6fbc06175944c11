"""The nodes' link over real gRPC: a member that is down holds up only the messages sent to it; a message this
node cannot send is reported."""

from __future__ import annotations

import time

from isthmus.node.peers import CONTROL_JOB, TAG, PeerLink
from isthmus.transport.audit import AuditError
from isthmus.transport.ports import free_ports
from tests.grpc_helpers import make_certs, node_starter
from tests.node_helpers import federation, local_nodes, proposal


def test_messages_to_a_member_that_is_down_do_not_delay_the_others(tmp_path):
    """Each send to a node that is down waits out the node's timeout (3 s here): on four shared threads,
    four of them had held every message to every other member for that long. Those queued behind the
    first are given up with it; a message sent after that tries again, and reaches the member once back."""
    certs = make_certs(tmp_path / "certs")
    addresses = {party: f"127.0.0.1:{port}" for party, port in zip(["alice", "bob", "carol"], free_ports(3))}
    with node_starter(certs, addresses, tmp_path) as start:  # bob's node starts late
        alice, carol = start("alice", connect_timeout=3.0), start("carol", jobs=[CONTROL_JOB])
        undelivered: list[str] = []
        link = PeerLink(alice.channel(CONTROL_JOB), ["alice", "bob", "carol"], lambda sender, message: None,
                        on_failure=lambda peer, message, exc: undelivered.append(peer))
        link.start()
        try:
            for i in range(6):
                link.send("bob", {"kind": "failed", "job": f"job-{i}", "reason": "stopped"})
            sent = time.monotonic()
            link.send("carol", {"kind": "failed", "job": "job-c", "reason": "stopped"})
            assert carol.channel(CONTROL_JOB).recv("alice", TAG, timeout=10)["job"] == "job-c"
            assert time.monotonic() - sent < 1.5
            deadline = time.monotonic() + 10
            while len(undelivered) < 6:
                assert time.monotonic() < deadline, undelivered
                time.sleep(0.05)
            assert time.monotonic() - sent < 5  # one timeout for the six, not six
            bob = start("bob", jobs=[CONTROL_JOB])
            link.send("bob", {"kind": "failed", "job": "job-b", "reason": "stopped"})
            assert bob.channel(CONTROL_JOB).recv("alice", TAG, timeout=10)["job"] == "job-b"
        finally:
            link.stop()
        assert undelivered == ["bob"] * 6


def test_a_message_this_node_cannot_record_is_reported_not_lost(tmp_path):
    """With the node's audit log unwritable (a full disk) a send raised AuditError into its queue's future, which
    no one reads: a proposal or vote vanished without a word, and its job waited for its answer time (72 h)."""
    certs = make_certs(tmp_path / "certs")
    addresses = {party: f"127.0.0.1:{port}" for party, port in zip(["alice", "bob"], free_ports(2))}
    with node_starter(certs, addresses, tmp_path) as start:
        alice, bob = start("alice"), start("bob", jobs=[CONTROL_JOB])
        alice.audit.path.mkdir(parents=True)  # where its audit log should be: every record fails, naming it
        undelivered: list[tuple[str, Exception]] = []
        link = PeerLink(alice.channel(CONTROL_JOB), ["alice", "bob"], lambda sender, message: None,
                        on_failure=lambda peer, message, exc: undelivered.append((peer, exc)))
        link.start()
        try:
            link.send("bob", {"kind": "propose", "job": "job-1"}).result(timeout=10)
        finally:
            link.stop()
    [(peer, error)] = undelivered
    assert peer == "bob" and isinstance(error, AuditError) and str(alice.audit.path) in str(error)


def test_a_job_whose_proposal_this_node_cannot_send_fails_here_and_tells_only_the_kind(tmp_path):
    nodes = local_nodes(federation(tmp_path))
    try:
        host = nodes.coordinators["host"]
        job_id = host.submit(proposal())
        error = AuditError("party 'host' cannot write its audit log: No space left on device: /srv/isthmus/audit.jsonl")
        told: list[dict] = []
        host.send = lambda peer, message: told.append(message)
        host.undelivered("guest", {"kind": "propose", "job": job_id}, error)
    finally:
        nodes.stop()
    job = host.store.job(job_id)
    assert job["status"] == "failed"
    assert job["reason"] == f"this node could not send its propose to guest: {error}"
    assert {m["kind"] for m in told} == {"failed"} and all("/srv" not in m["reason"] for m in told)
    assert told[0]["reason"] == "host: this node could not send its propose to guest: AuditError (details in the party's own log)"
