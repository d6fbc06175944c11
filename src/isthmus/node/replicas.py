"""This node's ledger replica beside its peers': a record two members both signed must be in both replicas.

Each record names the parties present at its job; each of them signed it and appended it to its own
replica. So the records of this node's replica that name a peer are the records the peer's replica must
hold naming this node. A node asks each peer for the hashes of those records and compares: a record one
side never appended, deleted or edited (hashes are recomputed from the bodies) shows as a difference.
It is what ``isthmus ledger verify`` does over files gathered by hand, done by the nodes over their link.

The question tells a peer nothing; the answer tells the asker only the hashes of records it signed
itself, and whether the peer's node verifies its whole replica. That verdict is the peer's word: no
remote check can show what a peer's disk holds, only what its node answers.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from isthmus.errors import ConfigError
from isthmus.incentive.ledger import Entry, Ledger
from isthmus.incentive.verify import verify_ledgers
from isthmus.protocols.inspect import Inspect

ASK, HELD = "ledger-ask", "ledger-held"
_HASH_BYTES = 32
#: Records in common one answer may carry: 32 bytes each, under the node link's 2 MiB message bound.
MAX_IN_COMMON = 50_000
#: How long a check waits for the peers' answers; a live node answers in milliseconds.
ANSWER_WAIT_S = 5.0
#: Questions one peer gets answered per minute: an answer may be 1.6 MB, and a member asking in a loop
#: must not turn this node's uplink into its own.
ANSWERS_PER_MINUTE = 30
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Held:
    """A record as this replica holds it: its number here, its body's hash, its job and its present parties."""

    seq: int
    hash: str
    job: str
    parties: frozenset[str]


@dataclass(frozen=True)
class Replica:
    records: list[Held]
    verified: bool | None  # None: no ledger yet

    def naming(self, party: str) -> list[Held]:
        return [record for record in self.records if party in record.parties]


@dataclass
class _Question:
    peer: str
    answered: threading.Event = field(default_factory=threading.Event)
    answer: dict | None = None


