"""Job files: one YAML file names the parties, their data and the pipeline steps.

Every party reads the same file; each runs its own side. See docs/jobs.md for the format.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from isthmus.algorithms.base import Roster
from isthmus.errors import ConfigError
from isthmus.options import Options
from isthmus.transport.ports import ADDRESS_RULE, is_address
from isthmus.yaml_files import load_yaml

ROLES = ("guest", "host", "arbiter", "client", "aggregator")
# Whole-string patterns (always used with fullmatch: `$` would also match before a trailing newline).
_NAME = re.compile(r"[a-z][a-z0-9\-]{0,62}")
_JOB_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


@dataclass(frozen=True)
class DataSpec:
    path: Path
    id: str
    label: str | None = None
    features: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    test: Path | None = None  # held-out rows with the same columns (horizontal clients evaluate on them)


@dataclass(frozen=True)
class PartySpec:
    name: str
    role: str
    address: str
    data: DataSpec | None = None


@dataclass(frozen=True)
class Step:
    name: str
    options: dict[str, Any]


class JobOptions(Options):
    """The job-level settings, beside ``job``, ``parties`` and ``steps``."""

    record: bool = False  # endorse the outcome on every party's ledger (a `record` step after the others)
    timeout: float = Field(600.0, gt=0)  # seconds a party waits for a peer's next message
    connect_timeout: float = Field(60.0, gt=0)  # seconds a party waits for its peers to be reachable
    audit_payloads: bool = False  # keep every sent payload beside the audit log (for tests that check bytes)
    #: Without it, benchmark-only modes that send data unencrypted are refused.
    benchmark_only_plaintext: bool = False
    resume: bool = False  # set by `isthmus run --resume`: steps that checkpoint continue


@dataclass(frozen=True)
class JobSpec:
    name: str
    parties: dict[str, PartySpec]
    steps: list[Step]
    base_dir: Path
    options: JobOptions = field(default_factory=JobOptions)

    @property
    def roster(self) -> Roster:
        return Roster({name: party.role for name, party in self.parties.items()})

    def role_of(self, party: str) -> str:
        return self.party(party).role

    def party(self, name: str) -> PartySpec:
        if name not in self.parties:
            close = difflib.get_close_matches(name, self.parties, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"job {self.name!r} has no party {name!r}{hint}; parties: {sorted(self.parties)}")
        return self.parties[name]

    def with_role(self, role: str) -> list[str]:
        return self.roster.with_role(role)

    def one(self, role: str) -> str:
        return self.roster.one(role)

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def to_dict(self) -> dict:
        """The job as plain data, e.g. to write a copy with other addresses."""
        parties = {}
        for name, p in self.parties.items():
            entry: dict[str, Any] = {"role": p.role, "address": p.address}
            if p.data:
                entry["data"] = {k: (str(v) if isinstance(v, Path) else v)
                                 for k, v in vars(p.data).items() if v not in (None, [])}
            parties[name] = entry
        return {"job": self.name, **self.options.model_dump(exclude_defaults=True), "parties": parties,
                "steps": [{s.name: s.options} for s in self.steps]}


def load_job(path: str | Path) -> JobSpec:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"job file {path} does not exist")
    return parse_job(load_yaml(path, what="job file"), base_dir=path.resolve().parent)


def parse_job(raw: Any, *, base_dir: Path) -> JobSpec:
    if not isinstance(raw, dict):
        raise ConfigError("a job file must be a mapping with 'job', 'parties' and 'steps'")
    missing = [key for key in ("job", "parties", "steps") if key not in raw]
    if missing:
        raise ConfigError(f"job file lacks {missing}")
    name = str(raw["job"])
    if not _JOB_NAME.fullmatch(name):
        raise ConfigError(f"job name {name!r} may hold only letters, digits, '.', '_' and '-' (at most 64)")
    parties = _parse_parties(raw["parties"], base_dir)
    steps = _parse_steps(raw["steps"])
    options = JobOptions.parse({k: v for k, v in raw.items() if k not in ("job", "parties", "steps")},
                               where=f"job {name!r}")
    return JobSpec(name=name, parties=parties, steps=steps, base_dir=base_dir, options=options)


def _parse_parties(raw: Any, base_dir: Path) -> dict[str, PartySpec]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("'parties' must map party names to their settings")
    parties: dict[str, PartySpec] = {}
    for name, entry in raw.items():
        listed = isinstance(entry, list)  # `host: [{...}, {...}]` is host-1, host-2, ...
        for number, item in enumerate(entry if listed else [entry], start=1):
            party = f"{name}-{number}" if listed else str(name)
            if party in parties or (listed and party in raw):
                raise ConfigError(f"party {party!r} is named twice: once by the list {name!r}, once by itself")
            role = str(name) if listed else party.split("-")[0]
            parties[party] = _parse_party(party, item, base_dir, default_role=role)
    shared = shared_address({name: party.address for name, party in parties.items()})
    if shared:
        raise ConfigError(f"parties {shared[0]!r} and {shared[1]!r} both have address {shared[2]}: each party "
                          "listens at its own host:port")
    return parties


def shared_address(addresses: Mapping[str, str]) -> tuple[str, str, str] | None:
    """Two parties and the address they both have, if any: each party listens at its own, and two at one
    would fail only once both start, with "address in use"."""
    seen: dict[str, str] = {}
    for party, address in addresses.items():
        first = seen.setdefault(address.lower(), party)
        if first != party:
            return first, party, address
    return None


def _parse_party(name: str, entry: Any, base_dir: Path, default_role: str) -> PartySpec:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"party name {name!r}: use lower-case letters, digits and '-'")
    if not isinstance(entry, dict):
        raise ConfigError(f"party {name!r}: settings must be a mapping")
    role = entry.get("role", default_role)
    if role not in ROLES:
        raise ConfigError(f"party {name!r}: role {role!r} is not one of {ROLES} (set 'role:' explicitly)")
    address = entry.get("address")
    if not is_address(address):
        raise ConfigError(f"party {name!r}: 'address' must be {ADDRESS_RULE}, got {address!r}")
    data = entry.get("data")
    return PartySpec(name=name, role=role, address=address, data=_parse_data(name, data, base_dir) if data else None)


def _parse_data(party: str, raw: Any, base_dir: Path) -> DataSpec:
    if not isinstance(raw, dict) or "path" not in raw or "id" not in raw:
        raise ConfigError(f"party {party!r}: 'data' needs at least 'path' and 'id'")
    unknown = set(raw) - {"path", "id", "label", "features", "exclude", "test"}
    if unknown:
        raise ConfigError(f"party {party!r}: unknown data settings {sorted(unknown)}")
    id_column = _column_name(party, "id", raw["id"])
    label = None if raw.get("label") is None else _column_name(party, "label", raw["label"])
    features = None if raw.get("features") is None else _column_names(party, "features", raw["features"])
    exclude = _column_names(party, "exclude", raw.get("exclude") or [])
    named = set(features or ())
    if both := sorted(named & set(exclude)):
        raise ConfigError(f"party {party!r}: data column(s) {both} are in both 'features' and 'exclude': keep each "
                          "in one of them")
    if reserved := [name for name in (id_column, label) if name in named]:
        raise ConfigError(f"party {party!r}: data 'features' names {reserved}, its id or label column")
    return DataSpec(path=_resolve(party, "path", raw["path"], base_dir), id=id_column, label=label,
                    features=features, exclude=exclude,
                    test=_resolve(party, "test", raw["test"], base_dir) if raw.get("test") else None)


def _column_name(party: str, key: str, value: Any) -> str:
    """A column's name as a file's header holds it: text (a YAML number, such as a year, is its text)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
        raise ConfigError(f"party {party!r}: data '{key}' must be a column name, got {value!r}")
    return str(value)


def _column_names(party: str, key: str, value: Any) -> list[str]:
    if not isinstance(value, list):  # a lone name would be read letter by letter
        raise ConfigError(f"party {party!r}: data '{key}' must be a list of column names, like [{value}], "
                          f"got {value!r}")
    return [_column_name(party, key, item) for item in value]


def _resolve(party: str, key: str, value: Any, base_dir: Path) -> Path:
    """Relative data paths are relative to the job file's folder, not to where the party runs."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"party {party!r}: data '{key}' must be a file path, got {value!r}")
    path = Path(value)
    return path if path.is_absolute() else base_dir / path


def _parse_steps(raw: Any) -> list[Step]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("'steps' must be a non-empty list such as [intersect: {}, train: {...}]")
    steps = []
    for item in raw:
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(f"each step is a one-key mapping like 'train: {{...}}', got {item!r}")
        (name, options), = item.items()
        if options is not None and not isinstance(options, dict):
            raise ConfigError(f"step {name!r}: options must be a mapping, like '{name}: {{option: value}}', "
                              f"got {options!r}")
        steps.append(Step(name=str(name), options=dict(options or {})))
    return steps
