"""gRPC transport over loopback mutual TLS: delivery, identities, limits, timeouts, audit."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import struct
import subprocess
import sys
import re
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from grpc_helpers import PARTIES, make_certs, node_starter, redate, tls

from isthmus.errors import (
    ConfigError,
    PeerAbortedError,
    PeerGoneError,
    PeerRefusedError,
    PeerTimeoutError,
    PeerUnreachableError,
    ProtocolError,
)
from isthmus.horizontal.fleet import ChannelFleet
from isthmus.horizontal.participant import REQUEST_TAG, reply_tag
from isthmus.transport import codec
from isthmus.transport import grpc_inbox as inbox_module
from isthmus.transport.audit import AuditLog
from isthmus.transport.grpc_transport import GrpcNode
from isthmus.transport.mailbox import Mailbox
from isthmus.transport.ports import free_ports


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def addresses() -> dict[str, str]:
    return {party: f"127.0.0.1:{port}" for party, port in zip(PARTIES, free_ports(len(PARTIES)))}


@pytest.fixture
def start(certs: Path, addresses: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., GrpcNode]]:
    with node_starter(certs, addresses, tmp_path) as start:
        yield start


def test_round_trip_between_two_nodes_is_audited_on_both_sides(start):
    alice, bob = start("alice"), start("bob", jobs=["job-1"])
    message = {"weights": np.arange(12.0).reshape(3, 4), "round": 3, "big": 2**100, "names": ["x", "y"], "raw": b"\x00\xff"}
    alice.channel("job-1").send("bob", "update", message)
    got = bob.channel("job-1").recv("alice", "update", timeout=5)
    np.testing.assert_array_equal(got.pop("weights"), message.pop("weights"))
    assert got == message
    bob.channel("job-1").send("alice", "reply", "ok")
    assert alice.channel("job-1").recv("bob", "reply", timeout=5) == "ok"

    sent, received = alice.audit.entries()[0], bob.audit.entries()[0]
    assert (sent["party"], sent["direction"], sent["peer"], sent["job"], sent["tag"]) == ("alice", "send", "bob", "job-1", "update")
    assert (received["party"], received["direction"], received["peer"], received["job"], received["tag"]) == (
        "bob", "recv", "alice", "job-1", "update")
    assert sent["sha256"] == received["sha256"] and sent["bytes"] == received["bytes"]
    assert [e["direction"] for e in alice.audit.entries()] == ["send", "recv"]


def test_jobs_never_mix(start):
    alice, bob = start("alice"), start("bob", jobs=["job-1", "job-2"])
    alice.channel("job-1").send("bob", "x", 1)
    alice.channel("job-2").send("bob", "x", 2)
    assert bob.channel("job-2").recv("alice", "x", timeout=5) == 2
    assert bob.channel("job-1").recv("alice", "x", timeout=5) == 1
    with pytest.raises(PeerTimeoutError):
        bob.channel("job-2").recv("alice", "x", timeout=0.1)


def test_messages_under_one_tag_arrive_in_order_and_recv_any_names_the_sender(start):
    alice, bob, carol = start("alice"), start("bob"), start("carol", jobs=["j"])
    for i in range(5):
        alice.channel("j").send("carol", "n", i)
    assert [carol.channel("j").recv("alice", "n", timeout=5) for _ in range(5)] == list(range(5))
    bob.channel("j").send("carol", "hello", "from bob")
    assert carol.channel("j").recv_any(["alice", "bob"], "hello", timeout=5) == ("bob", "from bob")


def test_abort_reaches_a_waiting_peer(start):
    alice, bob = start("alice"), start("bob", jobs=["j"])
    alice.channel("j", peers=["bob"]).abort("out of memory")
    with pytest.raises(PeerAbortedError, match="out of memory"):
        bob.channel("j").recv("alice", "anything", timeout=5)


def test_a_peer_told_once_is_not_told_again_after_it_has_gone(start):
    """A failing guest's algorithm told its peers, which exited; the runner's own notice then retried
    them for a whole connect timeout (the launch killed the guest first, its run left "running")."""
    alice, bob = start("alice", connect_timeout=3.0), start("bob", jobs=["j"])
    job = alice.channel("j", peers=["bob"])
    job.scoped("1-train").abort("vertical linear guest failed: DataError")
    bob.stop(grace=0)
    started = time.monotonic()
    job.abort("step train failed at alice (DataError)")
    assert time.monotonic() - started < 1.0
    assert [e["tag"] for e in alice.audit.entries() if e["direction"] == "send"] == ["1-train/isthmus/abort"]


def test_an_abort_is_not_retried_to_a_peer_that_was_up_and_has_gone(start):
    """The arbiter's part ends with training, and its process exits; a guest failing later (in evaluate,
    in record) retried its notice to the arbiter for the whole connect timeout (a minute by default)."""
    alice, bob = start("alice", connect_timeout=3.0, jobs=["j"]), start("bob", jobs=["j"])
    bob.channel("j").send("alice", "result", "done")
    assert alice.channel("j").recv("bob", "result", timeout=5) == "done"
    bob.stop(grace=0)
    started = time.monotonic()
    alice.channel("j", peers=["bob"]).abort("step evaluate failed at alice (DataError)")
    assert time.monotonic() - started < 1.0


def test_an_abort_reaches_a_sender_that_started_after_a_failed_attempt(start, addresses):
    """gRPC answers with its connection's last error until its next attempt: a party whose pings of a peer still
    starting had failed, and which failed itself just after that peer's first message, took the stale error for
    the peer's end and dropped its notice; the peer waited out its timeout without a word."""
    alice = start("alice", jobs=["j"], give_up_on_unreachable=True)
    host, port = addresses["bob"].rsplit(":", 1)
    attempts = _DroppingListener(host, int(port))  # where bob is not up yet
    while len(attempts) < 6:  # gRPC now waits over a second before its next attempt
        alice.any_answers(["bob"], timeout=0.1)
    attempts.close()
    bob = start("bob", jobs=["j"])
    bob.channel("j").send("alice", "hello", 1)
    assert alice.channel("j").recv("bob", "hello", timeout=5) == 1
    alice.channel("j", peers=["bob"]).abort("step train failed at alice (DataError)")
    with pytest.raises(PeerAbortedError, match="step train failed at alice"):
        bob.channel("j").recv("alice", "anything", timeout=5)


