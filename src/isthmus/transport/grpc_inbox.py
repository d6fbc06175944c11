"""The receiving half of a gRPC node: who may deliver, how much, how fast, and where it lands.

One client-streaming RPC carries one message as raw chunks; the header travels as call metadata.
The sender's identity comes from its verified client certificate, never from what it claims. Then:

- the mailbox admits the message on its declared size before a byte is buffered (open job,
  accepted tag, the tag's size limit, the sender's backlog quota: see
  :mod:`isthmus.transport.mailbox`), and the running total is held to the declared size;
- a peer has at most ``streams_per_peer`` deliveries in progress; more are answered "busy", which
  the sender retries. With gRPC's bound on concurrent calls (``streams_per_peer`` per peer plus
  :data:`SPARE_STREAMS`) and as many workers, a slow peer cannot take the workers of the others;
- a delivery keeps pace or is cut: each chunk is due ``stall_timeout`` seconds after the start plus
  the time to transfer everything up to its end at ``min_transfer_rate``, so a sender that stalls
  or trickles frees its worker instead of holding it forever.

Every refusal reaches the sender with its reason (in the gRPC status) and, when the job is open,
the receiver, whose next receive from that sender fails at once. A message this party fails to take
(its audit log cannot record it) fails the receiver's job, and reaches the sender as "not taken".
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import grpc
from cryptography import x509

from isthmus.errors import IsthmusError
from isthmus.transport.audit import AuditLog
from isthmus.transport.keyfiles import tls_key_digest
from isthmus.transport.mailbox import Mailbox, Refused

SERVICE = "isthmus.transport.Transport"
DELIVER = "Deliver"
#: A sender's call for one message of at most :data:`SMALL_BYTES` as a single request (a unary call: the
#: sender's gRPC starts no thread to stream it). This end serves it as a stream of one chunk, with every
#: check of :meth:`Inbox.deliver`: a unary handler would hold a worker while a peer stalls its request.
DELIVER_SMALL = "DeliverSmall"
SMALL_BYTES = 64 << 10
#: A sender's check that this node still answers, while it waits for a message from it: an empty
#: request, an empty reply. It carries no data, so it is not audited.
PING = "Ping"

# Call metadata; "-bin" values are raw bytes, so job ids and tags may be any UTF-8 text.
SENDER_KEY = "isthmus-sender-bin"
JOB_KEY = "isthmus-job-bin"
TAG_KEY = "isthmus-tag-bin"
SIZE_KEY = "isthmus-size"
MESSAGE_ID_KEY = "isthmus-message-id"

CHUNK_BYTES = 4 << 20  # the largest chunk a sender streams
MAX_NAME_BYTES = 1024  # job ids and tags; more is a confused or hostile peer
SPARE_STREAMS = 4  # calls beyond the peers' share: refusals of non-peers take a moment each
DEFAULT_STREAMS_PER_PEER = 4
DEFAULT_STALL_TIMEOUT = 10.0  # seconds
DEFAULT_MIN_TRANSFER_RATE = 256 << 10  # bytes/s; a quarter of what the sending side itself waits for
_MAX_MESSAGE_ID_CHARS = 64
_REMEMBERED_IDS = 4096  # enough to recognise a retried delivery; old ids are forgotten

#: How each refusal of the mailbox reaches the sender. A job that is not open (yet) is "failed
#: precondition", which the sender retries for a while: the receiver may open it a moment later.
STATUS_OF_RULE = {
    "job": grpc.StatusCode.FAILED_PRECONDITION,
    "tag": grpc.StatusCode.PERMISSION_DENIED,
    "size": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "quota": grpc.StatusCode.RESOURCE_EXHAUSTED,
}

log = logging.getLogger(__name__)
_END = object()  # the sender finished or went away


@dataclass(frozen=True)
class _Header:
    sender: str
    job: str
    tag: str
    size: int
    message_id: str


class Inbox:
    """Authenticates deliveries from known peers and files them in the node's mailbox."""

    def __init__(
        self,
        party: str,
        peers: Iterable[str],
        mailbox: Mailbox,
        audit: AuditLog | None,
        *,
        streams_per_peer: int = DEFAULT_STREAMS_PER_PEER,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
        min_transfer_rate: float = DEFAULT_MIN_TRANSFER_RATE,
        pinned_tls_keys: Mapping[str, str] | None = None,
    ):
        self.party = party
        #: member -> the digest of the TLS key its certificate must carry (the federation file's pins)
        self.pinned_tls_keys = dict(pinned_tls_keys or {})
        self.peers = frozenset(peers)
        self.mailbox = mailbox
        self.audit = audit
        self.streams_per_peer = streams_per_peer
        self.stall_timeout = stall_timeout
        self.min_transfer_rate = min_transfer_rate
        self._delivered: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._streams: Counter[str] = Counter()
        self._lock = threading.Lock()
        # Readers of the request streams (see _receive); twice the calls, as a cut call's reader may
        # take a moment to see its call end.
        self._readers = ThreadPoolExecutor(2 * self.max_streams, thread_name_prefix=f"isthmus-{party}-read")

    @property
    def max_streams(self) -> int:
        """Concurrent calls the server should allow (and workers it should have)."""
        return self.streams_per_peer * len(self.peers) + SPARE_STREAMS

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler to register on a gRPC server (raw bytes in and out, no codegen)."""
        return grpc.method_handlers_generic_handler(SERVICE, {
            DELIVER: grpc.stream_unary_rpc_method_handler(self.deliver),
            DELIVER_SMALL: grpc.stream_unary_rpc_method_handler(self.deliver),  # see DELIVER_SMALL
            PING: grpc.stream_unary_rpc_method_handler(_pong)})  # see _pong

    def deliver(self, chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        """Receive one message; the empty reply is the acknowledgement that it is in the mailbox."""
        header = self._read_header(context)
        try:
            return self._deliver(chunks, header, context)
        except Exception as exc:
            if context.code() is not None:  # a refusal of ours, with its reason already set
                raise
            self._failed_here(header, context, exc)  # raises, as gRPC's abort does

    def _deliver(self, chunks: Iterator[bytes], header: _Header, context: grpc.ServicerContext) -> bytes:
        if self._seen(header, remember=False):
            return b""  # a retry of a delivery whose acknowledgement was lost
        with self._stream_of(header, context):
            try:
                reservation = self.mailbox.reserve(header.job, header.sender, header.tag, header.size)
            except Refused as refused:
                self._refuse(header, context, STATUS_OF_RULE[refused.rule], str(refused), note=False)
            with reservation:
                payload = self._receive(chunks, header, context)
                if self._seen(header, remember=True):
                    return b""
                if self.audit:
                    self.audit.record("recv", header.job, header.sender, header.tag, payload)
                reservation.fill(payload)
        return b""

    def _read_header(self, context: grpc.ServicerContext) -> _Header:
        metadata = dict(context.invocation_metadata())
        sender = _text(metadata.get(SENDER_KEY), "sender", context)
        auth = context.auth_context()
        certified = auth.get("x509_subject_alternative_name", [])
        if certified != [sender.encode()]:
            names = [name.decode(errors="replace") for name in certified]
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"sender claims to be {sender!r} but its certificate names {names}")
        pinned = self.pinned_tls_keys.get(sender)
        if pinned is not None and _tls_key_digest(auth.get("x509_pem_cert", [b""])[0]) != pinned:
            reason = (f"{sender!r} presented a certificate whose TLS key {self.party!r}'s federation.json does not "
                      "pin for it (a certificate issued outside the federation file, or a key replaced since): each "
                      "side needs the federation's current federation.json")
            # Logged, not noted in the mailbox: whoever holds such a certificate must not fail the member's receives
            log.warning("refused a delivery: %s", reason)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
        if sender not in self.peers:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{sender!r} is not a peer of party {self.party!r}")
        size = metadata.get(SIZE_KEY)
        message_id = metadata.get(MESSAGE_ID_KEY)
        if not (isinstance(size, str) and size.isascii() and size.isdigit() and len(size) <= 20):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad declared size {size!r:.40}")
        if not (isinstance(message_id, str) and 0 < len(message_id) <= _MAX_MESSAGE_ID_CHARS):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "missing or oversized message id")
        job = _text(metadata.get(JOB_KEY), "job", context)
        tag = _text(metadata.get(TAG_KEY), "tag", context)
        return _Header(sender, job, tag, int(size), message_id)

    @contextmanager
    def _stream_of(self, header: _Header, context: grpc.ServicerContext) -> Iterator[None]:
        """Count a delivery in progress against its sender's share of the server."""
        with self._lock:
            busy = self._streams[header.sender] >= self.streams_per_peer
            if not busy:
                self._streams[header.sender] += 1
        if busy:
            context.abort(grpc.StatusCode.UNAVAILABLE,
                          f"party {self.party!r} is busy with {self.streams_per_peer} deliveries from {header.sender!r}; retry")
        try:
            yield
        finally:
            with self._lock:
                self._streams[header.sender] -= 1
                if not self._streams[header.sender]:
                    del self._streams[header.sender]

    def _receive(self, chunks: Iterator[bytes], header: _Header, context: grpc.ServicerContext) -> bytes:
        """Join the chunks, never holding more than the declared size, and cut a sender that stalls.

        gRPC's request iterator cannot time out, so a reader thread iterates it and this one waits
        with a deadline; once the call is aborted, the iterator ends and the reader is free again.
        """
        arrivals: queue.SimpleQueue = queue.SimpleQueue()
        self._readers.submit(_read, chunks, arrivals)
        started, parts, received = time.monotonic(), [], 0
        while True:
            due = received + min(CHUNK_BYTES, header.size - received)
            wait = started + self.stall_timeout + due / self.min_transfer_rate - time.monotonic()
            try:
                chunk = arrivals.get(timeout=max(wait, 0.0))
            except queue.Empty:
                self._refuse(header, context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"delivery under tag {header.tag!r} in job {header.job!r} cut after {received} of {header.size} "
                             f"bytes in {time.monotonic() - started:.1f} s: a sender must start within {self.stall_timeout:g} s "
                             f"and keep up {self.min_transfer_rate:g} bytes/s")
            if chunk is _END:
                break
            received += len(chunk)
            if received > header.size:
                self._refuse(header, context, grpc.StatusCode.INVALID_ARGUMENT,
                             f"more than the declared {header.size} bytes under tag {header.tag!r} in job {header.job!r}")
            parts.append(chunk)
        if received != header.size:  # the sender went away: it sees its own error and may retry
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{received} bytes arrived of the declared {header.size}")
        return b"".join(parts)

    def _refuse(self, header: _Header, context: grpc.ServicerContext, code: grpc.StatusCode, reason: str, *,
                note: bool = True) -> None:
        log.warning("refused from %r (job %r, tag %r): %s", header.sender, header.job, header.tag, reason)
        if note:  # the mailbox notes its own refusals
            self.mailbox.refuse(header.job, header.sender, reason)
        context.abort(code, reason)

    def _failed_here(self, header: _Header, context: grpc.ServicerContext, exc: Exception) -> None:
        """This party could not take a message (its disk is full, so the audit log cannot record it): its own
        failure, not the sender's. Its receives in that job fail now, naming the cause, instead of waiting for
        a message that will not come; the sender hears only that the message was not taken and the kind of
        error. gRPC would have sent it the error's own text, which may quote this party's paths or data."""
        log.error("could not take a message from %r (job %r, tag %r): %s", header.sender, header.job, header.tag, exc,
                  exc_info=None if isinstance(exc, IsthmusError) else exc)  # a bug's traceback, not a full disk's
        self.mailbox.fail(header.job, f"this party could not take a message from {header.sender!r} under tag "
                                      f"{header.tag!r}: {exc}")
        context.abort(grpc.StatusCode.INTERNAL, f"party {self.party!r} could not take the message: it failed on its "
                                                f"side ({type(exc).__name__}; its own log says why)")

    def _seen(self, header: _Header, *, remember: bool) -> bool:
        """Whether this message id was delivered before; with ``remember``, records it if not."""
        key = (header.sender, header.message_id)
        with self._lock:
            if key in self._delivered:
                return True
            if remember:
                self._delivered[key] = None
                if len(self._delivered) > _REMEMBERED_IDS:
                    self._delivered.popitem(last=False)
            return False


def _read(chunks: Iterator[bytes], arrivals: queue.SimpleQueue) -> None:
    try:
        for chunk in chunks:
            arrivals.put(chunk)
    except grpc.RpcError:
        pass  # the call ended early: cut by us, or the sender went away
    finally:
        arrivals.put(_END)


def _text(value: object, what: str, context: grpc.ServicerContext) -> str:
    if not (isinstance(value, bytes) and 0 < len(value) <= MAX_NAME_BYTES):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"missing or oversized {what}")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{what} is not UTF-8")


def _pong(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    """The answer to :data:`PING`, given before reading any request: a unary handler would first wait for the
    request's bytes, and a member trickling them would hold a worker (as :data:`DELIVER_SMALL` explains).
    The mutual-TLS handshake before it already said that the caller belongs to the federation."""
    return b""


@lru_cache(maxsize=64)
def _tls_key_digest(pem: bytes) -> str:
    """The pinned form of the TLS key in a peer's certificate (as gRPC verified it); each peer's is parsed once."""
    try:
        return tls_key_digest(x509.load_pem_x509_certificate(pem).public_key())
    except ValueError:
        return ""
