"""Where delivered messages wait until the protocol asks for them, keyed by (job, sender, tag)."""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict, deque

from isthmus.errors import PeerAbortedError

#: Tag under which a party tells its peers that it abandoned a job (payload: the reason, as text).
ABORT_TAG = "isthmus/abort"


class Mailbox:
    """FIFO queues per (job, sender, tag); a receive blocks until a message arrives or time runs out."""

    def __init__(self) -> None:
        self._queues: dict[tuple[str, str, str], deque[tuple[int, bytes]]] = defaultdict(deque)
        self._arrivals = itertools.count()  # so recv_any serves senders in arrival order
        self._aborted: dict[str, tuple[str, str]] = {}  # job -> (sender, reason)
        self._cond = threading.Condition()

    def put(self, job: str, sender: str, tag: str, payload: bytes) -> None:
        with self._cond:
            if tag == ABORT_TAG:
                self._aborted.setdefault(job, (sender, payload[:2000].decode("utf-8", "replace")))
            else:
                self._queues[(job, sender, tag)].append((next(self._arrivals), payload))
            self._cond.notify_all()

    def get(self, job: str, sender: str, tag: str, timeout: float | None) -> bytes | None:
        """The next payload, or ``None`` when ``timeout`` seconds pass first."""
        got = self.get_any(job, [sender], tag, timeout)
        return None if got is None else got[1]

    def get_any(self, job: str, senders: list[str], tag: str, timeout: float | None) -> tuple[str, bytes] | None:
        """The next payload under ``tag`` from whichever of ``senders`` delivered first, with its sender.

        Raises :class:`PeerAbortedError` as soon as any peer has aborted the job.
        """
        keys = [(job, sender, tag) for sender in senders]
        with self._cond:
            ready = lambda: job in self._aborted or any(self._queues.get(k) for k in keys)  # noqa: E731
            if not self._cond.wait_for(ready, timeout=timeout):
                return None
            self._raise_if_aborted(job, tag)
            key = min((k for k in keys if self._queues.get(k)), key=lambda k: self._queues[k][0][0])
            return key[1], self._pop(key)

    def raise_if_aborted(self, job: str, tag: str) -> None:
        """For senders: stop retrying a delivery once a peer has given up on the job."""
        with self._cond:
            self._raise_if_aborted(job, tag)

    def _raise_if_aborted(self, job: str, tag: str) -> None:
        if job in self._aborted:
            sender, reason = self._aborted[job]
            raise PeerAbortedError(f"peer aborted the job: {reason}", peer=sender, tag=tag)

    def _pop(self, key: tuple[str, str, str]) -> bytes:
        queue = self._queues[key]
        _, payload = queue.popleft()
        if not queue:
            del self._queues[key]
        return payload

    def drop_job(self, job: str) -> None:
        with self._cond:
            self._aborted.pop(job, None)
            for key in [k for k in self._queues if k[0] == job]:
                del self._queues[key]
