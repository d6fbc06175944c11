"""Egress and ingress audit: every message a party sends or receives, as one JSON line naming the party.

The log holds sizes and hashes, never payloads, so it can be shown to an auditor. Each row names the
party that wrote it, so rows copied out of their folder still say whose they are. For tests that
must prove what did *not* leave a party, ``keep_payloads`` also stores each sent payload beside the
log; production runs leave it off.

A message that cannot be recorded is neither sent nor taken (:class:`AuditError`): the log is the party's
account of every byte it exchanged, and a full disk must not leave it short of one.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

from isthmus.errors import IsthmusError
from isthmus.files import append_line, write_whole


class AuditError(IsthmusError):
    """The audit log cannot be written (a full disk): the message it was to record is not sent, or not taken."""


class AuditLog:
    def __init__(self, path: str | Path, party: str, *, keep_payloads: bool = False):
        self.path = Path(path)
        self.party = party
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.payload_dir = self.path.parent / "audit-payloads" if keep_payloads else None
        if self.payload_dir:
            self.payload_dir.mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._seq = 0

    def record(self, direction: str, job: str, peer: str, tag: str, payload: bytes) -> None:
        digest = hashlib.sha256(payload).hexdigest()
        entry = {
            "time": time.time(),
            "party": self.party,
            "direction": direction,
            "job": job,
            "peer": peer,
            "tag": tag,
            "bytes": len(payload),
            "sha256": digest,
        }
        with self._lock:
            kept = self.payload_dir is not None and direction == "send"
            copy = self.payload_dir / f"{self._seq + 1:08d}-{digest[:16]}.bin" if kept else None
            try:
                if copy:
                    write_whole(copy, payload, sync=False)  # as unsynced as the log line it goes with
                append_line(self.path, (json.dumps(entry) + "\n").encode())
            except OSError as exc:
                if copy:
                    copy.unlink(missing_ok=True)  # the copy of a message that is not sent
                raise AuditError(f"party {self.party!r} cannot write its audit log: {exc.strerror or exc}: "
                                 f"{exc.filename}; a message it cannot record is neither sent nor taken") from None
            self._seq += 1

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]

    def sent_payloads(self) -> list[bytes]:
        """Payloads kept by ``keep_payloads``, in send order."""
        if not self.payload_dir:
            return []
        return [p.read_bytes() for p in sorted(self.payload_dir.glob("*.bin"))]
