"""Mutual-TLS gRPC transport: each party runs one node, a server holding its mailbox plus clients to its peers.

A message travels as one client-streaming call of raw chunks (so no size limit of gRPC applies and
no protoc code is needed), or, up to 64 KiB, as one unary request (gRPC starts no thread to stream
it: half the cost of a small message; the receiver checks it as a stream of one chunk); ``send``
returns when the peer acknowledges that the message is in its mailbox. Both ends check identities
against the federation CA: the client checks that the server's certificate names the party it meant
to reach, the server that the client's certificate names the party it claims to be (see
:mod:`isthmus.transport.grpc_inbox`).

A node takes deliveries only for the jobs it has opened, under the tag prefixes each job accepts,
within per-tag size limits and a per-sender backlog quota (see :mod:`isthmus.transport.mailbox`).
Open jobs before starting, so that no peer is ever turned away::

    node = GrpcNode("guest", "0.0.0.0:7001", addresses, tls, audit=AuditLog(path, "guest"))
    node.open_job("job-7", accept=["psi/", "train/"], limits={"psi/": 64 << 20})
    node.start()
    channel = node.channel("job-7")

``channel(job)`` opens a job that is not open yet with the defaults (any tag, node-wide size
limit). A sender retries a delivery for a job its peer has not opened for up to its connect
timeout, as it does for a peer that is not listening yet; then it fails with
:class:`~isthmus.errors.PeerRefusedError`, like every other refusal, naming the reason.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent import futures
from typing import NamedTuple, Self

import grpc
from cryptography import x509

from isthmus.errors import (
    ConfigError,
    PeerError,
    PeerGoneError,
    PeerRefusedError,
    PeerUnreachableError,
    printable,
)
from isthmus.transport import codec
from isthmus.transport.audit import AuditLog
from isthmus.transport.certs import TlsFiles
from isthmus.transport.channel import Channel
from isthmus.transport.keyfiles import RENEW_PARTY_CERT, days_left
from isthmus.transport.grpc_inbox import (
    CHUNK_BYTES,
    DEFAULT_MIN_TRANSFER_RATE,
    DEFAULT_STALL_TIMEOUT,
    DEFAULT_STREAMS_PER_PEER,
    DELIVER,
    DELIVER_SMALL,
    JOB_KEY,
    MESSAGE_ID_KEY,
    PING,
    SENDER_KEY,
    SERVICE,
    SIZE_KEY,
    SMALL_BYTES,
    TAG_KEY,
    Inbox,
)
from isthmus.transport.mailbox import DEFAULT_BACKLOG_BYTES, DEFAULT_BACKLOG_MESSAGES, Mailbox, is_abort
from isthmus.transport.ports import why_unbindable

_FRAME_SLACK = 64 << 10  # gRPC's limits count the whole frame, not just our chunk
_ACK_LIMIT = 64 << 10
_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 2.0  # seconds between connection attempts
# A delivery slower than this (bytes/s) after connecting counts as a hung peer, not a slow link.
_MIN_TRANSFER_RATE = 1 << 20
# Worth retrying until the connect timeout: not listening (yet), busy, or the job not open (yet).
_RETRIED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION}
# How a ping ends when its peer is gone (or when this node cancelled it, having heard from another).
_NOT_ANSWERED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
_PROBE_EVERY_MAX = 5.0  # seconds a receive in a job waits before it pings its senders again
_PING_MIN_S = 1.0  # the least a ping waits for its answer: a live peer on a loaded machine may take a moment
_GRPC_BUSY = "Concurrent RPC limit exceeded!"  # what gRPC itself answers when every call slot is taken
_REFUSED = "Connection refused"  # in gRPC's words when the peer's machine answers and no process listens
_ENDED = ("its process has ended: it took part in this job, and now nothing listens at its address (its own "
          "log says why)")
_REFUSALS = {
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
}


class _PeerCalls(NamedTuple):
    stream: grpc.StreamUnaryMultiCallable  # a message of any size, in chunks
    small: grpc.UnaryUnaryMultiCallable  # a message of at most SMALL_BYTES, in one request
    ping: grpc.UnaryUnaryMultiCallable  # is the peer still there?


class _Connection(NamedTuple):
    channel: grpc.Channel
    calls: _PeerCalls


class GrpcNode:
    """One party's endpoint: receives for its open jobs into one mailbox, sends to peers over mTLS.

    ``peers`` maps each other party's name to its ``host:port``; an entry for ``party`` itself is
    ignored, so one federation-wide table can be passed to every node. ``connect_timeout`` bounds
    how long a send retries a peer that is not reachable (yet: a peer still starting looks the same as
    one that is gone). With ``give_up_on_unreachable`` (a party process, whose jobs end), a peer that
    stayed unreachable that long is gone for that job: a send to it is not retried, so a horizontal job
    goes on without a crashed client instead of waiting for it again at every later send, and a receive
    from it fails with :class:`~isthmus.errors.PeerGoneError` once it has answered no ping for that long
    (see :meth:`GrpcChannel._next_payload`), where it waited out the receive timeout (ten minutes by
    default) for a peer whose machine or node had died; a peer that delivered in the job and where nothing
    listens any more is given up after a few seconds (:meth:`ended`). A node's or query service's channels last as long
    as the process and must reach a member again once it is back.
    ``recv_timeout`` replaces :attr:`Channel.default_timeout` for this node's channels.

    What one peer may make this node hold: ``max_message_bytes`` per message (checked before it is
    buffered; lower per tag prefix with :meth:`open_job`), ``backlog_bytes`` and
    ``backlog_messages`` waiting or in transit per sender, ``streams_per_peer`` deliveries at once,
    each cut unless it starts within ``stall_timeout`` seconds and keeps ``min_transfer_rate`` bytes/s.
    """

    def __init__(
        self,
        party: str,
        listen: str,
        peers: dict[str, str],
        tls: TlsFiles,
        *,
        audit: AuditLog | None = None,
        max_message_bytes: int = codec.DEFAULT_MAX_BYTES,
        backlog_bytes: int = DEFAULT_BACKLOG_BYTES,
        backlog_messages: int = DEFAULT_BACKLOG_MESSAGES,
        streams_per_peer: int = DEFAULT_STREAMS_PER_PEER,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        min_transfer_rate: float = DEFAULT_MIN_TRANSFER_RATE,
        connect_timeout: float = 30.0,
        recv_timeout: float | None = None,
        give_up_on_unreachable: bool = False,
    ):
        if audit is not None and audit.party != party:
            raise ConfigError(f"the audit log of party {audit.party!r} cannot record the node of party {party!r}")
        self.party = party
        self.listen = listen
        self.peers = {name: address for name, address in peers.items() if name != party}
        self.audit = audit
        self.max_message_bytes = max_message_bytes
        self.connect_timeout = connect_timeout
        self.recv_timeout = Channel.default_timeout if recv_timeout is None else recv_timeout
        self.mailbox = Mailbox(max_message_bytes=max_message_bytes, backlog_bytes=backlog_bytes, backlog_messages=backlog_messages)
        self.inbox = Inbox(party, self.peers, self.mailbox, audit, streams_per_peer=streams_per_peer,
                           stall_timeout=stall_timeout, min_transfer_rate=min_transfer_rate,
                           pinned_tls_keys=tls.pinned_tls_keys())
        self.port: int | None = None  # the bound port once started (useful with "host:0")
        self._ca, self._cert, self._key = tls.load()
        #: the certificate this node presents, loaded once: a renewed one installed meanwhile waits for a restart
        self.certificate, self._cert_path = x509.load_pem_x509_certificate(self._cert), tls.cert
        self._server: grpc.Server | None = None
        self._connections: dict[str, _Connection] = {}
        self._unanswered: set[str] = set()  # peers whose last ping went unanswered, or whose last send gave up
        self._connections_lock = threading.Lock()
        self.give_up_on_unreachable = give_up_on_unreachable
        self._gone: set[tuple[str, str]] = set()  # (job, peer): unreachable for a whole connect timeout

    def open_job(self, job: str, accept: Iterable[str] | None = None, limits: Mapping[str, int] | None = None) -> None:
        """Take deliveries for ``job`` under tags starting with one of ``accept`` (default: any tag).

        ``limits`` lowers the largest message under some tag prefixes (longest prefix wins). Call it
        before :meth:`start`; called again, it replaces the job's prefixes and limits.
        """
        self.mailbox.open_job(job, accept, limits)

    def start(self) -> None:
        """Bind ``listen`` and serve; raises :class:`ConfigError` when the address is taken or invalid."""
        if self._server is not None:
            raise ConfigError(f"node of party {self.party!r} is already started")
        streams = self.inbox.max_streams
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=streams, thread_name_prefix=f"isthmus-{self.party}"),
            handlers=[self.inbox.handler()],
            maximum_concurrent_rpcs=streams,  # so no call waits for a worker with its peer's bytes unread
            options=[
                ("grpc.so_reuseport", 0),  # a second node on a taken port must fail, not share it
                ("grpc.max_receive_message_length", CHUNK_BYTES + _FRAME_SLACK),
                ("grpc.max_send_message_length", _ACK_LIMIT),
            ],
        )
        credentials = grpc.ssl_server_credentials([(self._key, self._cert)], root_certificates=self._ca, require_client_auth=True)
        why, port = self._why_unbindable(), 0
        if not why:  # probed first: gRPC logs a line of its own on failing to bind, noise before our reason
            try:
                port = server.add_secure_port(self.listen, credentials)
            except RuntimeError:  # recent grpcio raises, older ones return 0
                port = 0
            why = "" if port else self._why_unbindable() or "gRPC refused it"  # taken in between
        if why:
            server.stop(None)
            raise ConfigError(f"party {self.party!r} cannot listen on {self.listen}: {why}")
        self._server, self.port = server, port  # before it starts: a stop interrupting the start still stops it
        server.start()

    def _why_unbindable(self) -> str:
        host, _, number = self.listen.rpartition(":")
        return why_unbindable(host, int(number)) if number.isdigit() else "not host:port"

    def stop(self, grace: float = 1.0) -> None:
        """Finish deliveries in flight for up to ``grace`` seconds, then close everything."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        with self._connections_lock:
            for connection in self._connections.values():
                connection.channel.close()
            self._connections.clear()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def channel(self, job: str, peers: Iterable[str] | None = None, *, connect_timeout: float | None = None) -> Channel:
        """The messages of ``job``, with ``peers`` (default: every peer of this node); opens the job if need be.
        ``connect_timeout`` replaces the node's for this channel's sends (a prediction cannot wait as a job does)."""
        if self._server is None:
            raise ConfigError(f"start the node of party {self.party!r} before opening channels")
        chosen = set(self.peers if peers is None else peers) - {self.party}
        unknown = chosen - set(self.peers)
        if unknown:
            raise ConfigError(f"party {self.party!r} has no address for {sorted(unknown)} (job {job!r})")
        self.mailbox.ensure_job(job)
        return GrpcChannel(self, job, chosen, connect_timeout)

    def deliver(self, to: str, job: str, tag: str, payload: bytes, *, connect_timeout: float | None = None) -> None:
        """Stream ``payload`` to ``to`` and wait for its acknowledgement, retrying while it is unavailable for
        at most ``connect_timeout`` seconds (default: the node's)."""
        if self.audit:
            self.audit.record("send", job, to, tag, payload)
        metadata = (
            (SENDER_KEY, self.party.encode()),
            (JOB_KEY, job.encode()),
            (TAG_KEY, tag.encode()),
            (SIZE_KEY, str(len(payload))),
            (MESSAGE_ID_KEY, secrets.token_hex(16)),  # lets the peer drop a retried duplicate
        )
        address = self.peers[to]
        if (job, to) in self._gone:
            raise PeerUnreachableError("unreachable earlier in this job for a whole connect timeout; not retried",
                                       peer=to, address=address, tag=tag)
        connect_timeout = self.connect_timeout if connect_timeout is None else connect_timeout
        attempt_timeout = connect_timeout + len(payload) / _MIN_TRANSFER_RATE
        give_up = time.monotonic() + connect_timeout
        backoff, renewed = _BACKOFF_FIRST, False
        while True:
            try:
                if len(payload) <= SMALL_BYTES:
                    self._calls_to(to).small(payload, metadata=metadata, timeout=attempt_timeout)
                else:
                    self._calls_to(to).stream(_chunks(payload), metadata=metadata, timeout=attempt_timeout)
                return
            except grpc.RpcError as err:
                code, details = err.code(), printable((err.details() or "")[:500])  # a peer's server may write it
                if code == grpc.StatusCode.UNAVAILABLE and (refused := self._own_certificate_refused()):
                    raise PeerUnreachableError(refused, peer=to, address=address, tag=tag) from None
                retry = (code in _RETRIED and not _untrusted(details) and not self._runs_another_job(code)) or (
                    code == grpc.StatusCode.RESOURCE_EXHAUSTED and details == _GRPC_BUSY)
                left = give_up - time.monotonic()
                if retry and left > 0:
                    if not is_abort(tag):  # telling a peer that is slow to start why the job ends must not stop
                        self.mailbox.raise_if_aborted(job, tag, to)  # a peer gave up: retrying would only delay us
                        if _refused(code, details) and self.ended(job, to):
                            self.mark_gone(job, [to])
                            raise PeerUnreachableError(_ENDED, peer=to, address=address, tag=tag) from None
                    elif to in self.mailbox.quitters(job):
                        return  # it gave up: it knows
                    elif to in self.mailbox.senders(job):
                        if renewed:
                            return  # it was up in this job and is gone (its part done)
                        # Once more, over a new connection: gRPC answers with the old one's last error until its
                        # next attempt, which may predate the peer's start, and a live peer would never be told.
                        self._renew(to)
                        renewed, attempt_timeout = True, min(attempt_timeout, _BACKOFF_MAX)
                        continue
                    time.sleep(min(backoff, left))  # the last try at the deadline: a whole connect timeout
                    backoff = min(2 * backoff, _BACKOFF_MAX)
                    continue
                error = _send_error(code, details, connect_timeout, attempt_timeout, peer=to, address=address, tag=tag)
                if isinstance(error, PeerUnreachableError):
                    with self._connections_lock:
                        self._unanswered.add(to)
                    if self.give_up_on_unreachable:
                        self.mark_gone(job, [to])
                raise error from None

    def ended(self, job: str, peer: str) -> bool:
        """Whether ``peer``'s process for ``job`` has ended: it delivered to this party in the job, and nothing
        listens at its address now (a crash, the OOM killer, a full disk). A job's process does not come back, so
        retrying it for a whole connect timeout (a peer still starting looks the same, but has not delivered yet)
        only kept this party waiting a minute to blame its address. A refusal on the connection in use is
        confirmed over a new one: the old one answers with its last error until its next attempt, which may
        predate the peer's start. (A receive asks every few seconds: a live peer answers on the old one.)"""
        if not (self.give_up_on_unreachable and peer in self.mailbox.senders(job)):
            return False
        if not _refuses(self._calls_to(peer)):
            return False
        fresh = self._connect(peer)
        try:
            return _refuses(fresh.calls)
        finally:
            fresh.channel.close()

    def _own_certificate_refused(self) -> str | None:
        """Why peers refuse this party, if its certificate has expired (or is not valid yet) since the node
        started: each then closes the handshake, and a send saw only "Socket closed" for a whole connect timeout."""
        try:
            days_left(self.certificate, self._cert_path, "this party's certificate",
                      f"every peer refuses it; {RENEW_PARTY_CERT}, and this process is started again")
        except ConfigError as exc:
            return str(exc)
        return None

    def _runs_another_job(self, code: grpc.StatusCode) -> bool:
        """Whether a refusal as "not open" is final: a job process opens its one job before it listens, so a
        peer's job process that listens without it runs another job (copies of the job file that name it
        otherwise) or has ended this one; retrying for a whole connect timeout would change neither."""
        return code == grpc.StatusCode.FAILED_PRECONDITION and self.give_up_on_unreachable

    def mark_gone(self, job: str, peers: Iterable[str]) -> None:
        """``peers`` stayed unreachable for a whole connect timeout: no send of ``job`` retries them again."""
        self._gone.update((job, peer) for peer in peers)

    def any_answers(self, peers: Iterable[str], timeout: float) -> bool:
        """Whether one of ``peers``' nodes answers a ping within ``timeout`` seconds, all pinged at once and
        connected again if need be (a peer too old to know pings counts as answering). Without waiting for
        the connection, a peer that was back already failed the ping during the reconnection backoff."""
        answered: queue.SimpleQueue[bool] = queue.SimpleQueue()
        pings = {peer: self._ping(peer, timeout) for peer in peers}
        for ping, _ in pings.values():
            ping.add_done_callback(lambda done: answered.put(done.code() not in _NOT_ANSWERED))
        try:
            return any(answered.get() for _ in pings)  # the first answer will do
        finally:
            for peer, (ping, fresh) in pings.items():
                ping.cancel()
                self._settle(peer, ping.code(), fresh)

    def _ping(self, peer: str, timeout: float) -> tuple[grpc.Future, _Connection | None]:
        """A ping of ``peer``'s node, over a new connection if it did not answer last time: gRPC waits up to
        :data:`_BACKOFF_MAX` between attempts on the old one, so a node that was back already went on failing
        short pings (a query asker reported a lender missing for a few more queries; a board showed it down)."""
        with self._connections_lock:
            suspect = peer in self._unanswered
        fresh = self._connect(peer) if suspect else None
        calls = fresh.calls if fresh else self._calls_to(peer)
        return calls.ping.future(b"", timeout=timeout, wait_for_ready=True), fresh

    def _settle(self, peer: str, code: grpc.StatusCode, fresh: _Connection | None) -> None:
        """Remember whether ``peer`` answered; a new connection that reached it replaces the old one."""
        answered = code not in _NOT_ANSWERED
        with self._connections_lock:
            if answered:
                self._unanswered.discard(peer)
            elif code != grpc.StatusCode.CANCELLED:  # cancelled by this node: another peer answered first
                self._unanswered.add(peer)
            if fresh and answered:
                self._connections[peer] = fresh  # the old one dropped, as in _renew
        if fresh and not answered:
            fresh.channel.close()

    def _renew(self, peer: str) -> None:
        """Calls to ``peer`` go over a new connection from now on."""
        fresh = self._connect(peer)
        with self._connections_lock:  # the old one is dropped, not closed: a send still on it ends as it would have
            self._connections[peer] = fresh

    def _calls_to(self, peer: str) -> _PeerCalls:
        """The calls to ``peer``'s node, over one connection made for it alone."""
        with self._connections_lock:
            if peer not in self._connections:
                self._connections[peer] = self._connect(peer)
            return self._connections[peer].calls

    def _connect(self, peer: str) -> _Connection:
        credentials = grpc.ssl_channel_credentials(self._ca, self._key, self._cert)
        channel = grpc.secure_channel(
            self.peers[peer],
            credentials,
            options=[
                ("grpc.ssl_target_name_override", peer),  # the server's certificate must name this party
                ("grpc.use_local_subchannel_pool", 1),  # never share a connection made for another identity
                ("grpc.max_send_message_length", CHUNK_BYTES + _FRAME_SLACK),
                ("grpc.max_receive_message_length", _ACK_LIMIT),
                ("grpc.initial_reconnect_backoff_ms", int(_BACKOFF_FIRST * 1000)),
                ("grpc.max_reconnect_backoff_ms", int(_BACKOFF_MAX * 1000)),
            ],
        )
        return _Connection(channel, _PeerCalls(
            stream=channel.stream_unary(f"/{SERVICE}/{DELIVER}", request_serializer=bytes),
            small=channel.unary_unary(f"/{SERVICE}/{DELIVER_SMALL}", request_serializer=bytes),
            ping=channel.unary_unary(f"/{SERVICE}/{PING}", request_serializer=bytes)))