def test_send_waits_for_a_peer_that_starts_late(start):
    alice, late = start("alice"), []
    starter = threading.Timer(0.5, lambda: late.append(start("bob", jobs=["j"])))
    starter.start()
    alice.channel("j").send("bob", "early", "hi")  # retried until bob listens
    starter.join()
    assert late[0].channel("j").recv("alice", "early", timeout=5) == "hi"


def test_separate_processes_exchange_arrays(start, certs, addresses):
    """Bob runs in his own process; alice sends before he listens, so the retry path is exercised too."""
    script = textwrap.dedent(
        """
        import sys
        from isthmus.transport.certs import tls_files_for
        from isthmus.transport.grpc_transport import GrpcNode
        cert_dir, listen, alice = sys.argv[1:4]
        node = GrpcNode("bob", listen, {"alice": alice}, tls_files_for(cert_dir, "bob"), connect_timeout=30)
        node.open_job("job-p")
        with node:
            channel = node.channel("job-p")
            numbers = channel.recv("alice", "numbers", timeout=60)
            channel.send("alice", "doubled", numbers * 2)
        """
    )
    bob = subprocess.Popen(
        [sys.executable, "-c", script, str(certs / "fed"), addresses["bob"], addresses["alice"]], stderr=subprocess.PIPE, text=True
    )
    try:
        alice = start("alice", connect_timeout=30)
        channel = alice.channel("job-p", peers=["bob"])
        channel.send("bob", "numbers", np.arange(1000, dtype=np.int64))
        np.testing.assert_array_equal(channel.recv("bob", "doubled", timeout=60), np.arange(1000) * 2)
        assert bob.wait(timeout=60) == 0
    finally:
        bob.kill()
        print(bob.communicate()[1])  # bob's errors, shown by pytest if the test fails


def test_a_client_certificate_from_another_ca_is_refused(start):
    alice = start("alice")
    impostor = start("bob", federation="rogue", connect_timeout=0.5)  # trusts alice, alice does not trust it
    with pytest.raises(PeerUnreachableError) as refused:
        impostor.channel("j").send("alice", "x", 1)
    assert refused.value.peer == "alice" and refused.value.tag == "x"
    with pytest.raises(PeerTimeoutError):
        alice.channel("j").recv("bob", "x", timeout=0.2)


def test_a_node_does_not_talk_to_a_server_of_another_ca(start):
    """...and says so at once: retrying a certificate its CA did not sign took the whole connect timeout."""
    alice = start("alice", connect_timeout=30)
    impostor = start("bob", federation="rogue")  # would accept alice, but alice does not trust it
    started = time.monotonic()
    with pytest.raises(PeerUnreachableError, match="not signed by this party's CA.*CERTIFICATE_VERIFY_FAILED"):
        alice.channel("j").send("bob", "x", 1)
    assert time.monotonic() - started < 10
    assert impostor.audit.entries() == []


