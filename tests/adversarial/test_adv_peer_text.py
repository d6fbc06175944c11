"""A peer's free text (its abort notice, a gRPC refusal, a node's vote, its job summary) reaches this party's
terminal, log, store and board. Shown as it came, a hostile member could clear the operator's screen or
rewrite the line that says a job failed (terminal escapes), forge lines of the party's log (newlines) or
reverse text (bidi overrides). Each arrives escaped, every character printable."""

from __future__ import annotations

import grpc
import pytest
from test_agreement import plan

from isthmus.errors import PeerAbortedError, PeerRefusedError, printable
from isthmus.jobs.agreement import TAG, JobMismatchError, check_same_job, job_summary
from isthmus.transport.certs import create_federation, tls_files_for
from isthmus.transport.grpc_transport import GrpcNode
from isthmus.transport.local import LocalHub
from isthmus.transport.mailbox import ABORT_TAG
from isthmus.transport.ports import free_ports
from tests.node_helpers import federation, local_nodes, proposal

HOSTILE = "job done\x1b[2J\x1b]0;owned\x07\r\n12:00:00 step=train status=done\u202eexe.txt"


def escaped(text: str) -> bool:
    return text.isprintable() and "\\x1b[2J" in text and "\\n12:00:00" in text


@pytest.fixture
def alice_and_bob(tmp_path):
    """Two nodes of one federation over loopback mutual TLS: alice the hostile member, bob its victim."""
    create_federation(tmp_path, ["alice", "bob"])
    addresses = dict(zip(["alice", "bob"], (f"127.0.0.1:{port}" for port in free_ports(2))))
    nodes = {name: GrpcNode(name, addresses[name], addresses, tls_files_for(tmp_path, name), connect_timeout=3)
             for name in addresses}
    yield nodes
    for node in nodes.values():
        node.stop()


def test_an_abort_notice_is_shown_escaped(alice_and_bob):
    alice, bob = alice_and_bob["alice"], alice_and_bob["bob"]
    bob.open_job("job")
    bob.start()
    alice.deliver("bob", "job", ABORT_TAG, HOSTILE.encode())
    with pytest.raises(PeerAbortedError) as told:
        bob.channel("job").recv("alice", "anything", timeout=5)
    assert escaped(str(told.value)) and escaped(told.value.reason)


def test_a_refusal_from_a_peers_server_is_shown_escaped(alice_and_bob):
    """The words of a gRPC refusal are written by the receiving peer's server: alice's answers every delivery
    with its own."""
    alice, bob = alice_and_bob["alice"], alice_and_bob["bob"]
    alice.inbox.deliver = lambda chunks, context: context.abort(grpc.StatusCode.INVALID_ARGUMENT, HOSTILE)
    alice.start()
    bob.start()
    with pytest.raises(PeerRefusedError) as refused:
        bob.deliver("alice", "job", "hello", b"\x90")
    assert escaped(str(refused.value))


def test_a_nodes_refusal_reason_is_stored_escaped(tmp_path):
    nodes = local_nodes(federation(tmp_path))
    try:
        host = nodes.coordinators["host"]
        job = host.submit(proposal())
        nodes.wait("arbiter", job, "accepted")
        host.handle("guest", {"kind": "vote", "job": job, "decision": "refuse", "reason": HOSTILE})
        reason = nodes.status("host", job)["reason"]
        assert escaped(reason), reason
    finally:
        nodes.stop()


def test_a_job_summary_is_named_escaped():
    hub = LocalHub(["guest", "host"])
    hub.channel("host", "same").send("guest", TAG, {**job_summary(plan()), "job": HOSTILE[:60]})
    with pytest.raises(JobMismatchError) as caught:
        check_same_job(hub.channel("guest", "same"), plan("guest"), ["host"])
    assert str(caught.value).isprintable() and "\\x1b[2J" in str(caught.value)


def test_printable_keeps_every_printable_character():
    assert printable("Zürich 北京 tab-free, 100% ok") == "Zürich 北京 tab-free, 100% ok"
    assert printable("a\tb\x00c\u200bd") == "a\\tb\\x00c\\u200bd"
