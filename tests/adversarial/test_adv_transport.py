"""A hostile peer against the gRPC transport over mutual TLS on loopback; the attacker is its own process.

The attacker holds a valid certificate of one of the victim's peers (see ``hostile_peer.py``). The
victim must refuse and tell the attacker why, keep serving its other peers, and fail its own
receive from the attacker at once instead of waiting for a message that will never come.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_helpers import PARTIES, make_certs, node_starter

from isthmus.errors import ProtocolError
from isthmus.transport.grpc_inbox import JOB_KEY, MESSAGE_ID_KEY, PING, SENDER_KEY, SERVICE, SIZE_KEY, TAG_KEY
from isthmus.transport.mailbox import Mailbox
from isthmus.transport.ports import free_ports

HOSTILE = Path(__file__).with_name("hostile_peer.py")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def addresses() -> dict[str, str]:
    return {party: f"127.0.0.1:{port}" for party, port in zip(PARTIES, free_ports(len(PARTIES)))}


@pytest.fixture
def start(certs: Path, addresses: dict[str, str], tmp_path: Path) -> Iterator:
    with node_starter(certs, addresses, tmp_path) as start:
        yield start


def attack(certs: Path, victim_address: str, name: str, n: int, *, job: str = "job") -> subprocess.Popen:
    """Start alice, hostile, against bob at ``victim_address``."""
    return run([str(HOSTILE), str(certs / "fed"), "alice", "bob", victim_address, job, name, str(n)])


def run(arguments: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *arguments], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def expect_line(process: subprocess.Popen, line: str) -> None:
    got = process.stdout.readline()
    assert got.strip() == line, got + process.stdout.read()


def outcome(process: subprocess.Popen, timeout: float = 60) -> str:
    """What the process writes until it ends (after the lines already read), checking that it ends well."""
    try:
        out = process.stdout.read()
        process.wait(timeout)
    finally:
        process.kill()
    assert process.returncode == 0, f"exit status {process.returncode}: {out[-3000:]}"
    return out


# The victim of the envelope bomb runs in its own process too, so that a crash shows as a crash.
BOMB_VICTIM = textwrap.dedent(
    """
    import sys
    from isthmus.errors import ProtocolError
    from isthmus.transport.certs import tls_files_for
    from isthmus.transport.grpc_transport import GrpcNode

    cert_dir, listen = sys.argv[1:3]
    node = GrpcNode("bob", listen, {"alice": "127.0.0.1:9"}, tls_files_for(cert_dir, "bob"))
    node.open_job("job")
    with node:
        print("listening", flush=True)
        channel = node.channel("job")
        try:
            channel.recv("alice", "bomb", timeout=60)
            print("decoded the bomb", flush=True)
        except ProtocolError as exc:
            print(f"ProtocolError: {exc}", flush=True)
        print("after:", channel.recv("alice", "after", timeout=60), flush=True)
    """
)


def test_nested_envelopes_from_a_peer_are_a_protocol_error_not_a_crash(certs, addresses):
    victim = run(["-c", BOMB_VICTIM, str(certs / "fed"), addresses["bob"]])
    try:
        expect_line(victim, "listening")
        assert outcome(attack(certs, addresses["bob"], "bomb", 10_000)).strip() == "sent"
    finally:
        out = outcome(victim)  # fails if the victim died
    assert "ProtocolError: wire type 1 inside an envelope (peer='alice', tag='bomb')" in out
    assert "after: still here" in out


def test_a_flood_under_unread_tags_hits_the_quota_while_another_peer_gets_through(start, certs, addresses):
    bob = start("bob", jobs=["job"], backlog_messages=20, backlog_bytes=1 << 20, max_message_bytes=1 << 16)
    carol = start("carol", jobs=["job"])
    out = outcome(attack(certs, addresses["bob"], "flood", 1000))
    assert out.startswith("refused after 20: PeerRefusedError: peer refused the message: 'alice' already has 20 messages")
    assert "quota of 20 messages and 1048576 bytes" in out

    carol.channel("job").send("bob", "hello", "from carol")
    channel = bob.channel("job")
    assert channel.recv("carol", "hello", timeout=5) == "from carol"
    with pytest.raises(ProtocolError, match="refused on arrival.*quota") as refused:
        channel.recv("alice", "unread/0", timeout=5)  # at once, although a message under this tag waits
    assert refused.value.peer == "alice"
    assert channel.recv("alice", "unread/0", timeout=5) == bytes(1000)  # the refusal is raised once


def test_stalled_streams_are_cut_and_do_not_block_other_peers(start, certs, addresses):
    bob = start("bob", jobs=["job"], streams_per_peer=2, stall_timeout=2.0)
    carol = start("carol", jobs=["job"])
    attacker = attack(certs, addresses["bob"], "stall", 12)  # more streams than bob has workers for
    try:
        expect_line(attacker, "holding")
        for i in range(3):  # while alice's streams are held open
            carol.channel("job").send("bob", "hello", i)
        assert [bob.channel("job").recv("carol", "hello", timeout=5) for _ in range(3)] == [0, 1, 2]
    finally:
        out = outcome(attacker)

    ends = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("stream ")]
    cut = [end for end in ends if "cut after" in end]
    busy = [end for end in ends if "busy with 2 deliveries from 'alice'" in end or "Concurrent RPC limit" in end]
    assert len(ends) == 12 and len(cut) == 2 and len(busy) == 10, out
    assert all(end.startswith("RESOURCE_EXHAUSTED") and "of 1000 bytes" in end for end in cut)
    with pytest.raises(ProtocolError, match="cut after (0|10) of 1000 bytes") as refused:
        bob.channel("job").recv("alice", "anything", timeout=5)
    assert refused.value.peer == "alice"


def test_pings_whose_request_never_ends_hold_no_worker(start):
    """A ping is answered before its request is read: served as a unary call, each ping holding back its
    request would hold one of the node's workers, and a member sending more than the node has would shut out the
    others' deliveries (the attack DeliverSmall is served as a stream against)."""
    bob = start("bob", jobs=["job"], streams_per_peer=2)
    alice, carol = start("alice"), start("carol")
    ping = alice._connect("bob").channel.stream_unary(f"/{SERVICE}/{PING}", request_serializer=bytes)

    def stall() -> Iterator[bytes]:
        time.sleep(30)
        yield b""

    calls = [ping.future(stall(), timeout=20) for _ in range(3 * bob.inbox.max_streams)]
    # Each answered within 10 s, none held for its request. On a loaded machine some arrive before earlier pongs
    # have returned and get gRPC's own "every call slot is taken", which the node counts as an answer too (a busy
    # peer is alive); pings that held workers would time out instead.
    codes = [call.exception(timeout=10) and call.code() for call in calls]
    assert set(codes) <= {None, grpc.StatusCode.RESOURCE_EXHAUSTED} and None in codes, codes
    carol.channel("job").send("bob", "hello", 1)
    assert bob.channel("job").recv("carol", "hello", timeout=5) == 1


