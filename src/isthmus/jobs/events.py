"""What a party reports while it runs: JSON lines in its run directory, read by `isthmus launch`'s display."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from isthmus.files import append_line


class EventLog:
    def __init__(self, run_dir: Path, party: str):
        self.path = run_dir / "events.jsonl"
        self.party = party
        self.logger = logging.getLogger(f"isthmus.{party}")

    def emit(self, **event) -> None:
        event = {"time": time.time(), "party": self.party, **event}
        append_line(self.path, (json.dumps(event, default=float) + "\n").encode())
        self.logger.info(" ".join(f"{k}={v}" for k, v in event.items() if k not in ("time", "party")),
                         extra={"event": event})


def read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return _parsed(path.read_bytes())


def read_recent_events(path: Path, max_bytes: int) -> list[dict]:
    """The events in the last ``max_bytes`` of a log (all of a shorter one): what a page can afford of a log
    that grows as long as the node runs (a million predictions took 5 s and 1.2 GB to read whole)."""
    try:
        with path.open("rb") as log:
            start = max(0, log.seek(0, os.SEEK_END) - max_bytes)
            log.seek(max(0, start - 1))  # and the byte before: a line may begin right at the start
            data = log.read(max_bytes + 1)
    except FileNotFoundError:
        return []
    return _parsed(data[data.find(b"\n") + 1:] if start else data)  # from the first whole line


def _parsed(data: bytes) -> list[dict]:
    events = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now, or one a crash cut short: the lines
            continue  # after it are whole (append_line), and an auditor must see them
    return events