@pytest.mark.parametrize(("starts", "ends", "reason"), [
    (-400, -1, "the peer's certificate has expired: the CA operator renews it .*certificate has expired"),
    (2, 300, "the peer's certificate is not valid yet: this machine's clock is behind.*not yet valid"),
])
def test_a_peer_whose_certificate_is_out_of_date_is_named_at_once(tmp_path, addresses, starts, ends, reason):
    """(Its own node refuses to start with it; one running while it expires is met this way.)"""
    certs = make_certs(tmp_path / "certs")
    redate(certs / "fed", "bob", starts_in_days=starts, ends_in_days=ends)
    with node_starter(certs, addresses, tmp_path) as start:
        alice = start("alice", connect_timeout=30)
        start("bob")
        started = time.monotonic()
        with pytest.raises(PeerUnreachableError, match=reason):
            alice.channel("j").send("bob", "x", 1)
        assert time.monotonic() - started < 10


@pytest.mark.parametrize(("starts", "ends", "reason"), [
    (-400, -1, "this party's certificate .* expired on .*every peer refuses it.*--renew.*started again"),
    (2, 300, "this party's certificate .* is valid only from .*set the clock right"),
])
def test_a_party_whose_own_certificate_is_out_of_date_is_told_so_at_once(tmp_path, addresses, starts, ends, reason):
    """A node running while its certificate expires: every peer closes the handshake, and the send saw only
    "Socket closed" for its whole connect timeout, blaming the peer."""
    certs = make_certs(tmp_path / "certs")
    redate(certs / "fed", "bob", starts_in_days=starts, ends_in_days=ends)
    with node_starter(certs, addresses, tmp_path) as start:
        start("alice")
        bob = start("bob", connect_timeout=30)
        started = time.monotonic()
        with pytest.raises(PeerUnreachableError, match=reason):
            bob.channel("j").send("alice", "x", 1)
        assert time.monotonic() - started < 10


def test_a_party_claiming_another_name_is_refused(start):
    carol = start("carol")
    mallory = start("bob", cert_of="alice")  # alice's valid certificate, claiming to be bob
    with pytest.raises(PeerRefusedError, match="claims to be 'bob'.*names \\['alice'\\]"):
        mallory.channel("j").send("carol", "x", 1)
    with pytest.raises(PeerTimeoutError):
        carol.channel("j").recv("bob", "x", timeout=0.2)
    with pytest.raises(PeerTimeoutError):
        carol.channel("j").recv("alice", "x", timeout=0.2)


def test_a_member_that_is_not_a_peer_is_refused(start, addresses):
    carol = start("carol", peers={"alice": addresses["alice"]})
    dave = start("dave")
    with pytest.raises(PeerRefusedError, match="not a peer"):
        dave.channel("j").send("carol", "x", 1)
    assert carol.audit.entries() == []


def test_client_refuses_a_server_whose_certificate_names_another_party(start, addresses):
    alice = start("alice", peers={"bob": addresses["carol"]}, connect_timeout=0.5)
    carol = start("carol")
    with pytest.raises(PeerUnreachableError, match="bob") as refused:
        alice.channel("j").send("bob", "x", 1)
    assert refused.value.address == addresses["carol"]
    assert carol.audit.entries() == []


def test_recv_timeout_names_peer_address_and_tag(start, addresses):
    start("alice")
    bob = start("bob", recv_timeout=0.2)
    channel = bob.channel("j")
    assert channel.default_timeout == 0.2
    with pytest.raises(PeerTimeoutError) as waited:
        channel.recv("alice", "gradients")
    assert (waited.value.peer, waited.value.address, waited.value.tag) == ("alice", addresses["alice"], "gradients")
    assert addresses["alice"] in str(waited.value) and "gradients" in str(waited.value)


def test_unreachable_peer_is_reported_after_the_connect_timeout(start, addresses):
    """Retried for the whole connect timeout, as the error says: the next backoff not fitting in it used to
    end the retries early (3.5 s of a query service's 5)."""
    alice = start("alice", connect_timeout=1.5)  # nobody listens at bob's address
    started = time.monotonic()
    with pytest.raises(PeerUnreachableError) as unreachable:
        alice.channel("j").send("bob", "hello", 1)
    assert time.monotonic() - started >= 1.5
    assert (unreachable.value.peer, unreachable.value.address, unreachable.value.tag) == ("bob", addresses["bob"], "hello")
    assert "no connection within 1.5 s: nothing listens at its address (connection refused), its process has " \
        "stopped or not started" in str(unreachable.value)  # gRPC's "failed to connect to all addresses; ..."


def test_a_channel_may_wait_less_for_a_connection_than_its_node(start):
    """A node's predictions cannot wait for a host as its jobs do (a node's channel, its whole timeout)."""
    alice = start("alice", connect_timeout=30)  # nobody listens at bob's address
    started = time.monotonic()
    with pytest.raises(PeerUnreachableError, match="no connection within 0.5 s: nothing listens"):
        alice.channel("j", connect_timeout=0.5).scoped("request-1").send("bob", "hello", 1)
    assert 0.5 <= time.monotonic() - started < 5