class GrpcChannel(Channel):
    """One job's view of a :class:`GrpcNode`; decoding happens here, where the caller can name peer and tag."""

    def __init__(self, node: GrpcNode, job: str, peers: Iterable[str], connect_timeout: float | None = None):
        super().__init__(node.party, job, peers)
        self.node = node
        self.default_timeout = node.recv_timeout
        self.max_message_bytes = node.max_message_bytes
        self.connect_timeout = connect_timeout

    def _send_raw(self, to: str, tag: str, payload: bytes) -> None:
        self.node.deliver(to, self.job, tag, payload, connect_timeout=self.connect_timeout)

    def _next_payload(self, senders: list[str], tag: str, wait: float) -> tuple[str, bytes] | None:
        """In a job (``give_up_on_unreachable``), a receive that waits pings its senders every few seconds
        and fails once none has answered for a whole connect timeout: a peer whose process, node or machine
        died sends nothing more, and nobody else will say so. One sender answering is enough to go on
        waiting, so an aggregator still waits a round out for its live clients."""
        get = self.node.mailbox.get_any
        if not self.node.give_up_on_unreachable:
            return get(self.job, senders, tag, wait)
        every = min(_PROBE_EVERY_MAX, self.node.connect_timeout / 4)
        deadline, silent_since = time.monotonic() + wait, None
        while True:
            left = max(0.0, deadline - time.monotonic())
            got = get(self.job, senders, tag, min(left, every))
            if got is not None or left <= every:
                return got
            if len(senders) == 1 and self.node.ended(self.job, senders[0]):  # an aggregator's many: pinged below
                self.node.mark_gone(self.job, senders)
                raise PeerGoneError(_ENDED, peer=senders[0], address=self._address_of(senders), tag=tag)
            if self.node.any_answers(senders, timeout=max(every, _PING_MIN_S)):
                silent_since = None
                continue
            now = time.monotonic()
            silent_since = now if silent_since is None else silent_since
            if now - silent_since >= self.node.connect_timeout:
                self.node.mark_gone(self.job, senders)
                raise PeerGoneError(f"no answer to pings for {now - silent_since:.0f} s: its process, node or "
                                    "machine stopped", peer=" or ".join(senders), address=self._address_of(senders), tag=tag)

    def _mailbox(self) -> Mailbox:
        return self.node.mailbox

    def answers(self, peer: str, timeout: float) -> bool:
        return self.node.any_answers([peer], timeout)

    def keep_open(self) -> None:
        self.node.mailbox.keep_open(self.job)

    def close_scope(self, scope: str) -> None:
        self.node.mailbox.close_scope(self.job, scope)

    def _address_of(self, senders: list[str]) -> str:
        return ", ".join(self.node.peers[s] for s in senders)


