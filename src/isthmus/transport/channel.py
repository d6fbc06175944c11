"""The one interface protocols talk through: send to a named party under a tag, receive likewise.

A channel is bound to one party and one job, so messages of concurrent jobs never mix. Protocols
know nothing else about the network: the same protocol runs over the in-process hub in tests and
over mutual-TLS gRPC between machines.

What a party takes from its peers in a job is declared where the job is opened, before any peer
can send: ``GrpcNode.open_job(job, accept=[tag prefixes], limits={prefix: max bytes})`` (see
:mod:`isthmus.transport.mailbox`). A message outside those is refused: its sender gets a
:class:`~isthmus.errors.PeerRefusedError` and the next ``recv`` from that sender a ``ProtocolError``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from isthmus.errors import PeerTimeoutError
from isthmus.transport import codec

if TYPE_CHECKING:
    from isthmus.transport.mailbox import Mailbox


class Channel(ABC):
    """Messages of one job, as seen by one party."""

    #: Seconds a receive waits when the caller gives no timeout.
    default_timeout: float = 600.0

    def __init__(self, party: str, job: str, peers: Iterable[str]):
        self.party = party
        self.job = job
        self.peers = sorted(set(peers) - {party})

    #: Largest encoded message a receive accepts.
    max_message_bytes: int = codec.DEFAULT_MAX_BYTES

    def send(self, to: str, tag: str, obj: Any) -> None:
        """Encode ``obj`` and deliver it to party ``to`` under ``tag``; returns once the peer holds it."""
        self._check_peer(to)
        self._send_raw(to, tag, codec.encode(obj))

    def recv(self, frm: str, tag: str, timeout: float | None = None) -> Any:
        """Wait for the next message from ``frm`` under ``tag`` and return it decoded.

        Raises :class:`~isthmus.errors.PeerTimeoutError` naming the peer and tag after ``timeout``.
        """
        return self.recv_any([frm], tag, timeout)[1]

    def recv_any(self, frm: Iterable[str], tag: str, timeout: float | None = None) -> tuple[str, Any]:
        """Wait for the next message under ``tag`` from any of ``frm``; returns ``(sender, message)``.

        For services that answer whichever member asks (private queries, job invitations).
        """
        senders = list(frm)
        for sender in senders:
            self._check_peer(sender)
        wait = self.default_timeout if timeout is None else timeout
        got = self._next_payload(senders, tag, wait)
        if got is None:
            raise PeerTimeoutError(f"no message within {wait:g} s", peer=" or ".join(senders),
                                   address=self._address_of(senders), tag=tag)
        sender, payload = got
        return sender, codec.decode(payload, peer=sender, tag=tag, max_bytes=self.max_message_bytes)

    @abstractmethod
    def _send_raw(self, to: str, tag: str, payload: bytes) -> None:
        """Deliver already-encoded bytes (audited like any send)."""

    @abstractmethod
    def _next_payload(self, senders: list[str], tag: str, wait: float) -> tuple[str, bytes] | None:
        """The next raw payload under ``tag`` from one of ``senders``, or None after ``wait`` seconds."""

    @abstractmethod
    def _address_of(self, senders: list[str]) -> str:
        """Where the senders are, for error messages."""

    def broadcast(self, to: Iterable[str], tag: str, obj: Any) -> None:
        for party in to:
            self.send(party, tag, obj)

    def gather(self, frm: Iterable[str], tag: str, timeout: float | None = None) -> dict[str, Any]:
        return {party: self.recv(party, tag, timeout) for party in frm}

    def scoped(self, scope: str, peers: Iterable[str] | None = None) -> Channel:
        """This channel with every tag under ``scope/`` (and only ``peers``, when given): one step of a job,
        or one run inside a step, kept apart from every other. Its abort ends the whole job, except in a
        service's job (:meth:`keep_open`), where it ends only this scope at its peers: one request."""
        return ScopedChannel(self, scope, peers)

    def abort(self, reason: str) -> None:
        """Tell every peer that this party abandoned the job, so their receives fail at once.

        Best effort: a peer that cannot be reached is skipped, since the party is failing anyway, and a
        peer that aborted the job itself is not told, nor one told already in a scope (the algorithm's own
        notice, which ended the job there): it may have exited, and retrying it would only delay this
        party's end by a whole connect timeout.
        """
        from isthmus.transport.mailbox import ABORT_TAG

        self._send_abort(ABORT_TAG, reason, self.peers)

    def _send_abort(self, tag: str, reason: str, peers: Iterable[str]) -> None:
        from isthmus.errors import IsthmusError
        from isthmus.transport.mailbox import ABORT_TAG, MAX_ABORT_BYTES

        mailbox = self._mailbox()
        spared = set() if mailbox is None else mailbox.quitters(self.job) | (
            mailbox.told(self.job) if tag == ABORT_TAG else set())  # a scope's abort is one request's, in a service
        told = sorted(set(peers) - spared)
        for peer in told:
            try:
                self._send_raw(peer, tag, f"{self.party}: {reason}".encode()[:MAX_ABORT_BYTES])
            except IsthmusError:
                pass
        if mailbox:
            mailbox.note_told(self.job, told)

    def abort_after(self, exc: BaseException, doing: str) -> None:
        """Tell every peer that ``doing`` failed here, naming only the kind of error (:func:`for_peer`).

        Not when ``exc`` is a peer's own abort: every peer had that peer's word already, and one of ours,
        arriving first, named this party instead (a proposer read "vertical linear arbiter failed:
        PeerAbortedError" when the guest had too few rows).
        """
        from isthmus.errors import PeerAbortedError, for_peer

        if not isinstance(exc, PeerAbortedError):
            self.abort(f"{doing} failed: {for_peer(exc)}")

    def keep_open(self) -> None:
        """Make this channel's job a long-lived service's: a peer's abort notice ends nothing
        (:meth:`isthmus.transport.mailbox.Mailbox.keep_open`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot keep a job open")

    def close_scope(self, scope: str) -> None:
        """This party is done with ``scope``: what waits in it, or arrives in it later, is dropped
        (:meth:`isthmus.transport.mailbox.Mailbox.close_scope`). For a service's requests, whose job never ends."""
        raise NotImplementedError(f"{type(self).__name__} cannot close a scope")

    def _mailbox(self) -> Mailbox | None:
        """This party's mailbox, which knows who aborted the job and whom this party told; None where there is none."""
        return None

    def answers(self, peer: str, timeout: float) -> bool:
        """Whether ``peer``'s node answers a ping within ``timeout`` seconds; channels that cannot tell (in
        process, where no peer dies alone) say it does."""
        return True

    def close(self) -> None:
        """Release what the channel holds; the default holds nothing."""

    def _check_peer(self, party: str) -> None:
        if party not in self.peers:
            from isthmus.errors import ConfigError

            raise ConfigError(f"party {self.party!r} has no peer {party!r} in job {self.job!r}; peers: {self.peers}")


