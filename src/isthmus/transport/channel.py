"""The one interface protocols talk through: send to a named party under a tag, receive likewise.

A channel is bound to one party and one job, so messages of concurrent jobs never mix. Protocols
know nothing else about the network: the same protocol runs over the in-process hub in tests and
over mutual-TLS gRPC between machines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any


class Channel(ABC):
    """Messages of one job, as seen by one party."""

    #: Seconds a receive waits when the caller gives no timeout.
    default_timeout: float = 600.0

    def __init__(self, party: str, job: str, peers: Iterable[str]):
        self.party = party
        self.job = job
        self.peers = sorted(set(peers) - {party})

    @abstractmethod
    def send(self, to: str, tag: str, obj: Any) -> None:
        """Encode ``obj`` and deliver it to party ``to`` under ``tag``; returns once the peer holds it."""

    @abstractmethod
    def recv(self, frm: str, tag: str, timeout: float | None = None) -> Any:
        """Wait for the next message from ``frm`` under ``tag`` and return it decoded.

        Raises :class:`~isthmus.errors.PeerTimeoutError` naming the peer and tag after ``timeout``.
        """

    @abstractmethod
    def recv_any(self, frm: Iterable[str], tag: str, timeout: float | None = None) -> tuple[str, Any]:
        """Wait for the next message under ``tag`` from any of ``frm``; returns ``(sender, message)``.

        For services that answer whichever member asks (private queries, job invitations).
        """

    def broadcast(self, to: Iterable[str], tag: str, obj: Any) -> None:
        for party in to:
            self.send(party, tag, obj)

    def gather(self, frm: Iterable[str], tag: str, timeout: float | None = None) -> dict[str, Any]:
        return {party: self.recv(party, tag, timeout) for party in frm}

    def abort(self, reason: str) -> None:
        """Tell every peer that this party abandoned the job, so their receives fail at once.

        Best effort: a peer that cannot be reached is skipped, since the party is failing anyway.
        """
        from isthmus.errors import IsthmusError
        from isthmus.transport.mailbox import ABORT_TAG

        for peer in self.peers:
            try:
                self._send_raw(peer, ABORT_TAG, f"{self.party}: {reason}".encode()[:2000])
            except IsthmusError:
                pass

    @abstractmethod
    def _send_raw(self, to: str, tag: str, payload: bytes) -> None:
        """Deliver already-encoded bytes (used by :meth:`abort`, whose payload is plain text)."""

    def close(self) -> None:
        """Release what the channel holds; the default holds nothing."""

    def _check_peer(self, party: str) -> None:
        if party not in self.peers:
            from isthmus.errors import ConfigError

            raise ConfigError(f"party {self.party!r} has no peer {party!r} in job {self.job!r}; peers: {self.peers}")
