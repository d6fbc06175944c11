"""In-process transport for tests and simulation: every party in one process, same codec, audit and limits.

Messages still go through the wire codec and each party's :class:`Mailbox`, so protocol tests
exercise exactly the bytes a real deployment would send and meet the same refusals. A job is open
at every party as soon as any party takes a channel for it (everyone lives in this process, so no
peer can be early); ``hub.mailboxes[party].open_job(...)`` narrows what a party accepts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from isthmus.errors import PeerRefusedError
from isthmus.transport.audit import AuditLog
from isthmus.transport.channel import Channel
from isthmus.transport.mailbox import Mailbox, Refused


class LocalHub:
    """A set of parties that reach each other through in-memory mailboxes."""

    def __init__(self, parties: Iterable[str], *, audit_dir: str | Path | None = None, keep_payloads: bool = False):
        self.parties = list(parties)
        self.mailboxes = {party: Mailbox() for party in self.parties}
        self.audits = {
            party: AuditLog(Path(audit_dir) / party / "audit.jsonl", party, keep_payloads=keep_payloads) if audit_dir else None
            for party in self.parties
        }

    def channel(self, party: str, job: str = "job") -> LocalChannel:
        for mailbox in self.mailboxes.values():
            mailbox.ensure_job(job)
        return LocalChannel(self, party, job)


class LocalChannel(Channel):
    def __init__(self, hub: LocalHub, party: str, job: str):
        super().__init__(party, job, hub.parties)
        self.hub = hub
        self.audit = hub.audits[party]

    def _send_raw(self, to: str, tag: str, payload: bytes) -> None:
        if self.audit:
            self.audit.record("send", self.job, to, tag, payload)
        try:
            self.hub.mailboxes[to].put(self.job, self.party, tag, payload)
        except Refused as refused:
            raise PeerRefusedError(f"peer refused the message: {refused}", peer=to, address="in-process", tag=tag) from None

    def _next_payload(self, senders: list[str], tag: str, wait: float) -> tuple[str, bytes] | None:
        got = self.hub.mailboxes[self.party].get_any(self.job, senders, tag, wait)
        if got is not None and self.audit:
            self.audit.record("recv", self.job, got[0], tag, got[1])
        return got

    def _mailbox(self) -> Mailbox:
        return self.hub.mailboxes[self.party]

    def keep_open(self) -> None:
        self.hub.mailboxes[self.party].keep_open(self.job)

    def close_scope(self, scope: str) -> None:
        self.hub.mailboxes[self.party].close_scope(self.job, scope)

    def _address_of(self, senders: list[str]) -> str:
        return "in-process"