class RelayChannel(Channel):
    """Passes everything to another channel; subclasses change what passes (tag scopes, taps, faults).

    It starts with the inner channel's :attr:`default_timeout`; set on the relay, that applies to receives
    through it (a node's prediction waits the node's timeout even over the in-process hub's channel)."""

    def __init__(self, inner: Channel, peers: Iterable[str] | None = None):
        super().__init__(inner.party, inner.job, inner.peers if peers is None else peers)
        self.inner = inner
        self.default_timeout = inner.default_timeout
        self.max_message_bytes = inner.max_message_bytes

    def send(self, to: str, tag: str, obj: Any) -> None:
        self._check_peer(to)
        self.inner.send(to, tag, obj)

    def recv_any(self, frm: Iterable[str], tag: str, timeout: float | None = None) -> tuple[str, Any]:
        senders = list(frm)
        for sender in senders:
            self._check_peer(sender)
        return self.inner.recv_any(senders, tag, self.default_timeout if timeout is None else timeout)

    def abort(self, reason: str) -> None:
        self.inner.abort(reason)

    def _send_abort(self, tag: str, reason: str, peers: Iterable[str]) -> None:
        self.inner._send_abort(tag, reason, peers)

    def keep_open(self) -> None:
        self.inner.keep_open()

    def close_scope(self, scope: str) -> None:
        self.inner.close_scope(scope)

    def _send_raw(self, to: str, tag: str, payload: bytes) -> None:
        self.inner._send_raw(to, tag, payload)

    def _next_payload(self, senders: list[str], tag: str, wait: float) -> tuple[str, bytes] | None:
        return self.inner._next_payload(senders, tag, wait)

    def _address_of(self, senders: list[str]) -> str:
        return self.inner._address_of(senders)

    def _mailbox(self) -> Mailbox | None:
        return self.inner._mailbox()

    def answers(self, peer: str, timeout: float) -> bool:
        return self.inner.answers(peer, timeout)


class ScopedChannel(RelayChannel):
    """A channel whose tags all carry a prefix: see :meth:`Channel.scoped`."""

    def __init__(self, inner: Channel, scope: str, peers: Iterable[str] | None = None):
        super().__init__(inner, peers)
        self.scope = scope

    def send(self, to: str, tag: str, obj: Any) -> None:
        super().send(to, f"{self.scope}/{tag}", obj)

    def recv_any(self, frm: Iterable[str], tag: str, timeout: float | None = None) -> tuple[str, Any]:
        return super().recv_any(frm, f"{self.scope}/{tag}", timeout)

    def abort(self, reason: str) -> None:
        from isthmus.transport.mailbox import ABORT_TAG

        self._send_abort(ABORT_TAG, reason, self.peers)

    def _send_abort(self, tag: str, reason: str, peers: Iterable[str]) -> None:
        super()._send_abort(f"{self.scope}/{tag}", reason, peers)

    def close_scope(self, scope: str) -> None:
        super().close_scope(f"{self.scope}/{scope}")

    def close(self) -> None:
        """Close this channel's scope (:meth:`Channel.close_scope`): one request of a service has ended here."""
        self.inner.close_scope(self.scope)