def test_deliveries_for_a_job_the_node_has_not_opened_are_refused(start, certs, addresses):
    bob = start("bob", jobs=["job"])
    out = outcome(attack(certs, addresses["bob"], "send", 10, job="not-a-job"))
    assert out.startswith("refused: PeerRefusedError: peer refused the message: job 'not-a-job' is not open")
    assert bob.mailbox.get("not-a-job", "alice", "probe", 0) is None
    assert outcome(attack(certs, addresses["bob"], "send", 10)).strip() == "delivered"


@pytest.mark.parametrize("declared, size, noted", [(10, 11, "more than the declared 10 bytes"), (11, 10, None)])
def test_a_one_request_delivery_is_checked_as_a_stream_is(start, declared, size, noted):
    """The one-request path is served by the stream's handler: a size other than the declared one is refused
    and leaves nothing in the mailbox or its sender's quota."""
    bob = start("bob", jobs=["job"])
    alice = start("alice", jobs=["job"])
    metadata = ((SENDER_KEY, b"alice"), (JOB_KEY, b"job"), (TAG_KEY, b"small"), (SIZE_KEY, str(declared)),
                (MESSAGE_ID_KEY, "1"))
    with pytest.raises(grpc.RpcError) as refused:
        alice._calls_to("bob").small(b"x" * size, metadata=metadata, timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "declared" in refused.value.details()
    assert bob.mailbox.backlog("alice") == (0, 0)
    if noted:  # cut by the receiver: its next receive from the sender fails at once, as for a stream
        with pytest.raises(ProtocolError, match=noted):
            bob.channel("job").recv("alice", "small", timeout=5)
    assert bob.mailbox.get("job", "alice", "small", 0) is None


@pytest.mark.parametrize("tag", ["isthmus/abort", "serve/1/isthmus/abort"])
def test_an_abort_notice_cut_in_transit_gives_back_no_room_it_did_not_hold(tag):
    """An abort notice is not counted against its sender's quota, so cutting one must not count it off: a peer
    cutting scoped notices would otherwise have lowered its own count below what it holds, past its quota."""
    mailbox = Mailbox()
    mailbox.open_job("job")
    mailbox.put("job", "b", "x", b"held")
    mailbox.reserve("job", "b", tag, 10).release()
    assert mailbox.backlog("b") == (4, 1)
