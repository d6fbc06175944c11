"""The aggregator: holds every institution's published records and adds up matches, blind to values.

It is a federation role that is not a lender. It sees, per institution, pseudonyms and sealed
values it cannot open; per query, which pseudonyms match (hence, for an unknown person, which
institutions hold an active loan) and nothing else: the asker's pads arrive encrypted under the
asker's Paillier key, and the sums leave encrypted under it. See docs/security.md for the threat
model (it must not collude with an institution).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from isthmus.crypto.paillier import CipherArray
from isthmus.errors import IsthmusError, ProtocolError
from isthmus.query import protocol
from isthmus.query.config import QueryConfig
from isthmus.query.querylog import QueryLog, QueryRecord
from isthmus.query.records import RECORD_BYTES, TAG_BYTES
from isthmus.query.sums import add_up
from isthmus.transport.channel import Channel

_log = logging.getLogger(__name__)
_RECORD = np.dtype([("tag", f"S{TAG_BYTES}"), ("sealed", f"V{RECORD_BYTES - TAG_BYTES}")])


@dataclass(frozen=True)
class PublishedTable:
    """One institution's records sorted by tag, for vectorised lookups (bytes order = numpy 'S' order)."""

    tags: np.ndarray  # S16, sorted, unique
    sealed: np.ndarray  # V16, aligned with tags
    version: int
    received: float

    @classmethod
    def from_records(cls, records: bytes, version: int) -> PublishedTable:
        """Parse a snapshot; ``ValueError`` if it is not whole 32-byte records with distinct tags."""
        if len(records) % RECORD_BYTES:
            raise ValueError(f"records must come in multiples of {RECORD_BYTES} bytes")
        rows = np.frombuffer(records, dtype=_RECORD)
        order = np.argsort(rows["tag"], kind="stable")
        tags, sealed = rows["tag"][order], rows["sealed"][order]
        if tags.size > 1 and np.any(tags[1:] == tags[:-1]):
            raise ValueError("the snapshot repeats a pseudonym")
        return cls(tags, sealed, version, time.time())

    def find(self, tags: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Which of ``tags`` (S16) are published here, and the sealed values of those, in order."""
        if not self.tags.size:
            return np.zeros(tags.shape, dtype=bool), []
        positions = np.minimum(np.searchsorted(self.tags, tags), self.tags.size - 1)
        hit = self.tags[positions] == tags
        return hit, [int.from_bytes(v.tobytes(), "big") for v in self.sealed[positions[hit]]]


class Aggregator:
    def __init__(self, config: QueryConfig, log: QueryLog):
        self.config = config
        self.party = config.aggregator
        self._log = log
        self._digest = config.policy.digest()
        self._limits = protocol.BatchLimits(config.policy, log.answered_since(time.time() - protocol.DAY_SECONDS))
        self._tables: dict[str, PublishedTable] = {}
        self._lock = threading.Lock()

    def tables(self) -> dict[str, PublishedTable]:
        with self._lock:
            return dict(self._tables)

    def store(self, sender: str, message: Any) -> dict[str, Any]:
        """Service handler: an institution's full snapshot replaces its previous one atomically."""
        request = protocol.fields(message, {"rid": str, "policy": str, "version": int, "records": bytes}, peer=sender, tag=protocol.PUBLISH)
        protocol.check_policy(request, self._digest)
        try:
            table = PublishedTable.from_records(request["records"], request["version"])
        except ValueError as exc:
            raise ProtocolError(str(exc), peer=sender, tag=protocol.PUBLISH) from None
        with self._lock:
            current = self._tables.get(sender)
            if current is None or current.version <= table.version:
                self._tables[sender] = table
        _log.info("holding %d records of %s (version %d)", table.tags.size, sender, table.version)
        return {"rows": int(table.tags.size)}

    def lookup(self, sender: str, message: Any) -> dict[str, Any]:
        """Service handler: encrypted sums, per asked id, of the sealed values its pseudonyms match."""
        tag = protocol.LOOKUP
        request = protocol.fields(
            message, {"rid": str, "policy": str, "width": int, "tags": bytes, "unpads": CipherArray}, peer=sender, tag=tag
        )
        protocol.check_policy(request, self._digest)
        width, unpads, policy = request["width"], request["unpads"], self.config.policy
        if not 1 <= width < len(self.config.institutions) or len(request["tags"]) % (TAG_BYTES * width):
            raise ProtocolError(f"width {width} does not fit {len(request['tags'])} bytes of tags", peer=sender, tag=tag)
        ids = len(request["tags"]) // (TAG_BYTES * width)
        if unpads.shape != (ids, width) or unpads.exponent != 0:
            raise ProtocolError(f"expected encrypted pads of shape {(ids, width)} at exponent 0", peer=sender, tag=tag)
        if unpads.public_key.bits < policy.paillier_bits:
            raise protocol.Refusal(f"the consortium requires Paillier keys of at least {policy.paillier_bits} bits")
        tables = {name: table for name, table in self.tables().items() if name != sender}
        if not policy.partial_answers:
            _every_other_institution(self.config.institutions, sender, width, tables)
        self._limits.check(sender, ids)
        asked = np.frombuffer(request["tags"], dtype=f"S{TAG_BYTES}").reshape(ids, width)
        matched = np.zeros(asked.shape, dtype=bool)
        sealed = np.zeros(asked.shape, dtype=object)
        for table in tables.values():
            hit, values = table.find(asked)
            matched |= hit
            sealed[hit] = values
        reply: dict[str, Any] = {"sums": add_up(unpads, matched, sealed), "institutions": sorted(tables)}
        if policy.mode == "per_institution":
            reply["matched"] = matched
        self._log.record(QueryRecord(self.party, "aggregator", sender, request["rid"], ids, "answered"))
        return reply

    def greet(self, channel: Channel) -> None:
        """Ask every institution to publish again (after a restart the aggregator holds nothing)."""

        def hello(institution: str) -> None:
            try:
                protocol.call(channel, institution, protocol.HELLO, protocol.new_request(self._digest), self.config.answer_timeout)
            except IsthmusError as exc:  # it publishes by itself when it starts
                _log.info("no hello answer from %s: %s", institution, exc)

        with ThreadPoolExecutor(len(self.config.institutions), thread_name_prefix="hello") as pool:
            list(pool.map(hello, self.config.institutions))


def _every_other_institution(institutions: list[str], asker: str, width: int, tables: dict) -> None:
    """Refuse a query that leaves an institution out (policy.partial_answers: false): the asker's pseudonyms
    of fewer institutions than the others, or an institution whose records are not here."""
    others = len(institutions) - 1
    missing = sorted(set(institutions) - {asker} - set(tables))
    if width < others or missing:
        held = f"; none published here by {', '.join(missing)}" if missing else ""
        raise protocol.Refusal(f"the consortium answers only queries over every other institution "
                               f"(policy.partial_answers: false): this one holds {width} of {others}{held}")
