"""Ledger records: what one finished job leaves behind, as canonical bytes every party signs.

A record's body is canonical JSON (sorted keys, no spaces, ASCII, no NaN), so every party computes
the same bytes and the same SHA-256 hash from the same content. The body names the job, the digest
of its steps, and per present party: its role, the hash of the previous record in ITS OWN ledger
(each party's ledger is a chain; a record links into the chain of every party holding it), a salted
commitment to its input rows and schema, its model part's fingerprint and its own metrics; then
the contribution report, if the job measured one. Clients that dropped out of a horizontal job are
named as absent. A record is final when every present party has signed its hash.

The present and the absent parties, with their roles, are the record's party list: every player of
the contribution report is on it, and parties may be absent only while the aggregator and at least
one client are present. So no party can, alone, sign a record that says anything about another:
whoever the record names either signed it or is a client its aggregator and a fellow client
signed as absent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from isthmus.incentive.contribution import ContributionReport
from isthmus.incentive.signing import signature_valid

FORMAT = "isthmus-ledger/1"
GENESIS = "0" * 64  # what a party's first record names as its previous one
MAX_BODY_BYTES = 1 << 20
MAX_PARTIES = 4096
MAX_METRICS = 64
SIGNATURE_BYTES = 64
#: Roles that may be absent from a record: horizontal clients drop out and the job goes on without them.
MAY_BE_ABSENT = ("client",)
#: Roles of the one party that aggregates a horizontal job, and so finds which clients are absent.
AGGREGATING = ("aggregator", "arbiter")

_HEX = re.compile(r"[0-9a-f]{64}")
_PARTY = re.compile(r"[a-z0-9][a-z0-9.\-]{0,62}")
_ROLE = re.compile(r"[a-z]{1,32}")
_JOB = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
METRIC_NAME = re.compile(r"[a-z0-9_]{1,32}")
_PARTY_FIELDS = {"role", "previous", "input", "model", "metrics"}
_BODY_FIELDS = {"format", "job", "job_digest", "created", "parties", "absent", "contributions"}


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Record:
    """A body (canonical JSON bytes) and the signatures on its hash, by party."""

    body: bytes
    signatures: dict[str, bytes]

    @cached_property
    def hash(self) -> str:
        return sha256_hex(self.body)

    @cached_property
    def content(self) -> dict[str, Any]:
        return parse_body(self.body)

    @property
    def parties(self) -> list[str]:
        """The present parties: every one of them must sign."""
        return sorted(self.content["parties"])

    @property
    def roles(self) -> dict[str, str]:
        """The record's party list: every party it names, present or absent, with its role."""
        return listed_roles(self.content)

    def previous(self, party: str) -> str:
        return self.content["parties"][party]["previous"]

    def to_dict(self) -> dict[str, Any]:
        """For export: the body as data, the signatures in hex."""
        return {"hash": self.hash, "body": self.content,
                "signatures": {party: sig.hex() for party, sig in sorted(self.signatures.items())}}