@pytest.mark.parametrize("give_up", [True, False])
def test_a_peer_unreachable_once_is_given_up_only_by_a_job_process(start, give_up):
    """A party process gives up on a crashed peer for the rest of its job, so later steps do not wait for
    it again; a node's and a query service's channels live as long as the process, and once gave up on a
    member for good: nothing reached it after it came back."""
    alice = start("alice", connect_timeout=0.5, give_up_on_unreachable=give_up)
    with pytest.raises(PeerUnreachableError):
        alice.channel("j").send("bob", "hello", 1)
    bob = start("bob", jobs=["j"])
    if give_up:
        with pytest.raises(PeerUnreachableError, match="not retried"):
            alice.channel("j").send("bob", "again", 2)
    else:
        alice.channel("j").send("bob", "again", 2)
        assert bob.channel("j").recv("alice", "again", timeout=5) == 2


def test_a_receive_in_a_job_fails_soon_after_its_sender_is_gone(start, addresses):
    """A peer whose node or machine died sends nothing more, and nobody else will say so: the receive waited
    out the job's timeout (ten minutes by default). Now it fails once the peer has answered no ping for a
    connect timeout, and later sends to that peer fail at once instead of retrying it."""
    alice = start("alice", connect_timeout=1.0, give_up_on_unreachable=True)
    start("bob", jobs=["j"]).stop(grace=0)  # never delivered to alice: it may still be starting, as far as she knows
    channel = alice.channel("j", peers=["bob"])
    started = time.monotonic()
    with pytest.raises(PeerGoneError, match="no answer to pings") as gone:
        channel.recv("bob", "second", timeout=60)
    assert time.monotonic() - started < 10
    assert (gone.value.peer, gone.value.address, gone.value.tag) == ("bob", addresses["bob"], "second")
    started = time.monotonic()
    with pytest.raises(PeerUnreachableError, match="not retried"):
        channel.send("bob", "late", 2)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("waiting_by", ["send", "recv"])
def test_a_peer_whose_process_ended_in_the_job_is_named_at_once(start, addresses, waiting_by):
    """A peer that delivered in this job, and where nothing listens now, has ended its process (a crash, the
    OOM killer, a full disk): a job's process does not come back. A send retried it for the whole connect
    timeout, and a receive pinged it as long, before blaming its address (a minute by default)."""
    alice = start("alice", connect_timeout=30.0, give_up_on_unreachable=True)
    bob = start("bob", jobs=["j"])
    channel = alice.channel("j", peers=["bob"])
    bob.channel("j").send("alice", "first", 1)
    assert channel.recv("bob", "first", timeout=5) == 1
    bob.stop(grace=0)
    started = time.monotonic()
    expected = PeerUnreachableError if waiting_by == "send" else PeerGoneError
    with pytest.raises(expected, match="its process has ended: it took part in this job") as gone:
        channel.send("bob", "next", 2) if waiting_by == "send" else channel.recv("bob", "next", timeout=60)
    # Refused over a new connection at once; the receive asks after its first wait (5 s)
    assert time.monotonic() - started < (2 if waiting_by == "send" else 8)
    assert (gone.value.peer, gone.value.address) == ("bob", addresses["bob"])


def test_a_peer_that_started_after_a_refused_attempt_is_not_taken_for_ended(start):
    """gRPC answers with its connection's last error until its next attempt: a peer refused before it listened,
    then up and delivering, was once taken for ended by the next send to it (a horizontal client left out)."""
    alice = start("alice", connect_timeout=30.0, give_up_on_unreachable=True, jobs=["j"])
    assert not alice.any_answers(["bob"], timeout=0.3)  # refused: nothing listens yet
    bob = start("bob", jobs=["j"])
    bob.channel("j").send("alice", "hello", 1)
    assert alice.channel("j").recv("bob", "hello", timeout=5) == 1
    alice.channel("j").send("bob", "reply", 2)
    assert bob.channel("j").recv("alice", "reply", timeout=5) == 2


def test_a_node_channel_retries_a_member_that_was_up_until_it_is_back(start):
    """A node's channels outlive a member's restart: one that delivered and went down is retried, not given up."""
    alice = start("alice", connect_timeout=5.0, jobs=["j"])
    bob = start("bob", jobs=["j"])
    bob.channel("j").send("alice", "hello", 1)
    assert alice.channel("j").recv("bob", "hello", timeout=5) == 1
    bob.stop(grace=0)
    later = threading.Timer(1.0, lambda: start("bob", jobs=["j"]))
    later.start()
    alice.channel("j").send("bob", "again", 2)  # retried until bob is back
    later.join()


