"""Pipelined sends: each peer's messages arrive in order, peers are sent to at once, and a failed delivery
is raised by the next receive from that peer (naming it), never lost."""

from __future__ import annotations

import threading
import time

import pytest

from isthmus.errors import PeerAbortedError, PeerRefusedError
from isthmus.transport.local import LocalHub
from isthmus.transport.pipeline import PipelinedChannel, SendQueues


class SlowAcks(LocalHub):
    """A hub whose every delivery takes ``delay`` seconds, as an acknowledged network send does."""

    delay = 0.2

    def channel(self, party: str, job: str = "job"):
        channel = super().channel(party, job)
        send = channel._send_raw

        def slow(to: str, tag: str, payload: bytes) -> None:
            time.sleep(self.delay)
            send(to, tag, payload)

        channel._send_raw = slow
        return channel


@pytest.fixture
def queues():
    queues = SendQueues("test")
    yield queues
    queues.close()


def test_sends_to_two_peers_overlap_and_each_peers_order_is_kept(queues):
    hub = SlowAcks(["guest", "host-1", "host-2"])
    channel = PipelinedChannel(hub.channel("guest"), queues)
    started = time.monotonic()
    for i in range(2):
        for host in ("host-1", "host-2"):
            channel.send(host, "order", i)
    assert time.monotonic() - started < 0.1  # nothing waited for an acknowledgement
    channel.flush()
    assert time.monotonic() - started < 0.6  # two deliveries per peer, the peers in parallel (serially: 0.8 s)
    for host in ("host-1", "host-2"):
        host_channel = hub.channel(host)
        assert [host_channel.recv("guest", "order", timeout=1) for _ in range(2)] == [0, 1]


def test_a_failed_delivery_is_raised_by_the_next_receive_from_that_peer(queues):
    hub = LocalHub(["guest", "host"])
    hub.mailboxes["host"].open_job("job", accept=["allowed/"])
    channel = PipelinedChannel(hub.channel("guest"), queues)
    channel.send("host", "forbidden", 1)
    with pytest.raises(PeerRefusedError, match="host"):
        channel.recv("host", "answer", timeout=1)


def test_detached_sends_complete_after_their_sender_moved_on(queues):
    hub = SlowAcks(["guest", "host"])
    channel = PipelinedChannel(hub.channel("guest"), queues)
    channel.send("host", "finish", "bye")
    channel.detach()
    received = []
    reader = threading.Thread(target=lambda: received.append(hub.channel("host").recv("guest", "finish", timeout=2)))
    reader.start()
    reader.join()
    assert received == ["bye"]


def test_an_abort_does_not_overtake_what_was_queued_before_it(queues):
    """A host that answers "ready" and then fails: the guest reads the answer first, then the failure."""
    hub = SlowAcks(["guest", "host"])
    guest = hub.channel("guest")
    guest.keep_open()
    host = PipelinedChannel(hub.channel("host"), queues).scoped("serve/1")
    host.send("guest", "ready", {"ok": True})
    host.abort("serving failed")
    assert guest.scoped("serve/1").recv("host", "ready", timeout=2) == {"ok": True}
    with pytest.raises(PeerAbortedError, match="serving failed"):
        guest.scoped("serve/1").recv("host", "scores", timeout=2)
