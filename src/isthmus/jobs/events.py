"""What a party reports while it runs: JSON lines in its run directory, read by `isthmus launch`'s display."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path


class EventLog:
    def __init__(self, run_dir: Path, party: str):
        self.path = run_dir / "events.jsonl"
        self.party = party
        self.logger = logging.getLogger(f"isthmus.{party}")

    def emit(self, **event) -> None:
        event = {"time": time.time(), "party": self.party, **event}
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(event, default=float) + "\n")
        self.logger.info(" ".join(f"{k}={v}" for k, v in event.items() if k not in ("time", "party")))


def read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            break
    return events
