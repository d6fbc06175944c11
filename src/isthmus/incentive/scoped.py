"""A channel whose tags all carry a prefix: one protocol run inside a job, kept apart from every other.

Contribution measurement runs the training protocol once per coalition over the job's channel; the
prefix (``contribution/3/hetero-linear/partial``, ...) keeps each run's messages from ever being
taken for another's, while aborting still aborts the whole job.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from isthmus.transport.channel import Channel, RelayChannel


class ScopedChannel(RelayChannel):
    def __init__(self, inner: Channel, scope: str, peers: Iterable[str]):
        super().__init__(inner, peers)
        self.scope = scope

    def _tag(self, tag: str) -> str:
        return f"{self.scope}/{tag}"

    def send(self, to: str, tag: str, obj: Any) -> None:
        super().send(to, self._tag(tag), obj)

    def recv_any(self, frm: Iterable[str], tag: str, timeout: float | None = None) -> tuple[str, Any]:
        return super().recv_any(frm, self._tag(tag), timeout)
