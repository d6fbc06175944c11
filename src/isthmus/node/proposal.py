"""A proposed job: the job file's shape, but each party's data is a table alias of its node, never a path.

Every node reads the same proposal; the digest of its canonical form is what each participant signs
when it consents. :func:`job_for` turns it into the job one party runs: its own alias becomes its own
catalogue entry (the path never leaves the node), the other parties' tables stay opaque placeholders.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isthmus.errors import ConfigError
from isthmus.jobs.spec import ROLES, JobSpec, parse_job
from isthmus.node.config import ALIAS, TableEntry

_JOB_ID = re.compile(r"[0-9a-f]{16}")
#: Largest proposal in bytes (canonical JSON): a job file is a few kilobytes.
MAX_PROPOSAL_BYTES = 64 * 1024


class ProposalError(ConfigError):
    """A proposal that is not a well-formed job naming aliases; ``rule`` names what it broke."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class Proposal:
    id: str
    proposer: str
    body: dict  # the job: job, parties {name: {role, data?: alias}}, steps, job-level options

    @property
    def name(self) -> str:
        return str(self.body["job"])

    @property
    def parties(self) -> dict[str, dict]:
        return self.body["parties"]

    def alias_of(self, party: str) -> str | None:
        return self.parties[party].get("data")

    @property
    def digest(self) -> str:
        """What consent means: this id, this proposer, this job, byte for byte."""
        return hashlib.sha256(canonical({"id": self.id, "proposer": self.proposer, "job": self.body})).hexdigest()

    @property
    def run_name(self) -> str:
        """The job's name on the wire: unique per proposal, the same at every party."""
        return f"{self.name[:47]}-{self.id}"

    def to_wire(self) -> dict:
        return {"id": self.id, "proposer": self.proposer, "job": self.body}


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def parse_proposal(raw: Any, *, job_id: Any, proposer: str, members: set[str]) -> Proposal:
    """Check a proposal's shape; every problem is a :class:`ProposalError` naming the rule."""
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise ProposalError("shape", f"job id {job_id!r:.40} is not 16 hex digits")
    if proposer not in members:
        raise ProposalError("member", f"proposer {proposer!r} is not a member of the federation")
    if not isinstance(raw, dict) or not {"job", "parties", "steps"} <= raw.keys():
        raise ProposalError("shape", "a proposal is a job: a mapping with 'job', 'parties' and 'steps'")
    try:
        size = len(canonical(raw))
    except (TypeError, ValueError) as exc:
        raise ProposalError("shape", f"a proposal holds only plain values: {exc}") from None
    if size > MAX_PROPOSAL_BYTES:
        raise ProposalError("size", f"the proposal is {size} bytes, more than {MAX_PROPOSAL_BYTES}")
    parties = raw["parties"]
    if not isinstance(parties, dict) or len(parties) < 2:
        raise ProposalError("shape", "'parties' must map at least two members to {role, data: ALIAS}")
    for name, entry in parties.items():
        if name not in members:
            raise ProposalError("member", f"party {name!r} is not a member of the federation")
        _check_party(name, entry)
    return Proposal(job_id, proposer, raw)


def _check_party(name: str, entry: Any) -> None:
    if not isinstance(entry, dict) or not set(entry) <= {"role", "data"} or entry.get("role") not in ROLES:
        raise ProposalError("shape", f"party {name!r}: give exactly 'role' (one of {', '.join(ROLES)}) and, for a "
                                     "party with data, 'data: ALIAS' (addresses come from the federation)")
    alias = entry.get("data")
    if alias is None:
        return
    if isinstance(alias, dict) or (isinstance(alias, str) and ("/" in alias or "\\" in alias or "." in alias)):
        raise ProposalError("alias", f"party {name!r}: a proposal names a table by its alias in that party's "
                                     f"catalogue, never by path: got {alias!r:.80}")
    if not isinstance(alias, str) or not ALIAS.fullmatch(alias):
        raise ProposalError("alias", f"party {name!r}: data alias {alias!r:.80} is not an alias "
                                     "(lower-case letters, digits, '_' and '-')")


def job_for(proposal: Proposal, party: str, catalogue: dict[str, TableEntry], *, base: Path,
            addresses: dict[str, str] | None = None) -> JobSpec:
    """The job ``party`` runs: its alias resolved to its own table; before the start, placeholder addresses."""
    return parse_job(job_document(proposal, party, catalogue, base=base, addresses=addresses), base_dir=base)


def job_document(proposal: Proposal, party: str, catalogue: dict[str, TableEntry], *, base: Path,
                 addresses: dict[str, str] | None = None) -> dict:
    parties = {}
    for index, (name, entry) in enumerate(sorted(proposal.parties.items()), start=1):
        spec: dict[str, Any] = {"role": entry["role"],
                                "address": (addresses or {}).get(name, f"127.0.0.1:{index}")}
        alias = entry.get("data")
        if alias is not None:
            spec["data"] = _table(catalogue, alias, base) if name == party else {"path": f"{name}:{alias}", "id": "-"}
        parties[name] = spec
    options = {k: v for k, v in proposal.body.items() if k not in ("job", "parties", "steps")}
    return {"job": proposal.run_name, **options, "parties": parties, "steps": proposal.body["steps"]}


def _table(catalogue: dict[str, TableEntry], alias: str, base: Path) -> dict:
    if alias not in catalogue:
        raise ProposalError("alias", f"this node's catalogue has no table {alias!r}")
    entry = catalogue[alias].model_dump(exclude_none=True, exclude={"max_rows"})  # the node's rule, not the job's
    for key in ("path", "test"):
        if key in entry:
            path = Path(entry[key])
            entry[key] = str(path if path.is_absolute() else base / path)
    return {k: v for k, v in entry.items() if v != []}
