"""The consortium's query configuration: one YAML file that every member and the aggregator share.

Everything that changes what an answer means (the privacy mode, the amount unit, the id format)
sits in ``policy``; every request carries the policy's digest and every service refuses a request
made under another policy, so no member can quietly run a weaker mode than the consortium agreed.
The format is documented in docs/query.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from isthmus.errors import ConfigError
from isthmus.transport.ports import ADDRESS_RULE, is_address
from isthmus.yaml_files import load_yaml

#: ``aggregate``: the asker learns per id only how many other institutions hold an active loan and
#: their total amount. ``per_institution``: it also learns which institutions do (a weaker mode).
MODES = ("aggregate", "per_institution")


@dataclass(frozen=True)
class Policy:
    mode: str = "aggregate"
    max_batch: int = 10_000
    paillier_bits: int = 2048
    amount_decimals: int = 2
    id_max_length: int = 64
    id_pattern: str | None = None
    #: ids one member may ask about in 24 hours, counted by every institution and the aggregator: each
    #: answer says whether someone in the consortium lends to that person, and enough of them would list
    #: every borrower of the consortium
    max_ids_per_day: int = 100_000
    #: false: an id is answered only over every other institution. An answer over the others while one is
    #: down, beside one once it is back, gives that institution's count and amount for the id by difference
    partial_answers: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"policy.mode must be one of {MODES}, got {self.mode!r}")
        _require_int("policy.max_batch", self.max_batch, 1, 1_000_000)
        _require_int("policy.paillier_bits", self.paillier_bits, 1024, 8192)
        _require_int("policy.amount_decimals", self.amount_decimals, 0, 8)
        _require_int("policy.id_max_length", self.id_max_length, 1, 1024)
        _require_int("policy.max_ids_per_day", self.max_ids_per_day, 1, 10**9)
        if not isinstance(self.partial_answers, bool):
            raise ConfigError(f"policy.partial_answers must be true or false, got {self.partial_answers!r}")
        if self.max_ids_per_day < self.max_batch:
            raise ConfigError(f"policy.max_ids_per_day ({self.max_ids_per_day}) is below policy.max_batch "
                              f"({self.max_batch}): a full batch could never be answered")
        if self.id_pattern is not None:
            try:
                re.compile(self.id_pattern)
            except (re.error, TypeError) as exc:
                raise ConfigError(f"policy.id_pattern is not a regular expression: {exc}") from None

    def digest(self) -> str:
        """What requests carry so that a service can refuse one made under a different policy."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class TableFormat:
    """Column names of the loans tables; one row per loan, several loans per customer allowed."""

    id_column: str = "customer_id"
    amount_column: str = "amount"
    status_column: str = "status"
    active_statuses: tuple[str, ...] = ("active",)


@dataclass(frozen=True)
class QueryConfig:
    consortium: str
    aggregator: str
    addresses: dict[str, str]  # every member, the aggregator included -> "host:port"
    policy: Policy = field(default_factory=Policy)
    table: TableFormat = field(default_factory=TableFormat)
    answer_timeout: float = 10.0  # seconds an asker waits for a responder's or the aggregator's answer
    connect_timeout: float = 5.0  # seconds a node keeps trying to reach a peer that is down
    cert_dir: Path | None = None

    @property
    def institutions(self) -> list[str]:
        return sorted(name for name in self.addresses if name != self.aggregator)

    @property
    def domain(self) -> bytes:
        """Domain separation for hashing ids: pseudonyms of two consortia never coincide."""
        return b"isthmus-query/" + self.consortium.encode()

    def check_member(self, party: str) -> None:
        if party not in self.addresses:
            raise ConfigError(f"unknown party {party!r}: the consortium has {sorted(self.addresses)}")

    def check_institution(self, party: str) -> None:
        self.check_member(party)
        if party == self.aggregator:
            raise ConfigError(f"{party!r} is the aggregator, not an institution; institutions: {self.institutions}")


def load_config(path: str | Path) -> QueryConfig:
    """Read and check the consortium file; every mistake is a :class:`ConfigError` naming the key."""
    path = Path(path)
    raw = load_yaml(path, what="query configuration")
    doc = _section(raw, "the file", {"consortium", "aggregator", "institutions", "policy", "table", "timeouts", "certs"})
    aggregator = _section(doc.get("aggregator"), "aggregator", {"name", "address"})
    institutions = _section(doc.get("institutions"), "institutions", None)
    if not institutions:
        raise ConfigError(f"{path}: 'institutions' must name at least one member with its address")
    name = _text(aggregator.get("name"), "aggregator.name")
    addresses = {name: _text(aggregator.get("address"), "aggregator.address")}
    for member, address in institutions.items():
        if member in addresses:
            raise ConfigError(f"{path}: {member!r} is both an institution and the aggregator")
        addresses[_text(member, "institution name")] = _text(address, f"institutions.{member}")
    for member, address in addresses.items():
        if not is_address(address):
            raise ConfigError(f"{path}: the address of {member!r} must be {ADDRESS_RULE}, got {address!r}")
    timeouts = _section(doc.get("timeouts", {}), "timeouts", {"answer_seconds", "connect_seconds"})
    table = _section(doc.get("table", {}), "table", set(TableFormat.__dataclass_fields__))
    if "active_statuses" in table:
        table["active_statuses"] = tuple(_text(s, "table.active_statuses") for s in table["active_statuses"])
    certs = doc.get("certs")
    try:
        return QueryConfig(
            consortium=_text(doc.get("consortium"), "consortium"),
            aggregator=name,
            addresses=addresses,
            policy=Policy(**_section(doc.get("policy", {}), "policy", set(Policy.__dataclass_fields__))),
            table=TableFormat(**table),
            answer_timeout=float(timeouts.get("answer_seconds", 10.0)),
            connect_timeout=float(timeouts.get("connect_seconds", 5.0)),
            cert_dir=(path.parent / certs) if certs else None,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_document(config: QueryConfig) -> dict[str, Any]:
    """The YAML document that :func:`load_config` reads back as ``config`` (certs path as given)."""
    members = {name: address for name, address in config.addresses.items() if name != config.aggregator}
    doc: dict[str, Any] = {
        "consortium": config.consortium,
        "aggregator": {"name": config.aggregator, "address": config.addresses[config.aggregator]},
        "institutions": members,
        "policy": asdict(config.policy),
        "table": {**asdict(config.table), "active_statuses": list(config.table.active_statuses)},
        "timeouts": {"answer_seconds": config.answer_timeout, "connect_seconds": config.connect_timeout},
    }
    if config.cert_dir is not None:
        doc["certs"] = str(config.cert_dir)
    return doc


def _section(value: Any, where: str, allowed: set[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"query configuration: {where} must be a mapping")
    if allowed is not None and set(value) - allowed:
        raise ConfigError(f"query configuration: unknown key(s) {sorted(set(value) - allowed)} in {where}; allowed: {sorted(allowed)}")
    return dict(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"query configuration: {where} must be a non-empty string")
    return value.strip()


def _require_int(where: str, value: Any, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise ConfigError(f"{where} must be an integer in [{low}, {high}], got {value!r}")
