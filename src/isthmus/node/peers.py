"""Node-to-node messages over the federation's mutual-TLS transport: one tag, one small message each.

A message is a map ``{"kind": ..., "job": ID, ...}``; the sender is who the TLS certificate says it is
(the transport checks), never a field of the message. Each member's messages go out in order on a
thread of its own, so a member that is down, whose every send waits out the node's timeout, holds up
neither this node's API nor its messages to the others (on four shared threads, four sends to it had
delayed everyone's); the messages queued for it meanwhile are given up at once. A failed send is logged
and reported to ``on_failure``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from isthmus.errors import PeerAbortedError, PeerError, PeerTimeoutError, PeerUnreachableError, ProtocolError
from isthmus.transport.audit import AuditError
from isthmus.transport.channel import Channel
from isthmus.transport.pipeline import SendQueues

TAG = "node"
#: The node-to-node job the control messages travel under, and the largest such message (a prediction
#: request of 10,000 long ids).
CONTROL_JOB, MAX_MESSAGE_BYTES = "isthmus-node", 2 << 20
_POLL_S = 0.2
_log = logging.getLogger(__name__)

Handler = Callable[[str, Any], None]


class PeerLink:
    def __init__(self, channel: Channel, members: list[str], handler: Handler,
                 on_failure: Callable[[str, dict, Exception], None] = lambda peer, message, exc: None):
        self.channel = channel
        channel.keep_open()  # the nodes' job never ends: a peer's abort ends one request (a prediction's scope)
        self.members = sorted(set(members) - {channel.party})
        self.handler = handler
        self.on_failure = on_failure
        self._stop = threading.Event()
        self._queues = SendQueues(f"node-{channel.party}")
        self._given_up: dict[str, float] = {}  # peer -> when a send to it last failed, unreachable
        self._thread = threading.Thread(target=self._listen, name=f"node-recv-{channel.party}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._queues.close(wait=True)  # the notices of a stopping node's jobs go out first

    def send(self, peer: str, message: dict) -> Future:
        """Deliver ``message`` after those sent to ``peer`` before it; the future is done once it is delivered,
        or given up."""
        return self._queues.submit(peer, self._send, peer, message, time.monotonic())

    def _send(self, peer: str, message: dict, queued: float) -> None:
        """A message that waited behind a send found the peer unreachable is given up at once: the peer did
        not answer for a whole timeout meanwhile, and each try would cost another (a stopping node's too)."""
        try:
            if self._given_up.get(peer, float("-inf")) > queued:
                raise PeerUnreachableError("unreachable for the node's whole timeout while this message waited "
                                           "to be sent; not tried again", peer=peer, tag=TAG)
            self.channel.send(peer, TAG, message)
        except (PeerError, AuditError) as exc:  # the latter: this node's disk is full, so nothing was sent
            if isinstance(exc, PeerUnreachableError):
                self._given_up[peer] = time.monotonic()
            _log.warning("could not deliver %s of job %s to %s: %s", message.get("kind"), message.get("job"), peer, exc)
            self.on_failure(peer, message, exc)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                sender, message = self.channel.recv_any(self.members, TAG, timeout=_POLL_S)
            except PeerTimeoutError:
                continue
            except (ProtocolError, PeerAbortedError) as exc:
                _log.warning("dropped a node message: %s", exc)
                continue
            try:
                self.handler(sender, message)
            except Exception:  # a hostile message must never stop the node listening
                _log.exception("handling a node message from %s failed", sender)
