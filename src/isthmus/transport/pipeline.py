"""Sends that do not wait for their acknowledgement: each peer's deliveries in order, peers in parallel.

A gRPC ``send`` returns once the peer holds the message (one round trip). A service that talks to
several peers per request (the guest's node asking every host) would pay those round trips one after
another. :class:`PipelinedChannel` hands each send to its peer's own sender thread and returns at
once; a receive from a peer first waits for every send to that peer, so a failed delivery is raised
there, naming the peer, before anything is awaited from it. The threads live as long as their
:class:`SendQueues` (no thread per request).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from isthmus.errors import IsthmusError
from isthmus.transport import codec
from isthmus.transport.channel import Channel, RelayChannel

_log = logging.getLogger(__name__)


class SendQueues:
    """One sender thread per peer, made on first use."""

    def __init__(self, name: str):
        self.name = name
        self._queues: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def submit(self, peer: str, send, *args: Any) -> Future:
        with self._lock:
            queue = self._queues.get(peer)
            if queue is None:
                queue = self._queues[peer] = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-send-{peer}")
        return queue.submit(send, *args)

    def close(self, wait: bool = False) -> None:
        """Drop the sends not yet made (a stopping node need not wait for a host that is down), or, when
        ``wait``, make them all first."""
        with self._lock:
            queues, self._queues = list(self._queues.values()), {}
        for queue in queues:
            queue.shutdown(wait=False, cancel_futures=not wait)
        for queue in queues if wait else ():
            queue.shutdown(wait=True)  # after every queue was told, so that they drain in parallel


class PipelinedChannel(RelayChannel):
    """``inner`` with sends queued on ``queues``; see the module docstring."""

    def __init__(self, inner: Channel, queues: SendQueues, peers: Iterable[str] | None = None):
        super().__init__(inner, peers)
        self.queues = queues
        self._pending: dict[str, list[Future]] = {}

    def send(self, to: str, tag: str, obj: Any) -> None:
        self._check_peer(to)
        payload = codec.encode(obj)  # here, so that an unencodable object fails its caller
        self._pending.setdefault(to, []).append(self.queues.submit(to, self.inner._send_raw, to, tag, payload))

    def recv_any(self, frm: Iterable[str], tag: str, timeout: float | None = None) -> tuple[str, Any]:
        senders = list(frm)
        self.flush(senders)
        return super().recv_any(senders, tag, timeout)

    def _send_abort(self, tag: str, reason: str, peers: Iterable[str]) -> None:
        """In each peer's queue too: an abort sent past the queue overtook the message queued before it (a
        host's "ready" ahead of its failure), and the peer read the abort in its place."""
        for peer in peers:
            self._pending.setdefault(peer, []).append(self.queues.submit(peer, self.inner._send_abort, tag, reason, [peer]))

    def flush(self, peers: Iterable[str] | None = None) -> None:
        """Wait until ``peers`` (default: all) hold what was sent to them; raise the first failed delivery."""
        for peer in list(self._pending if peers is None else peers):
            for sent in self._pending.pop(peer, []):
                sent.result()

    def detach(self) -> None:
        """Stop tracking the sends in flight: they complete on their own, a failed one is logged."""
        for peer, sent in self._pending.items():
            for future in sent:
                future.add_done_callback(lambda done, peer=peer: _log_failure(done, peer))
        self._pending = {}


def _log_failure(done: Future, peer: str) -> None:
    exc = done.exception()
    if isinstance(exc, IsthmusError):
        _log.warning("a delivery to %s failed after its sender moved on: %s", peer, exc)
    elif exc is not None:
        _log.error("a delivery to %s failed after its sender moved on", peer, exc_info=exc)
