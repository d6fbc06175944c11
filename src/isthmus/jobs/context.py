"""What the steps of one party's run share: the job, the channel, the run directory, the data."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isthmus.algorithms.base import Algorithm, Part, jsonable
from isthmus.data.table import PartyTable
from isthmus.files import write_whole
from isthmus.jobs.events import EventLog
from isthmus.jobs.spec import JobSpec
from isthmus.options import Options
from isthmus.transport.channel import Channel


@dataclass(frozen=True)
class Trained:
    """What the `train` step leaves for `evaluate`, `contribution` and `record`."""

    algorithm: Algorithm
    options: Options
    part: Part


@dataclass
class PartyContext:
    spec: JobSpec
    party: str
    #: The step's own view of the job's channel: its tags carry the step's scope (the runner sets it).
    channel: Channel
    run_dir: Path
    events: EventLog
    certs_dir: Path | None = None  # the party's key folder: its signing key, the pinned keys, its ledger
    table: PartyTable | None = None  # loaded by the first step that needs it, aligned after `intersect`
    trained: Trained | None = None
    state: dict[str, Any] = field(default_factory=dict)  # what a step leaves for later steps

    @property
    def role(self) -> str:
        return self.spec.role_of(self.party)

    def write_json(self, name: str, data: Any) -> Path:
        """Write atomically, so a crash never leaves a half-written report that looks complete."""
        path = self.run_dir / name
        write_whole(path, json.dumps(data, indent=2, default=jsonable).encode())
        return path