class LedgerReplicas:
    """Asks the peers about their replicas, and answers their questions about this node's."""

    def __init__(self, me: str, members: list[str], path: Path, pinned: dict[str, Ed25519PublicKey],
                 send: Callable[[str, dict], object]):
        self.me, self.path, self.pinned, self.send = me, path, pinned, send
        self.wait = ANSWER_WAIT_S
        self.peers = sorted(set(members) - {me})
        self.handlers = {ASK: self._on_ask, HELD: self._on_held}
        self._lock = threading.Lock()
        self._questions: dict[str, _Question] = {}
        self._answered: dict[str, deque[float]] = {}  # peer -> when it was answered in the last minute
        #: peer -> the delivery of the last question asked of it. Delivery to a node that is down is retried
        #: for the node's timeout on the link's few send threads: a board viewed again and again must not
        #: take them all, so a peer is asked again only once its last question was delivered or given up.
        self._asking: dict[str, Future] = {}
        self._cached: tuple[tuple, Replica] | None = None

    def check(self) -> dict[str, dict]:
        """Each peer's replica compared with this one (see :func:`compare`), asking every peer at once."""
        mine = self.replica()
        with self._lock:
            stuck = {peer for peer, delivery in self._asking.items() if not delivery.done()}
            asked = {secrets.token_hex(8): _Question(peer) for peer in self.peers if peer not in stuck}
            self._questions.update(asked)
            for rid, question in asked.items():  # sends only queue the message: quick under the lock
                delivery = self.send(question.peer, {"kind": ASK, "job": rid})
                if isinstance(delivery, Future):
                    self._asking[question.peer] = delivery
        try:
            deadline = time.monotonic() + self.wait
            for question in asked.values():
                question.answered.wait(max(0.0, deadline - time.monotonic()))
        finally:
            with self._lock:
                for rid in asked:
                    self._questions.pop(rid, None)
        compared = {q.peer: compare(mine.naming(q.peer), q.answer, self.wait) for q in asked.values()}
        return {**compared, **{peer: _uncompared("not asked again: an earlier question is still being delivered to "
                                                 "it (its node is down or unreachable)") for peer in stuck}}

    def replica(self) -> Replica:
        """This node's replica, read again only when its file changed (each answer would re-verify it)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return Replica([], None)
        version = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if self._cached is not None and self._cached[0] == version:
                return self._cached[1]
        try:
            with Ledger(self.path, read_only=True) as ledger:
                records = [_held(entry) for entry in ledger.entries()]
        except ConfigError:
            return Replica([], False)
        replica = Replica([r for r in records if r is not None], verify_ledgers([self.path], self.pinned).ok)
        with self._lock:
            self._cached = (version, replica)
        return replica

    def _on_ask(self, sender: str, message: dict, check: Inspect) -> None:
        check.mapping(message, {"kind", "job"}, exact=True)
        now = time.monotonic()
        with self._lock:
            answered = self._answered.setdefault(sender, deque())
            while answered and answered[0] < now - 60:
                answered.popleft()
            if len(answered) >= ANSWERS_PER_MINUTE:
                _log.warning("not answering %s's question about the ledger: %d answered in the last minute", sender,
                             len(answered))
                return
            answered.append(now)
        replica = self.replica()
        shared = replica.naming(sender)
        hashes = b"" if len(shared) > MAX_IN_COMMON else b"".join(bytes.fromhex(r.hash) for r in shared)
        self.send(sender, {"kind": HELD, "job": message["job"], "hashes": hashes, "count": len(shared),
                           "verified": replica.verified})

    def _on_held(self, sender: str, message: dict, check: Inspect) -> None:
        check.mapping(message, {"kind", "job", "hashes", "count", "verified"}, exact=True)
        with self._lock:
            question = self._questions.get(message["job"])
        if question is None:  # too late: the check has ended
            _log.info("%s's answer about the ledger came after the check ended", sender)
            return
        if question.peer != sender or question.answered.is_set():
            check.fail("an answer about the ledger to a question this node asked another member, or answered twice")
        count = check.integer(message["count"], 0, 1 << 40, "count of records in common")
        hashes = check.raw(message["hashes"], max_length=MAX_IN_COMMON * _HASH_BYTES)
        if len(hashes) != (count * _HASH_BYTES if count <= MAX_IN_COMMON else 0):
            check.fail(f"{len(hashes)} bytes of hashes for {count} records")
        if message["verified"] is not None and type(message["verified"]) is not bool:
            check.fail("verified must be true, false or null")
        question.answer = {"hashes": {hashes[i:i + _HASH_BYTES].hex() for i in range(0, len(hashes), _HASH_BYTES)},
                           "count": count, "verified": message["verified"]}
        question.answered.set()


def _uncompared(detail: str, *, status: str = "no answer", verified_there: bool | None = None) -> dict:
    return {"status": status, "in_common": None, "missing_there": [], "missing_here": None,
            "verified_there": verified_there, "detail": detail}


def compare(mine: list[Held], answer: dict | None, wait: float = ANSWER_WAIT_S) -> dict:
    """One peer's replica beside this one, for the API, the CLI and the board: ``status`` is ``agrees``,
    ``differs``, ``no answer`` or ``not compared`` (too many records in common for one message)."""
    if answer is None:
        return _uncompared(f"nothing came back within {wait:g} s: its node is down, or too old to answer")
    if max(answer["count"], len(mine)) > MAX_IN_COMMON:
        return _uncompared(f"more than {MAX_IN_COMMON:,} records in common: compare exported replicas with "
                           "`isthmus ledger verify FILES`", status="not compared", verified_there=answer["verified"])
    theirs = answer["hashes"]
    missing_there = [{"seq": r.seq, "job": r.job, "hash": r.hash} for r in mine if r.hash not in theirs]
    missing_here = len(theirs - {r.hash for r in mine})
    problems = []
    if missing_there:
        listed = ", ".join(f"record {m['seq']} (job {m['job']})" for m in missing_there[:5])
        problems.append(f"lacks {len(missing_there)} of this replica's records naming it: {listed}"
                        + (", ..." if len(missing_there) > 5 else ""))
    if missing_here:
        problems.append(f"holds {missing_here} record(s) naming this node that this replica lacks")
    if answer["verified"] is False:
        problems.append("its node says its own replica fails verification")
    in_common = len(mine) - len(missing_there)
    detail = "; ".join(problems) or (f"holds the same {in_common} record(s) naming both nodes"
                                     + ("; its node verifies its whole replica" if answer["verified"] else ""))
    return {"status": "differs" if problems else "agrees", "in_common": in_common, "missing_there": missing_there,
            "missing_here": missing_here, "verified_there": answer["verified"], "detail": detail}


def _held(entry: Entry) -> Held | None:
    try:
        content = entry.record.content
    except ValueError:  # malformed: the replica's own verification reports it
        return None
    return Held(entry.seq, entry.record.hash, str(content["job"]), frozenset(content["parties"]))
