"""What the steps of one party's run share: the job, the channel, the run directory, the data."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isthmus.jobs.events import EventLog
from isthmus.jobs.spec import JobSpec
from isthmus.transport.channel import Channel


@dataclass
class PartyContext:
    spec: JobSpec
    party: str
    channel: Channel
    run_dir: Path
    events: EventLog
    table: Any = None  # isthmus.data.table.PartyTable once loaded, aligned after `intersect`
    state: dict[str, Any] = field(default_factory=dict)  # what a step leaves for later steps
    certs_dir: Path | None = None  # the party's certificate folder: its signing key, the pinned keys, its ledger

    @property
    def role(self) -> str:
        return self.spec.role_of(self.party)

    def write_json(self, name: str, data: Any) -> Path:
        """Write atomically, so a crash never leaves a half-written model or report that looks complete."""
        path = self.run_dir / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=_jsonable), encoding="utf-8")
        os.replace(tmp, path)
        return path


def _jsonable(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