def test_pings_go_to_every_sender_at_once(start):
    """One at a time, an aggregator whose hundred clients had all gone would spend a hundred ping timeouts on
    each round of pings before it could tell; the first answer ends the round."""
    alice = start("alice")
    for party in ("bob", "carol", "dave"):
        start(party).stop(grace=0)
    started = time.monotonic()
    assert not alice.any_answers(["bob", "carol", "dave"], timeout=1.0)
    assert time.monotonic() - started < 2
    start("bob")  # back: found although its connection had failed, and without waiting for carol's ping
    started = time.monotonic()
    assert alice.any_answers(["carol", "bob"], timeout=10.0)
    assert time.monotonic() - started < 5


def test_a_peer_back_after_a_long_absence_answers_the_first_short_ping(start, addresses):
    """gRPC waits up to 2 s between attempts on a connection that kept failing: a query asker's half-second ping
    of a lender that was back failed up to four times (four queries reporting it missing), a board showed its
    node down. A peer that went unanswered is pinged over a new connection, which then carries the sends."""
    alice = start("alice", jobs=["j"])
    host, port = addresses["bob"].rsplit(":", 1)
    attempts = _DroppingListener(host, int(port))  # where bob was: each connection attempt, seen and dropped
    while len(attempts) < 6:  # gRPC now waits over a second before its next attempt
        assert not alice.any_answers(["bob"], timeout=0.1)
    attempts.close()
    bob = start("bob", jobs=["j"])
    assert alice.any_answers(["bob"], timeout=0.25)
    started = time.monotonic()
    alice.channel("j").send("bob", "hello", 1)
    assert time.monotonic() - started < 0.5  # over the new connection, not after the old one's next attempt
    assert bob.channel("j").recv("alice", "hello", timeout=5) == 1


