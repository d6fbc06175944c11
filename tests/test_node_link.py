"""The nodes' link over real gRPC: a member that is down holds up only the messages sent to it."""

from __future__ import annotations

import time

from isthmus.node.peers import CONTROL_JOB, TAG, PeerLink
from isthmus.transport.ports import free_ports
from tests.grpc_helpers import make_certs, node_starter


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
