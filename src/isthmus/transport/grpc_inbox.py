"""The receiving half of a gRPC node: who may deliver, how much, and where it lands.

One client-streaming RPC carries one message as raw chunks; the header travels as call metadata.
The sender's identity comes from its verified client certificate, never from what it claims; the
size it declares is checked before a byte is buffered, and the running total is held to it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import grpc

from isthmus.transport.audit import AuditLog
from isthmus.transport.mailbox import Mailbox

SERVICE = "isthmus.transport.Transport"
DELIVER = "Deliver"

# Call metadata; "-bin" values are raw bytes, so job ids and tags may be any UTF-8 text.
SENDER_KEY = "isthmus-sender-bin"
JOB_KEY = "isthmus-job-bin"
TAG_KEY = "isthmus-tag-bin"
SIZE_KEY = "isthmus-size"
MESSAGE_ID_KEY = "isthmus-message-id"

MAX_NAME_BYTES = 1024  # job ids and tags; more is a confused or hostile peer
_MAX_MESSAGE_ID_CHARS = 64
_REMEMBERED_IDS = 4096  # enough to recognise a retried delivery; old ids are forgotten

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """Stands in the mailbox for a message refused on arrival, so the waiting ``recv`` fails at once."""

    reason: str


@dataclass(frozen=True)
class _Header:
    sender: str
    job: str
    tag: str
    size: int
    message_id: str


class Inbox:
    """Authenticates deliveries from known peers and files them in the node's mailbox."""

    def __init__(self, party: str, peers: Iterable[str], mailbox: Mailbox, audit: AuditLog | None, max_message_bytes: int):
        self.party = party
        self.peers = frozenset(peers)
        self.mailbox = mailbox
        self.audit = audit
        self.max_message_bytes = max_message_bytes
        self._delivered: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler to register on a gRPC server (raw bytes in and out, no codegen)."""
        method = grpc.stream_unary_rpc_method_handler(self.deliver)
        return grpc.method_handlers_generic_handler(SERVICE, {DELIVER: method})

    def deliver(self, chunks: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        """Receive one message; the empty reply is the acknowledgement that it is in the mailbox."""
        header = self._read_header(context)
        if header.size > self.max_message_bytes:
            reason = f"message of {header.size} bytes exceeds the limit of {self.max_message_bytes} bytes of party {self.party!r}"
            log.warning("refused from %r (job %r, tag %r): %s", header.sender, header.job, header.tag, reason)
            self.mailbox.put(header.job, header.sender, header.tag, Refusal(reason))  # queued beside payloads
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, reason)
        payload = _reassemble(chunks, header.size, context)
        if self._seen(header):
            return b""  # a retry of a delivery whose acknowledgement was lost
        if self.audit:
            self.audit.record("recv", header.job, header.sender, header.tag, payload)
        self.mailbox.put(header.job, header.sender, header.tag, payload)
        return b""

    def _read_header(self, context: grpc.ServicerContext) -> _Header:
        metadata = dict(context.invocation_metadata())
        sender = _text(metadata.get(SENDER_KEY), "sender", context)
        certified = context.auth_context().get("x509_subject_alternative_name", [])
        if certified != [sender.encode()]:
            names = [name.decode(errors="replace") for name in certified]
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"sender claims to be {sender!r} but its certificate names {names}")
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

    def _seen(self, header: _Header) -> bool:
        """Whether this message id was delivered before; remembers it if not."""
        key = (header.sender, header.message_id)
        with self._lock:
            if key in self._delivered:
                return True
            self._delivered[key] = None
            if len(self._delivered) > _REMEMBERED_IDS:
                self._delivered.popitem(last=False)
            return False


def _reassemble(chunks: Iterator[bytes], size: int, context: grpc.ServicerContext) -> bytes:
    """Join the chunks once, never holding more than the declared (and already checked) size."""
    parts, received = [], 0
    for chunk in chunks:
        received += len(chunk)
        if received > size:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"more than the declared {size} bytes")
        parts.append(chunk)
    if received != size:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{received} bytes arrived of the declared {size}")
    return b"".join(parts)


def _text(value: object, what: str, context: grpc.ServicerContext) -> str:
    if not (isinstance(value, bytes) and 0 < len(value) <= MAX_NAME_BYTES):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"missing or oversized {what}")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{what} is not UTF-8")