def _chunks(payload: bytes) -> Iterator[memoryview]:
    """Slices of the payload without copying it (the serializer copies one chunk at a time)."""
    view = memoryview(payload)
    for start in range(0, len(view), CHUNK_BYTES):
        yield view[start : start + CHUNK_BYTES]


def _refuses(calls: _PeerCalls) -> bool:
    """Whether a ping without waiting for a connection is refused: at once, while nothing listens."""
    try:
        calls.ping(b"", timeout=_PING_MIN_S)
        return False
    except grpc.RpcError as err:
        return _refused(err.code(), err.details() or "")


def _refused(code: grpc.StatusCode, details: str) -> bool:
    """Whether a call failed because nothing listens at the peer's address (its machine answered)."""
    return code == grpc.StatusCode.UNAVAILABLE and _REFUSED in details


def _untrusted(details: str) -> bool:
    """The peer answered with a certificate this party's CA did not sign: a setup mistake (or an impostor)
    that retrying for a whole connect timeout will not mend."""
    return "CERTIFICATE_VERIFY_FAILED" in details


def _why_untrusted(details: str) -> str:
    """What the TLS verification error means for the operator reading it."""
    if "certificate has expired" in details:
        return "the peer's certificate has expired: the CA operator renews it (`isthmus ca sign --renew`)"
    if "certificate is not yet valid" in details:
        return "the peer's certificate is not valid yet: this machine's clock is behind, or the CA's was ahead"
    return ("the peer's certificate is not signed by this party's CA: do both parties' key folders hold the same "
            "federation's ca.pem?")


