"""Every party's log of queries: who asked, when, how many ids; never an id.

One JSON line per event in ``queries.jsonl``. ``on_record`` is the hook for the contribution ledger
(issue 6): once it exists, the service passes a callback that appends each record there for audit
and billing; a failing callback is logged and never breaks the query.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from isthmus.files import append_line, json_lines_since

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueryRecord:
    party: str  # who writes the record
    role: str  # "asker", "responder" or "aggregator"
    asker: str
    request: str  # request id: joins the records of one query across parties
    ids: int
    outcome: str  # "answered", "refused: ..." or, for the asker, "complete"/"partial: ..."
    time: float = field(default_factory=time.time)


class QueryLog:
    def __init__(self, path: str | Path, *, on_record: Callable[[QueryRecord], None] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.on_record = on_record

    def record(self, entry: QueryRecord) -> None:
        append_line(self.path, (json.dumps(asdict(entry)) + "\n").encode())
        if self.on_record:
            try:
                self.on_record(entry)
            except Exception:  # the ledger is bookkeeping: its failure must not fail a query
                _log.exception("query ledger hook failed for request %s", entry.request)

    def records(self) -> list[QueryRecord]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [QueryRecord(**json.loads(line)) for line in lines if line]

    def answered_since(self, since: float) -> list[QueryRecord]:
        """The batches this party answered (as responder or aggregator) from the time ``since`` on, oldest first:
        what its daily limits counted before a restart."""
        answered = []
        for fields in json_lines_since(self.path, since):
            try:
                entry = QueryRecord(**fields)
            except TypeError:  # a line of another release
                continue
            if entry.outcome == "answered" and entry.role != "asker" and type(entry.ids) is int:
                answered.append(entry)
        return answered
