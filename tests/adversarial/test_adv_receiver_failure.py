"""A party that fails to take a delivered message (its disk is full, or a bug) must not hand the sender its
error's text, and must not wait for a message it lost.

gRPC answers a handler's exception with "Exception calling application: <its text>": a receiver whose audit
log could not be opened sent its own file path to the peer, and any other error could quote its data. Its
own receives meanwhile waited for the message it had dropped, until a timeout blamed someone else."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from grpc_helpers import make_certs, node_starter

from isthmus.errors import PeerError, ReceiveError
from isthmus.transport.grpc_transport import GrpcNode
from isthmus.transport.ports import free_ports

SECRET = "customer 4417-0012 owes 98,000"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def start(certs: Path, tmp_path: Path) -> Iterator[Callable[..., GrpcNode]]:
    addresses = {party: f"127.0.0.1:{port}" for party, port in zip(["alice", "bob"], free_ports(2))}
    with node_starter(certs, addresses, tmp_path) as start:
        yield start


def audit_log_unwritable(node: GrpcNode) -> Path:
    """Put a folder where ``node``'s audit log is: each record of it fails, as on a full disk, naming the path."""
    path = node.audit.path
    path.unlink(missing_ok=True)
    path.mkdir(parents=True)
    return path


def test_a_receiver_that_cannot_record_a_message_tells_the_sender_only_that(start, tmp_path):
    alice, bob = start("alice"), start("bob", jobs=["job"])
    path = audit_log_unwritable(bob)
    with pytest.raises(PeerError) as raised:
        alice.channel("job").send("bob", "update", [1.0, 2.0])
    said = str(raised.value)
    assert "party 'bob' could not take the message: it failed on its side (AuditError; its own log says why)" in said
    assert str(path) not in said and str(tmp_path) not in said and "Is a directory" not in said

    started = time.monotonic()
    with pytest.raises(ReceiveError, match=rf"could not take a message from 'alice' under tag 'update': .*{path}"):
        bob.channel("job").recv("alice", "update", timeout=60)
    assert time.monotonic() - started < 1  # not the minute the message would have been waited for


def test_a_bug_while_filing_a_message_does_not_reach_the_sender(start, monkeypatch):
    alice, bob = start("alice"), start("bob", jobs=["job"])

    def broken(*args, **kwargs):
        raise RuntimeError(f"unexpected state while filing {SECRET}")

    monkeypatch.setattr(bob.mailbox, "_file", broken)
    with pytest.raises(PeerError) as raised:
        alice.channel("job").send("bob", "update", "x")
    assert "(RuntimeError; its own log says why)" in str(raised.value) and SECRET not in str(raised.value)
    with pytest.raises(ReceiveError, match="RuntimeError|unexpected state"):
        bob.channel("job").recv("alice", "update", timeout=5)


def test_a_service_goes_on_after_a_message_it_could_not_take(start):
    """A node's or query service's job never ends: the one request fails at its sender, the next is served."""
    alice, bob = start("alice"), start("bob", jobs=["service"])
    bob.channel("service").keep_open()
    path = audit_log_unwritable(bob)
    with pytest.raises(PeerError, match="could not take the message"):
        alice.channel("service").send("bob", "request", 1)
    shutil.rmtree(path)  # the disk has room again
    alice.channel("service").send("bob", "request", 2)
    assert bob.channel("service").recv("alice", "request", timeout=5) == 2
