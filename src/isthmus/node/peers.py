"""Node-to-node messages over the federation's mutual-TLS transport: one tag, one small message each.

A message is a map ``{"kind": ..., "job": ID, ...}``; the sender is who the TLS certificate says it is
(the transport checks), never a field of the message. Sends happen on four worker threads, so a member
that is down never holds up this node's API; each send to it holds a thread for the node's timeout,
though, and four at once delay the messages to every other peer. A failed send is logged and reported
to ``on_failure``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from isthmus.errors import PeerAbortedError, PeerError, PeerTimeoutError, ProtocolError
from isthmus.transport.channel import Channel

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
        self._pool = ThreadPoolExecutor(4, thread_name_prefix=f"node-send-{channel.party}")
        self._thread = threading.Thread(target=self._listen, name=f"node-recv-{channel.party}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def send(self, peer: str, message: dict) -> Future:
        """Deliver ``message`` on a worker thread; the future is done once it is delivered, or given up."""
        return self._pool.submit(self._send, peer, message)

    def _send(self, peer: str, message: dict) -> None:
        try:
            self.channel.send(peer, TAG, message)
        except PeerError as exc:
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
