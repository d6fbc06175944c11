"""Where delivered messages wait until the protocol asks for them, keyed by (job, sender, tag).

A peer's deliveries are hostile input for memory too, so a message is admitted only if

- its job is open (:meth:`Mailbox.open_job`); deliveries for any other job are refused, so a peer
  cannot park messages under job ids nobody will ever read;
- its tag starts with one of the prefixes the job accepts (by default any tag; :data:`ABORT_TAG`
  always);
- its size is within the limit of its tag: the longest matching prefix in the job's ``limits``,
  else the mailbox's ``max_message_bytes``;
- its sender's backlog stays within the quota: bytes and messages waiting here or still in
  transit, over all jobs, so unread tags or a burst cannot grow without bound.

A message in a scope the receiver has closed (:meth:`Mailbox.close_scope`: a service's request it is
done with) is admitted and then discarded, so it holds none of its sender's quota.

A refused delivery raises :class:`Refused` at the delivering end and leaves a note for the
receiver: the next receive from that sender in that job raises it as a :class:`ProtocolError`, so
nobody waits for a message that will never come. A note is raised once (a long-running service can
log it and go on), and a job keeps at most one per sender, the first.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from isthmus.errors import ConfigError, PeerAbortedError, ProtocolError, ReceiveError, printable
from isthmus.transport import codec

#: Tag under which a party tells its peers that it abandoned a job (payload: the reason, as text); under
#: ``SCOPE/isthmus/abort``, that it abandoned one scope of it (:meth:`Channel.scoped`).
ABORT_TAG = "isthmus/abort"
MAX_ABORT_BYTES = 2000
#: Per sender and service job, the scopes whose aborts are kept; older ones are forgotten first.
MAX_SCOPE_ABORTS = 32
#: Per job, the scopes closed most recently (:meth:`Mailbox.close_scope`): what arrives in them is discarded.
MAX_CLOSED_SCOPES = 4096
#: Deliveries refused because their job is not open here, remembered per sender (:meth:`Mailbox.unopened`).
MAX_UNOPENED_SENDERS = 256
MAX_UNOPENED_PER_SENDER = 8

#: Per sender, over all jobs: what may wait in the mailbox or be in transit to it.
DEFAULT_BACKLOG_BYTES = 2 * codec.DEFAULT_MAX_BYTES
DEFAULT_BACKLOG_MESSAGES = 4096

Rule = Literal["job", "tag", "size", "quota"]


class Refused(Exception):
    """A delivery the mailbox does not take; the text names sender, job, tag and the ``rule`` it broke."""

    def __init__(self, message: str, rule: Rule):
        super().__init__(message)
        self.rule = rule


@dataclass
class _Job:
    accept: tuple[str, ...] | None  # tag prefixes; None: any tag
    limits: dict[str, int]  # tag prefix -> largest message in bytes
    aborted: tuple[str, str] | None = None  # (sender, reason) of the first abort
    quitters: set[str] = field(default_factory=set)  # every sender that aborted the job
    told: set[str] = field(default_factory=set)  # every peer this party told that it abandoned the job or a scope
    refusals: dict[str, str] = field(default_factory=dict)  # sender -> why a delivery was refused, until received
    failure: str | None = None  # why this party failed to take a message of the job (Mailbox.fail)
    senders: set[str] = field(default_factory=set)  # every sender whose delivery was admitted
    service: bool = False  # a long-lived service's job: an abort ends one scope, never the job (Mailbox.keep_open)
    scope_aborts: dict[str, dict[str, str]] = field(default_factory=dict)  # sender -> scope -> reason
    closed_scopes: dict[str, None] = field(default_factory=dict)  # oldest first

    def closed(self, tag: str) -> bool:
        """Whether ``tag`` is, or lies in, a closed scope: ``a/b/c`` lies in ``a/b`` and in ``a``."""
        return bool(self.closed_scopes) and any(
            scope in self.closed_scopes for scope in itertools.accumulate(tag.split("/"), lambda a, b: f"{a}/{b}"))


@dataclass
class _Backlog:
    bytes: int = 0
    messages: int = 0


class Mailbox:
    """FIFO queues per (job, sender, tag); a receive blocks until a message arrives or time runs out."""

    def __init__(
        self,
        *,
        max_message_bytes: int = codec.DEFAULT_MAX_BYTES,
        backlog_bytes: int = DEFAULT_BACKLOG_BYTES,
        backlog_messages: int = DEFAULT_BACKLOG_MESSAGES,
    ):
        if not 0 < max_message_bytes <= backlog_bytes or backlog_messages < 1:
            raise ConfigError(
                f"need 0 < max_message_bytes ({max_message_bytes}) <= backlog_bytes ({backlog_bytes}) and backlog_messages >= 1"
            )
        self.max_message_bytes = max_message_bytes
        self.backlog_bytes = backlog_bytes
        self.backlog_messages = backlog_messages
        self._jobs: dict[str, _Job] = {}
        self._queues: dict[tuple[str, str, str], deque[tuple[int, bytes]]] = {}
        self._backlogs: dict[str, _Backlog] = {}
        self._unopened: dict[str, deque[tuple[str, str]]] = {}  # sender -> (job, tag) of deliveries to no open job
        self._arrivals = itertools.count()  # so recv_any serves senders in arrival order
        self._cond = threading.Condition()

    # -- what is accepted ---------------------------------------------------------------------------

    def open_job(self, job: str, accept: Iterable[str] | None = None, limits: Mapping[str, int] | None = None) -> None:
        """Accept deliveries for ``job`` under tags starting with one of ``accept`` (default: any tag).

        ``limits`` maps tag prefixes to the largest message in bytes under them (the longest
        matching prefix wins; other tags get ``max_message_bytes``). Opening an open job replaces
        its prefixes and limits and keeps what is queued.
        """
        prefixes = None if accept is None else tuple(accept)
        if isinstance(accept, str) or (prefixes is not None and not all(isinstance(p, str) for p in prefixes)):
            raise ConfigError(f"job {job!r}: accept takes a list of tag prefixes, got {accept!r}")
        sizes = dict(limits or {})
        for prefix, size in sizes.items():
            if not (isinstance(prefix, str) and type(size) is int and 0 < size <= self.max_message_bytes):
                raise ConfigError(f"job {job!r}: limit {size!r} for tag prefix {prefix!r} is not in 1..{self.max_message_bytes} bytes")
        with self._cond:
            if job in self._jobs:
                self._jobs[job].accept, self._jobs[job].limits = prefixes, sizes
            else:
                self._jobs[job] = _Job(prefixes, sizes)

    def ensure_job(self, job: str) -> None:
        """Open ``job`` with the defaults (any tag, the mailbox-wide size limit) unless it is open."""
        with self._cond:
            self._jobs.setdefault(job, _Job(None, {}))

    def backlog(self, sender: str) -> tuple[int, int]:
        """Bytes and messages of ``sender`` waiting here or in transit, as counted against its quota."""
        with self._cond:
            backlog = self._backlogs.get(sender, _Backlog())
            return backlog.bytes, backlog.messages

    # -- delivering ---------------------------------------------------------------------------------

    def reserve(self, job: str, sender: str, tag: str, size: int) -> Reservation:
        """Admit a delivery of ``size`` bytes before it is transferred, holding room in the sender's backlog.

        Raises :class:`Refused` (and notes it for the receiver when the job is open).
        """
        with self._cond:
            state = self._jobs.get(job)
            if state is None:
                if sender in self._unopened or len(self._unopened) < MAX_UNOPENED_SENDERS:
                    self._unopened.setdefault(sender, deque(maxlen=MAX_UNOPENED_PER_SENDER)).append((job, tag))
                raise Refused(f"job {job!r} is not open", "job")
            try:
                self._admit(state, job, sender, tag, size)
            except Refused as refused:
                state.refusals.setdefault(sender, str(refused))
                raise
            state.senders.add(sender)
            if not is_abort(tag):
                backlog = self._backlogs.setdefault(sender, _Backlog())
                backlog.bytes += size
                backlog.messages += 1
        return Reservation(self, job, sender, tag, size)

    def put(self, job: str, sender: str, tag: str, payload: bytes) -> None:
        """Admit and file a payload that is already here (in-process delivery); raises :class:`Refused`."""
        self.reserve(job, sender, tag, len(payload)).fill(payload)

    def refuse(self, job: str, sender: str, reason: str) -> None:
        """Note that a delivery from ``sender`` was cut, so the next receive from it in ``job`` fails at once."""
        with self._cond:
            state = self._jobs.get(job)
            if state is not None:
                state.refusals.setdefault(sender, reason)

    def fail(self, job: str, reason: str) -> None:
        """This party failed to take a message of ``job`` (it could not record it): every receive of the job
        raises :class:`ReceiveError` from now on, as nothing can replace that message. A service's job goes on:
        only the request that message belonged to fails, at its sender."""
        with self._cond:
            state = self._jobs.get(job)
            if state is not None and not state.service and state.failure is None:
                state.failure = reason
                self._cond.notify_all()

    def _admit(self, state: _Job, job: str, sender: str, tag: str, size: int) -> None:
        if is_abort(tag):
            if size > MAX_ABORT_BYTES:
                raise Refused(f"abort notice of {size} bytes in job {job!r} exceeds {MAX_ABORT_BYTES} bytes", "size")
            return
        if state.accept is not None and not any(tag.startswith(prefix) for prefix in state.accept):
            raise Refused(f"job {job!r} accepts no tag {tag!r} (accepted prefixes: {list(state.accept)})", "tag")
        limit = self._limit(state, tag)
        if size > limit:
            raise Refused(f"message of {size} bytes under tag {tag!r} in job {job!r} exceeds the limit of {limit} bytes", "size")
        backlog = self._backlogs.get(sender, _Backlog())
        if backlog.bytes + size > self.backlog_bytes or backlog.messages >= self.backlog_messages:
            raise Refused(
                f"{sender!r} already has {backlog.messages} messages of {backlog.bytes} bytes waiting or in transit, "
                f"so a message of {size} bytes under tag {tag!r} in job {job!r} exceeds its quota of "
                f"{self.backlog_messages} messages and {self.backlog_bytes} bytes",
                "quota",
            )

    def _limit(self, state: _Job, tag: str) -> int:
        prefix = max((p for p in state.limits if tag.startswith(p)), key=len, default=None)
        return self.max_message_bytes if prefix is None else state.limits[prefix]

    def _file(self, reservation: Reservation, payload: bytes) -> None:
        job, sender, tag = reservation.job, reservation.sender, reservation.tag
        with self._cond:
            state = self._jobs.get(job)
            if is_abort(tag):
                if state is not None and not state.closed(tag):
                    self._note_abort(state, sender, _aborted_scope(tag),
                                     printable(payload[:MAX_ABORT_BYTES].decode("utf-8", "replace")))
            elif state is None or state.closed(tag):  # its job was dropped, or its scope closed, in transit
                self._release(sender, reservation.size)
            else:
                self._queues.setdefault((job, sender, tag), deque()).append((next(self._arrivals), payload))
            self._cond.notify_all()

    @staticmethod
    def _note_abort(state: _Job, sender: str, scope: str, reason: str) -> None:
        """In a service's job, an abort ends the sender's part of one scope; in any other job, the job."""
        if not state.service:
            state.quitters.add(sender)
            if state.aborted is None:
                state.aborted = (sender, reason)
        elif scope:
            scopes = state.scope_aborts.setdefault(sender, {})
            scopes[scope] = reason
            if len(scopes) > MAX_SCOPE_ABORTS:
                del scopes[next(iter(scopes))]

    def _release(self, sender: str, size: int) -> None:
        backlog = self._backlogs[sender]
        backlog.bytes -= size
        backlog.messages -= 1
        if not backlog.messages:
            del self._backlogs[sender]

    # -- receiving ----------------------------------------------------------------------------------

    def get(self, job: str, sender: str, tag: str, timeout: float | None) -> bytes | None:
        """The next payload, or ``None`` when ``timeout`` seconds pass first."""
        got = self.get_any(job, [sender], tag, timeout)
        return None if got is None else got[1]

    def get_any(self, job: str, senders: list[str], tag: str, timeout: float | None) -> tuple[str, bytes] | None:
        """The next payload under ``tag`` from whichever of ``senders`` delivered first, with its sender.

        Raises :class:`ReceiveError` once this party failed to take a message of the job (:meth:`fail`),
        :class:`PeerAbortedError` as soon as any peer has aborted the job, and :class:`ProtocolError`
        once for each refused delivery from one of ``senders``. In a service's job, an abort of the scope of
        ``tag`` by one of ``senders`` is raised once what they sent before it has been read: a host's reason
        for refusing a prediction is read before the notice that ends it, not lost behind it.
        """
        keys = [(job, sender, tag) for sender in senders]

        def ready() -> bool:
            state = self._jobs.get(job)
            if state is not None and (self._abort_of(state, senders, tag) or state.failure
                                      or any(s in state.refusals for s in senders)):
                return True
            return any(k in self._queues for k in keys)

        with self._cond:
            if not self._cond.wait_for(ready, timeout=timeout):
                return None
            state = self._jobs.get(job)
            if state is not None and state.failure is not None:
                raise ReceiveError(state.failure)
            if state is not None and state.aborted is not None:  # a job's abort ends every receive at once
                self._raise_if_aborted(job, senders, tag)
            refused = next((s for s in senders if state is not None and s in state.refusals), None)
            if refused is not None:
                reason = state.refusals.pop(refused)
                raise ProtocolError(f"a message was refused on arrival: {reason}", peer=refused, tag=tag)
            queued = [k for k in keys if k in self._queues]
            if not queued:
                self._raise_if_aborted(job, senders, tag)
            key = min(queued, key=lambda k: self._queues[k][0][0])
            return key[1], self._pop(key)

    def raise_if_aborted(self, job: str, tag: str, peer: str | None = None) -> None:
        """For senders: stop retrying a delivery (to ``peer``) once a peer has given up on the job (``peer``
        on the scope of ``tag``, in a service's job)."""
        with self._cond:
            self._raise_if_aborted(job, [] if peer is None else [peer], tag)

    def quitters(self, job: str) -> set[str]:
        """The senders that aborted ``job``: telling them it ends is needless (they may have exited)."""
        with self._cond:
            state = self._jobs.get(job)
            return set(state.quitters) if state is not None else set()

    def note_told(self, job: str, peers: Iterable[str]) -> None:
        """This party told ``peers`` that it abandoned ``job`` or one of its scopes."""
        with self._cond:
            self._jobs.setdefault(job, _Job(None, {})).told.update(peers)

    def told(self, job: str) -> set[str]:
        """The peers this party told that it abandoned ``job`` or one of its scopes."""
        with self._cond:
            state = self._jobs.get(job)
            return set(state.told) if state is not None else set()

    def unopened(self) -> dict[str, list[tuple[str, str]]]:
        """Per sender, the job and tag of its last deliveries refused because their job is not open here: a
        peer that asks for another job than the one this process runs."""
        with self._cond:
            return {sender: list(refused) for sender, refused in self._unopened.items()}

    def senders(self, job: str) -> set[str]:
        """The peers (authenticated by the transport) that have delivered to ``job``: they were up, even if gone since."""
        with self._cond:
            state = self._jobs.get(job)
            return set(state.senders) if state is not None else set()

    def _raise_if_aborted(self, job: str, senders: list[str], tag: str) -> None:
        state = self._jobs.get(job)
        aborted = None if state is None else self._abort_of(state, senders, tag)
        if aborted is not None:
            sender, reason = aborted
            raise PeerAbortedError(reason, peer=sender, tag=tag)

    @staticmethod
    def _abort_of(state: _Job, senders: list[str], tag: str) -> tuple[str, str] | None:
        """(sender, reason) of the abort that ends a receive from ``senders`` under ``tag``, if any."""
        if state.aborted is not None:
            return state.aborted
        for sender in senders:
            for scope, reason in state.scope_aborts.get(sender, {}).items():
                if tag.startswith(f"{scope}/"):
                    return sender, reason
        return None

    def _pop(self, key: tuple[str, str, str]) -> bytes:
        queue = self._queues[key]
        _, payload = queue.popleft()
        if not queue:
            del self._queues[key]
        self._release(key[1], len(payload))
        return payload

    def keep_open(self, job: str) -> None:
        """Make ``job`` a long-lived service's (a query service's, the nodes' own): nobody may end it, so a
        peer's abort notice for the whole job is dropped, and one for a scope (a request) ends only the
        receives from that peer in that scope. Otherwise one member's abort would fail every receive of the
        job, every other member's requests too, and silence the service until it restarted."""
        with self._cond:
            state = self._jobs.setdefault(job, _Job(None, {}))
            state.service, state.aborted = True, None
            state.quitters.clear()

    def close_scope(self, job: str, scope: str) -> None:
        """This party is done with ``scope`` of ``job`` (one request of a service; the tag ``scope`` and every
        tag under ``scope/``): drop what waits in it and discard what arrives in it later, so that nothing of
        an ended request waits here for ever, held against its sender's quota (the guest's release of a
        prediction a host refused; an answer that came after its asker stopped waiting). Only the
        :data:`MAX_CLOSED_SCOPES` latest closed scopes are kept."""
        with self._cond:
            state = self._jobs.get(job)
            if state is None:
                return
            state.closed_scopes[scope] = None
            if len(state.closed_scopes) > MAX_CLOSED_SCOPES:
                del state.closed_scopes[next(iter(state.closed_scopes))]
            for scopes in state.scope_aborts.values():
                scopes.pop(scope, None)
            for key in [k for k in self._queues if k[0] == job and state.closed(k[2])]:
                for _, payload in self._queues.pop(key):
                    self._release(key[1], len(payload))

    def drop_job(self, job: str) -> None:
        """Forget ``job``: its queued messages, notes and abort; later deliveries for it are refused."""
        with self._cond:
            self._jobs.pop(job, None)
            for key in [k for k in self._queues if k[0] == job]:
                for _, payload in self._queues.pop(key):
                    self._release(key[1], len(payload))


def is_abort(tag: str) -> bool:
    """Whether ``tag`` carries an abort notice, for the whole job or for one scope of it."""
    return _aborted_scope(tag) is not None


def _aborted_scope(tag: str) -> str | None:
    """The scope an abort notice under ``tag`` ends ("" for the whole job), or None for any other tag."""
    if tag == ABORT_TAG:
        return ""
    return tag[: -len(ABORT_TAG) - 1] if tag.endswith(f"/{ABORT_TAG}") else None


class Reservation:
    """Room held in a sender's backlog while its message is in transit: :meth:`fill` it or :meth:`release` it."""

    def __init__(self, mailbox: Mailbox, job: str, sender: str, tag: str, size: int):
        self.mailbox, self.job, self.sender, self.tag, self.size = mailbox, job, sender, tag, size
        self._open = True

    def fill(self, payload: bytes) -> None:
        """File the arrived payload (of the reserved size) where receives will find it."""
        if len(payload) != self.size:
            raise ValueError(f"reserved {self.size} bytes, got {len(payload)}")
        if self._open:
            self._open = False
            self.mailbox._file(self, payload)

    def release(self) -> None:
        """Give the room back: the transfer failed or was cut."""
        if self._open:
            self._open = False
            if not is_abort(self.tag):  # an abort notice holds no room
                with self.mailbox._cond:
                    self.mailbox._release(self.sender, self.size)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