def parse_body(data: bytes) -> dict[str, Any]:
    """The body as data; ``ValueError`` saying what is wrong when it is not a well-formed canonical body."""
    if not isinstance(data, bytes) or not 0 < len(data) <= MAX_BODY_BYTES:
        raise ValueError(f"a record body is 1 to {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(data, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ValueError(f"record body is not JSON: {exc}") from None
    if not isinstance(body, dict) or set(body) != _BODY_FIELDS:
        raise ValueError(f"a record body has exactly the fields {sorted(_BODY_FIELDS)}")
    if canonical(body) != data:
        raise ValueError("record body is not in canonical form")
    if body["format"] != FORMAT:
        raise ValueError(f"unknown record format {body['format']!r:.40}")
    if not _matches(_JOB, body["job"]) or not _matches(_HEX, body["job_digest"]):
        raise ValueError("bad job name or job digest")
    if not isinstance(body["created"], str) or _parse_time(body["created"]) is None:
        raise ValueError("'created' must be a UTC time like 2025-01-31T12:00:00Z")
    parties, absent = body["parties"], body["absent"]
    if not isinstance(parties, dict) or not 0 < len(parties) <= MAX_PARTIES:
        raise ValueError("'parties' must map 1 or more parties to their entries")
    for name, entry in parties.items():
        check_party_entry(name, entry)
    if not isinstance(absent, dict) or set(absent) & set(parties) or not all(
            _matches(_PARTY, name) and role in MAY_BE_ABSENT for name, role in absent.items()):
        raise ValueError(f"'absent' maps parties not in the record to their role, one of {MAY_BE_ABSENT}")
    if absent:
        present = [entry["role"] for entry in parties.values()]
        if sum(role in AGGREGATING for role in present) != 1 or "client" not in present:
            raise ValueError("clients may be absent only from a record that the job's aggregator and at least one "
                             "client signed")
    if body["contributions"] is not None:
        players = ContributionReport.from_dict(body["contributions"]).values
        strangers = sorted(set(players) - set(listed_roles(body)))
        if strangers:
            raise ValueError(f"the contributions name {strangers}, who are not parties of the record")
    return body


def listed_roles(body: dict[str, Any]) -> dict[str, str]:
    """The party list of a well-formed body: present and absent parties, with their roles."""
    return {**{name: entry["role"] for name, entry in body["parties"].items()}, **body["absent"]}


def check_party_entry(name: str, entry: Any) -> None:
    if not _matches(_PARTY, name) or not isinstance(entry, dict) or set(entry) != _PARTY_FIELDS:
        raise ValueError(f"party {name!r:.70}: an entry has exactly the fields {sorted(_PARTY_FIELDS)}")
    if not _matches(_ROLE, entry["role"]) or not _matches(_HEX, entry["previous"]):
        raise ValueError(f"party {name!r}: bad role or previous hash")
    if not all(entry[key] is None or _matches(_HEX, entry[key]) for key in ("input", "model")):
        raise ValueError(f"party {name!r}: input and model are SHA-256 hashes in hex, or null")
    metrics = entry["metrics"]
    if not isinstance(metrics, dict) or len(metrics) > MAX_METRICS or not all(
            _matches(METRIC_NAME, k) and type(v) is float and math.isfinite(v) for k, v in metrics.items()):
        raise ValueError(f"party {name!r}: metrics map names to finite floats")


def signature_problems(record: Record, pinned: dict[str, Ed25519PublicKey]) -> list[str]:
    """Why ``record`` is not final: a present party's signature missing, invalid or unpinned, or a stranger's."""
    problems = []
    parties = set(record.parties)
    for party in sorted(parties - set(record.signatures)):
        problems.append(f"not signed by {party}")
    for party in sorted(set(record.signatures) - parties):
        problems.append(f"signed by {party}, who is not a party of the record")
    for party in sorted(parties & set(record.signatures)):
        signature = record.signatures[party]
        if party not in pinned:
            problems.append(f"no pinned signing key for {party}")
        elif len(signature) != SIGNATURE_BYTES or not signature_valid(pinned[party], record.hash, signature):
            problems.append(f"signature of {party} is invalid")
    return problems


def input_commitment(ids: Iterable[Any], schema: dict[str, Any], salt: bytes) -> str:
    """A hiding, binding commitment to a party's rows (ids, in order) and schema; the data is never in it.

    Without the salt nobody can test a guess of the ids against it; with the salt (kept by the party)
    the party can later open it to an auditor by showing its ids and schema.
    """
    h = hashlib.sha256(b"isthmus input commitment v1\x00")
    h.update(salt)
    for part in (canonical(schema), *(str(i).encode() for i in ids)):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def new_salt() -> bytes:
    return secrets.token_bytes(32)


def file_fingerprint(path: Path) -> str | None:
    """SHA-256 of a file (a party's model part), or ``None`` when it does not exist."""
    return sha256_hex(path.read_bytes()) if path.is_file() else None


def _matches(pattern: re.Pattern, value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _parse_time(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def created_at(body: dict[str, Any]) -> dt.datetime:
    return _parse_time(body["created"])


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a record may hold")
