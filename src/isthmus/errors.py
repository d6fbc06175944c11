"""Errors that name who and where: a party, a job, a step or a tag, so an operator can act on them."""

from __future__ import annotations


class IsthmusError(Exception):
    """Base class of every error isthmus raises on purpose."""


class ConfigError(IsthmusError):
    """A job file, key size or option that cannot work."""


class DataError(IsthmusError):
    """A party's table is missing a column, holds non-numeric or missing values, or has no overlap."""


class ProtocolError(IsthmusError):
    """A peer sent bytes that do not decode to what the protocol expects."""

    def __init__(self, message: str, *, peer: str | None = None, tag: str | None = None):
        where = ", ".join(f"{k}={v!r}" for k, v in (("peer", peer), ("tag", tag)) if v is not None)
        super().__init__(f"{message} ({where})" if where else message)
        self.peer = peer
        self.tag = tag


class PeerError(IsthmusError):
    """A peer could not be reached or did not answer in time."""

    def __init__(self, message: str, *, peer: str, address: str | None = None, tag: str | None = None):
        parts = [f"peer={peer!r}"]
        if address:
            parts.append(f"address={address}")
        if tag:
            parts.append(f"tag={tag!r}")
        super().__init__(f"{message} ({', '.join(parts)})")
        self.peer = peer
        self.address = address
        self.tag = tag


class PeerTimeoutError(PeerError):
    """Nothing arrived from a peer under a tag within the timeout."""


class PeerGoneError(PeerTimeoutError):
    """A peer this party waited for answered no ping for a whole connect timeout: nothing more will come.

    A timeout, so that whoever already copes with a silent peer (an aggregator's round) copes with this one."""


class PeerUnreachableError(PeerError):
    """A peer refused or dropped every connection attempt until the deadline."""


class PeerRefusedError(PeerError):
    """A peer answered but refused the message: too large, unknown sender or identity mismatch."""


class PeerAbortedError(PeerError):
    """A peer gave up on the job and told the others, so they stop instead of waiting; ``reason`` is its notice."""

    def __init__(self, reason: str, *, peer: str, tag: str | None = None):
        super().__init__(f"peer aborted the job: {reason}", peer=peer, tag=tag)
        self.reason = reason


class ReceiveError(IsthmusError):
    """This party failed to take a message a peer delivered (its disk is full: the audit log cannot record it)."""


class KeyMismatchError(IsthmusError):
    """Ciphertexts under different public keys were combined."""


class EncodingOverflowError(IsthmusError, OverflowError):
    """A value does not fit the fixed-point or packing range."""


def printable(text: str) -> str:
    """A peer's free text (an abort notice, a refusal's reason) made safe to print, log and store: control and
    format characters become escapes (``\\x1b``, ``\\u202e``). Shown as they came, a peer could send terminal
    escapes (clear the operator's screen, retitle it, rewrite the line that says a job failed), forge lines
    of this party's log with newlines, or reverse text with bidi overrides."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def for_peer(exc: BaseException) -> str:
    """What a peer may be told of an error here: its class, and its text only if it is about the peer.

    A :class:`ProtocolError` describes what the peer itself sent, so its text may go back to it; a
    :class:`PeerError` is named with the member it concerns (not its address or gRPC's words). Any
    other error's text may quote this party's data (a duplicate id, a cell's value, column names,
    file paths): only its class leaves the party, the operator reads the rest in the local log.
    """
    if isinstance(exc, ProtocolError):
        return f"ProtocolError: {exc}"[:2000]
    if isinstance(exc, PeerError):  # which member failed to answer: every member knows the roster
        return f"{type(exc).__name__} from {exc.peer!r} (details in the party's own log)"
    return f"{type(exc).__name__} (details in the party's own log)"