def _send_error(
    code: grpc.StatusCode, details: str, connect_timeout: float, attempt_timeout: float, *, peer: str, address: str, tag: str
) -> PeerError:
    if code == grpc.StatusCode.UNAVAILABLE and _untrusted(details):
        return PeerUnreachableError(f"{_why_untrusted(details)} ({details})", peer=peer, address=address, tag=tag)
    if _refused(code, details):  # its machine answers, no process
        return PeerUnreachableError(f"no connection within {connect_timeout:g} s: nothing listens at its address "
                                    "(connection refused), its process has stopped or not started", peer=peer,
                                    address=address, tag=tag)
    if code == grpc.StatusCode.UNAVAILABLE:
        return PeerUnreachableError(f"no connection within {connect_timeout:g} s; last error: {details}", peer=peer, address=address, tag=tag)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:  # never connected, or hung while receiving
        return PeerUnreachableError(f"no acknowledgement within {attempt_timeout:g} s", peer=peer, address=address, tag=tag)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return PeerRefusedError(f"peer refused the message: {details} there: it runs another job (do the job files "
                                "name the same job?) or has ended this one", peer=peer, address=address, tag=tag)
    if code in _REFUSALS:
        return PeerRefusedError(f"peer refused the message: {details}", peer=peer, address=address, tag=tag)
    return PeerError(f"delivery failed: {code.name}: {details}", peer=peer, address=address, tag=tag)
