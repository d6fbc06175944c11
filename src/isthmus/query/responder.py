"""An institution's two duties toward askers: evaluate blinded ids, and keep its records published.

The responder never sees an asked id: it multiplies random-looking group elements by its OPRF key
and logs who asked for how many. Its records (one per customer with an active loan) go to the
aggregator as a full snapshot after every change; only new and changed customers cost OPRF work,
so a refresh of 1% of a table costs 1% of the setup.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from isthmus.crypto.oprf import ELEMENT_BYTES, OprfKey
from isthmus.errors import IsthmusError, ProtocolError
from isthmus.query import protocol
from isthmus.query.config import QueryConfig
from isthmus.query.loans import TableChange, changes
from isthmus.query.querylog import QueryLog, QueryRecord
from isthmus.query.records import seal
from isthmus.transport.channel import Channel

_log = logging.getLogger(__name__)
_RETRY_SECONDS = 2.0


class Responder:
    def __init__(self, party: str, config: QueryConfig, key: OprfKey, log: QueryLog, *, workers: int | None = None):
        config.check_institution(party)
        self.party = party
        self.config = config
        self._key = key
        self._log = log
        self._workers = workers
        self._digest = config.policy.digest()
        self._limits = protocol.BatchLimits(config.policy, log.answered_since(time.time() - protocol.DAY_SECONDS))
        self._lock = threading.Lock()
        self._exposures: dict[str, int] = {}
        self._records: dict[str, bytes] = {}
        self.version = 0

    def publish(self, exposures: dict[str, int]) -> TableChange:
        """Adopt a new version of the table (customer -> active exposure in minor units)."""
        change = changes(self._exposures, exposures)
        customers = list(change.upserted)
        outputs = self._key.evaluate(self.config.domain, [c.encode() for c in customers], workers=self._workers)
        sealed = seal(outputs, [change.upserted[c] for c in customers])
        records = {c: r for c, r in self._records.items() if c in exposures}
        records.update(zip(customers, sealed))
        with self._lock:
            self._exposures, self._records = exposures, records
            self.version += 1
        return change

    def snapshot(self) -> tuple[int, bytes]:
        """(version, concatenated 32-byte records) as the aggregator should hold them."""
        with self._lock:
            return self.version, b"".join(self._records.values())

    def evaluate(self, sender: str, message: Any) -> dict[str, Any]:
        """Service handler: the asker's blinded ids, multiplied by this institution's key."""
        request = protocol.fields(message, {"rid": str, "policy": str, "elements": bytes}, peer=sender, tag=protocol.EVALUATE)
        protocol.check_policy(request, self._digest)
        count = len(request["elements"]) // ELEMENT_BYTES
        self._limits.check(sender, count)
        try:
            evaluated = self._key.evaluate_blinded(request["elements"], workers=self._workers)
        except ValueError as exc:
            raise ProtocolError(str(exc), peer=sender, tag=protocol.EVALUATE) from None
        self._log.record(QueryRecord(self.party, "responder", sender, request["rid"], count, "answered"))
        return {"elements": evaluated}


class Publisher:
    """Keeps the aggregator's copy of one responder's records current, retrying until it acknowledges."""

    def __init__(self, channel: Channel, responder: Responder, *, timeout: float):
        self.channel = channel
        self.responder = responder
        self.timeout = timeout
        self.published = 0  # version the aggregator acknowledged
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"publish-{responder.party}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wanted.set()
        self._thread.join()

    def wake(self, *_: Any) -> dict[str, Any]:
        """Publish the current snapshot soon (also the handler of the aggregator's hello)."""
        self._wanted.set()
        return {}

    def wait_published(self, version: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.published >= version, timeout=timeout)

    def _run(self) -> None:
        aggregator = self.responder.config.aggregator
        while not self._stop.is_set():
            self._wanted.wait()
            if self._stop.is_set():
                return
            self._wanted.clear()
            version, records = self.responder.snapshot()
            if version == 0:
                continue
            request = protocol.new_request(self.responder.config.policy.digest(), version=version, records=records)
            try:
                protocol.call(self.channel, aggregator, protocol.PUBLISH, request, self.timeout)
            except IsthmusError as exc:
                _log.warning("publishing version %d to %s failed, retrying: %s", version, aggregator, exc)
                self._wanted.set()
                self._stop.wait(_RETRY_SECONDS)
                continue
            with self._changed:
                self.published = max(self.published, version)
                self._changed.notify_all()