class _DroppingListener(list):
    """A port where each connection is accepted, its time noted, and reset at once (no TLS handshake)."""

    def __init__(self, host: str, port: int):
        super().__init__()
        self._socket = socket.create_server((host, port))
        self._thread = threading.Thread(target=self._drop, daemon=True)
        self._thread.start()

    def _drop(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:  # closed
                return
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # no TIME_WAIT
            connection.close()
            self.append(time.monotonic())

    def close(self) -> None:
        self._socket.shutdown(socket.SHUT_RDWR)  # wakes the accept: a socket closed under it would listen on
        self._thread.join()
        self._socket.close()


def test_a_silent_sender_that_answers_pings_is_waited_for(start):
    """Silence alone is not death: a peer computing for longer than the connect timeout is waited for, and
    a receive from it ends with its own timeout."""
    alice = start("alice", connect_timeout=1.0, give_up_on_unreachable=True)
    bob = start("bob", jobs=["j"])
    channel = alice.channel("j", peers=["bob"])
    with pytest.raises(PeerTimeoutError) as waited:
        channel.recv("bob", "result", timeout=3.0)
    assert not isinstance(waited.value, PeerGoneError)
    sender = threading.Timer(2.5, lambda: bob.channel("j").send("alice", "result", 42))
    sender.start()
    assert channel.recv("bob", "result", timeout=30) == 42
    sender.join()


def test_one_live_sender_keeps_a_receive_from_several_waiting(start):
    """An aggregator waits a round out for its live clients while one of them is gone."""
    alice = start("alice", connect_timeout=1.0, give_up_on_unreachable=True)
    bob, carol = start("bob", jobs=["j"]), start("carol", jobs=["j"])
    bob.stop(grace=0)
    sender = threading.Timer(2.5, lambda: carol.channel("j").send("alice", "update", 7))
    sender.start()
    assert alice.channel("j", peers=["bob", "carol"]).recv_any(["bob", "carol"], "update", timeout=30) == ("carol", 7)
    sender.join()


def test_an_aggregator_leaves_out_a_client_that_died_before_replying(start):
    """The round goes on with the live client, and the dead one's reason says it is unreachable (it read "no
    reply within 30 s" when it had been found gone after a second)."""
    aggregator = start("alice", connect_timeout=1.0, give_up_on_unreachable=True)
    bob, carol = start("bob", jobs=["j"]), start("carol", jobs=["j"])

    carol_asked = threading.Event()  # the aggregator asks bob first: by then it holds bob's acknowledgement

    def serve(node: GrpcNode, reply: bool) -> None:
        request = node.channel("j").recv("alice", REQUEST_TAG, timeout=10)
        if reply:
            carol_asked.set()
            node.channel("j").send("alice", reply_tag(request["op"], request["round"]), {"n": node.party})
        else:  # dies after taking the request, before replying (not before acknowledging it)
            carol_asked.wait(10)
            node.stop(grace=0)

    servers = [threading.Thread(target=serve, args=args) for args in ((bob, False), (carol, True))]
    for server in servers:
        server.start()
    replies, failures = ChannelFleet(aggregator.channel("j")).request("fit", 1, {"bob": {}, "carol": {}}, timeout=30)
    for server in servers:
        server.join()
    assert replies == {"carol": {"n": "carol"}}
    assert failures["bob"].startswith("unreachable: no answer to pings"), failures


def test_a_node_channel_waits_out_its_timeout_for_a_member_that_is_down(start):
    """A node's channels outlive a member's absence (it may come back): no pings, no giving up."""
    alice = start("alice", connect_timeout=0.2)
    with pytest.raises(PeerTimeoutError) as waited:
        alice.channel("j", peers=["bob"]).recv("bob", "proposal", timeout=1.5)
    assert not isinstance(waited.value, PeerGoneError)


def test_a_frozen_peer_process_is_gone_for_a_job(start, certs, addresses):
    """A stopped process (as a machine that vanished from the network) keeps its connection open but answers
    nothing: its pings time out, and after a connect timeout of that the receive fails naming it."""
    script = textwrap.dedent(
        """
        import sys
        from isthmus.transport.certs import tls_files_for
        from isthmus.transport.grpc_transport import GrpcNode
        cert_dir, listen, alice = sys.argv[1:4]
        node = GrpcNode("bob", listen, {"alice": alice}, tls_files_for(cert_dir, "bob"), connect_timeout=30)
        node.open_job("j")
        with node:
            node.channel("j").send("alice", "ready", 1)
            sys.stdin.read()
        """
    )
    bob = subprocess.Popen([sys.executable, "-c", script, str(certs / "fed"), addresses["bob"], addresses["alice"]],
                           stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        alice = start("alice", connect_timeout=1.0, give_up_on_unreachable=True)
        channel = alice.channel("j", peers=["bob"])
        assert channel.recv("bob", "ready", timeout=60) == 1
        bob.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(PeerGoneError) as gone:
            channel.recv("bob", "next", timeout=60)
        assert time.monotonic() - started < 15 and gone.value.peer == "bob"
    finally:
        bob.kill()
        print(bob.communicate()[1])


def test_oversize_message_is_refused_at_the_receiver_and_reported_to_the_sender(start):
    alice, bob = start("alice"), start("bob", jobs=["j"], max_message_bytes=10_000)
    with pytest.raises(PeerRefusedError, match="exceeds the limit of 10000 bytes"):
        alice.channel("j").send("bob", "big", np.zeros(2_000))
    with pytest.raises(ProtocolError, match="exceeds the limit") as refused:
        bob.channel("j").recv("alice", "big", timeout=5)
    assert (refused.value.peer, refused.value.tag) == ("alice", "big")
    alice.channel("j").send("bob", "small", np.zeros(10))  # the connection is still usable
    assert bob.channel("j").recv("alice", "small", timeout=5).shape == (10,)


def test_a_job_takes_only_the_tags_it_accepts_and_an_abort(start):
    alice, bob = start("alice"), start("bob", jobs=["j"])
    bob.open_job("j", accept=["train/"])  # again: replaces what the job accepts
    sender, receiver = alice.channel("j", peers=["bob"]), bob.channel("j")
    sender.send("bob", "train/w", 1)
    with pytest.raises(PeerRefusedError, match=r"job 'j' accepts no tag 'psi/x' \(accepted prefixes: \['train/'\]\)"):
        sender.send("bob", "psi/x", 2)
    with pytest.raises(ProtocolError, match="refused on arrival: job 'j' accepts no tag 'psi/x'") as refused:
        receiver.recv("alice", "train/w", timeout=5)  # at once: alice broke the protocol
    assert (refused.value.peer, refused.value.tag) == ("alice", "train/w")
    assert receiver.recv("alice", "train/w", timeout=5) == 1  # told once, then business as usual
    sender.abort("giving up")
    with pytest.raises(PeerAbortedError, match="giving up"):
        receiver.recv("alice", "train/next", timeout=5)


def test_a_tag_prefix_may_have_a_lower_size_limit(start):
    alice, bob = start("alice"), start("bob", jobs=["j"], max_message_bytes=1 << 20)
    bob.open_job("j", limits={"votes/": 100, "votes/big/": 10_000})
    channel = alice.channel("j")
    with pytest.raises(PeerRefusedError, match="under tag 'votes/1' in job 'j' exceeds the limit of 100 bytes"):
        channel.send("bob", "votes/1", bytes(200))
    channel.send("bob", "votes/big/1", bytes(200))  # the longest prefix decides
    channel.send("bob", "other", bytes(200_000))  # no prefix: the node's limit
    receiver = bob.channel("j")
    with pytest.raises(ProtocolError, match="exceeds the limit of 100 bytes"):
        receiver.recv("alice", "votes/big/1", timeout=5)
    assert len(receiver.recv("alice", "votes/big/1", timeout=5)) == 200
    with pytest.raises(ConfigError, match="not in 1..1048576 bytes"):
        bob.open_job("j", limits={"votes/": 2 << 20})


def test_a_delivery_waits_for_its_job_to_be_opened(start):
    alice, bob = start("alice"), start("bob")
    opener = threading.Timer(0.5, bob.open_job, args=["late"])
    opener.start()
    alice.channel("late").send("bob", "x", "hi")  # refused as "not open", retried until it is
    opener.join()
    assert bob.channel("late").recv("alice", "x", timeout=5) == "hi"


def test_a_job_process_does_not_wait_for_a_peer_process_running_another_job(start):
    """A job process opens its job before it listens, so "not open" from one is final: copies of a job file
    naming the job otherwise were retried for the whole connect timeout (60 s) before failing."""
    alice = start("alice", connect_timeout=30, give_up_on_unreachable=True)
    start("bob", jobs=["dc2"])  # listening, with only a job of another name open
    started = time.monotonic()
    with pytest.raises(PeerRefusedError, match="job 'dc' is not open there: it runs another job"):
        alice.channel("dc").send("bob", "x", "hi")
    assert time.monotonic() - started < 5


def test_a_busy_receiver_makes_the_sender_retry_not_fail(start):
    alice, bob = start("alice"), start("bob", jobs=["j"], streams_per_peer=1)
    channel = alice.channel("j")
    senders = [threading.Thread(target=channel.send, args=("bob", f"n/{i}", np.zeros(200_000))) for i in range(4)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert [bob.channel("j").recv("alice", f"n/{i}", timeout=5).shape for i in range(4)] == [(200_000,)] * 4


def test_an_audit_log_must_belong_to_the_node(start, tmp_path):
    with pytest.raises(ConfigError, match="audit log of party 'bob' cannot record the node of party 'alice'"):
        start("alice", audit=AuditLog(tmp_path / "audit.jsonl", "bob"))


def test_garbage_bytes_fail_at_recv_naming_peer_and_tag(start):
    alice, bob = start("alice"), start("bob", jobs=["j"])
    alice.deliver("bob", "j", "weights", b"not an isthmus message")
    with pytest.raises(ProtocolError, match="magic") as bad:
        bob.channel("j").recv("alice", "weights", timeout=5)
    assert (bad.value.peer, bad.value.tag) == ("alice", "weights")


def test_a_taken_port_is_a_clear_error(start, certs, addresses, capfd):
    """...and the only one: gRPC's own failure line (`E... add_port.cc: Failed to add port`) came first."""
    start("alice")
    second = GrpcNode("alice", addresses["alice"], addresses, tls(certs, "alice"))
    port = addresses["alice"].rpartition(":")[2]
    with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}: port {port} is in use"):
        second.start()
    assert "add_port" not in capfd.readouterr().err


@pytest.mark.parametrize("listen, why", [
    ("bank.invalid:7001", "the name 'bank.invalid' does not resolve on this machine"),
    ("192.0.2.1:7001", "'192.0.2.1' is not an address of this machine"),  # TEST-NET-1: never this machine's
    ("127.0.0.1:99999", "99999 is not a port (1 to 65535)"),  # `run --listen`: it listened on 34463
])
def test_an_address_that_is_not_this_machines_is_named_as_such(certs, addresses, listen, why):
    """It said "address in use or invalid" for a job address naming another machine or a typo'd name."""
    with pytest.raises(ConfigError, match=f"cannot listen on {re.escape(listen)}: {re.escape(why)}"):
        GrpcNode("alice", listen, addresses, tls(certs, "alice")).start()


def test_channels_need_a_started_node_and_known_peers(start, certs, addresses):
    idle = GrpcNode("alice", addresses["alice"], addresses, tls(certs, "alice"))
    with pytest.raises(ConfigError, match="start"):
        idle.channel("j")
    with pytest.raises(ConfigError, match="no address"):
        start("bob").channel("j", peers=["alice", "zoe"])


def test_200_mb_array_round_trip(start):
    alice, bob = start("alice", audit=None), start("bob", jobs=["big"], audit=None)
    array = np.random.default_rng(7).random(25_000_000)  # 200 MB of float64
    alice.channel("big").send("bob", "array", array)
    got = bob.channel("big").recv("alice", "array", timeout=120)
    assert got.dtype == np.float64 and got.shape == array.shape
    assert hashlib.sha256(got).digest() == hashlib.sha256(array).digest()
    assert codec.DEFAULT_MAX_BYTES > array.nbytes


class _Aborted(Exception):
    pass


class _FakeContext:
    """What the inbox reads from gRPC: the caller's certificate names and the call metadata."""

    def __init__(self, metadata: dict[str, object], certified: str = "alice"):
        self.metadata = metadata
        self.certified = certified
        self.status = None

    def code(self):
        return self.status

    def invocation_metadata(self):
        return tuple(self.metadata.items())

    def auth_context(self):
        return {"x509_subject_alternative_name": [self.certified.encode()]}

    def abort(self, code, details):
        self.status = code
        raise _Aborted(details)


def _headers(**changes: object) -> dict[str, object]:
    headers = {
        inbox_module.SENDER_KEY: b"alice",
        inbox_module.JOB_KEY: b"job",
        inbox_module.TAG_KEY: b"tag",
        inbox_module.SIZE_KEY: "5",
        inbox_module.MESSAGE_ID_KEY: "id-1",
    }
    headers.update(changes)
    return {key: value for key, value in headers.items() if value is not None}


def _inbox() -> inbox_module.Inbox:
    mailbox = Mailbox(max_message_bytes=100)
    mailbox.open_job("job")
    return inbox_module.Inbox("bob", ["alice"], mailbox, None)


def test_a_retried_delivery_is_filed_once():
    inbox = _inbox()
    for _ in range(2):
        assert inbox.deliver(iter([b"ab", b"cde"]), _FakeContext(_headers())) == b""
    assert inbox.mailbox.backlog("alice") == (5, 1)
    assert inbox.mailbox.get("job", "alice", "tag", 0) == b"abcde"
    assert inbox.mailbox.get("job", "alice", "tag", 0) is None
    assert inbox.mailbox.backlog("alice") == (0, 0)


@pytest.mark.parametrize(
    ("chunks", "headers", "reason"),
    [
        ([b"abc", b"defg"], _headers(), "more than the declared"),
        ([b"abc"], _headers(), "3 bytes arrived"),
        ([b"abcde"], _headers(**{inbox_module.SIZE_KEY: None}), "declared size"),
        ([b"abcde"], _headers(**{inbox_module.SIZE_KEY: "-5"}), "declared size"),
        ([b"abcde"], _headers(**{inbox_module.MESSAGE_ID_KEY: "x" * 65}), "message id"),
        ([b"abcde"], _headers(**{inbox_module.JOB_KEY: b"\xff\xfe"}), "not UTF-8"),
        ([b"abcde"], _headers(**{inbox_module.TAG_KEY: b"t" * 1025}), "oversized tag"),
        ([b"abcde"], _headers(**{inbox_module.SENDER_KEY: None}), "sender"),
        ([b"abcde"], _headers(**{inbox_module.JOB_KEY: b"other"}), "job 'other' is not open"),
        ([b"abcde"], _headers(**{inbox_module.SIZE_KEY: "101"}), "exceeds the limit of 100 bytes"),
    ],
)
def test_malformed_deliveries_are_refused_and_nothing_is_filed(chunks, headers, reason):
    inbox = _inbox()
    with pytest.raises(_Aborted, match=reason):
        inbox.deliver(iter(chunks), _FakeContext(headers))
    assert inbox.mailbox.backlog("alice") == (0, 0)


def test_an_abort_stops_retrying_a_peer_that_aborted_meanwhile(start):
    """A party failing because one peer aborted tells the others; one of them may have aborted (and exited) just
    after it looked: its abort arrives while the party retries the dead address, and the retrying stops there
    instead of holding the failing party for the whole connect timeout (seen as a launch killing it 15 s later)."""
    from isthmus.transport.mailbox import ABORT_TAG

    alice = start("alice", connect_timeout=20, jobs=["j"])  # nobody listens at bob's address
    threading.Timer(0.5, lambda: alice.mailbox.put("j", "bob", ABORT_TAG, b"bob: step intersect failed")).start()
    started = time.monotonic()
    alice.channel("j", peers=["bob"]).abort("told by carol")
    assert time.monotonic() - started < 5


def test_a_failing_handshake_is_reported_once_not_logged_by_grpc_on_every_retry(tmp_path):
    """gRPC's core wrote an INFO line to stderr per failed TLS handshake, a dozen while it retried a peer of
    another CA; the PeerUnreachableError already names the cause."""
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pathlib import Path
from grpc_helpers import make_certs, node_starter
from isthmus.errors import PeerUnreachableError
from isthmus.transport.ports import free_ports
certs = make_certs(Path({str(tmp_path)!r}))
addresses = {{party: f"127.0.0.1:{{port}}" for party, port in zip(["alice", "bob"], free_ports(2))}}
with node_starter(certs, addresses, Path({str(tmp_path)!r})) as start:
    alice, _ = start("alice", connect_timeout=2), start("bob", federation="rogue")
    try:
        alice.channel("j").send("bob", "x", 1)
    except PeerUnreachableError as exc:
        print("raised", "CERTIFICATE_VERIFY_FAILED" in str(exc))
"""
    environment = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=environment)
    assert result.stdout.strip() == "raised True", result.stdout + result.stderr
    assert "Handshake failed" not in result.stderr, result.stderr
