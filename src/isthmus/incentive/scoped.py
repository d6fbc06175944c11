"""A channel whose tags all carry a prefix: one protocol run inside a job, kept apart from every other.

Contribution measurement runs the training protocol once per coalition over the job's channel; the
prefix (``contribution/3/hetero-linear/partial``, ...) keeps each run's messages from ever being
taken for another's, while aborting still aborts the whole job.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from isthmus.transport.channel import Channel


class ScopedChannel(Channel):
    def __init__(self, inner: Channel, scope: str, peers: Iterable[str]):
        super().__init__(inner.party, inner.job, peers)
        self.inner = inner
        self.scope = scope
        self.default_timeout = inner.default_timeout

    def _tag(self, tag: str) -> str:
        return f"{self.scope}/{tag}"

    def send(self, to: str, tag: str, obj: Any) -> None:
        self._check_peer(to)
        self.inner.send(to, self._tag(tag), obj)

    def recv(self, frm: str, tag: str, timeout: float | None = None) -> Any:
        self._check_peer(frm)
        return self.inner.recv(frm, self._tag(tag), timeout)

    def recv_any(self, frm: Iterable[str], tag: str, timeout: float | None = None) -> tuple[str, Any]:
        senders = list(frm)
        for sender in senders:
            self._check_peer(sender)
        return self.inner.recv_any(senders, self._tag(tag), timeout)

    def _send_raw(self, to: str, tag: str, payload: bytes) -> None:
        self.inner._send_raw(to, self._tag(tag), payload)

    def abort(self, reason: str) -> None:
        self.inner.abort(reason)  # the abort tag must stay unprefixed: it ends the whole job
