"""Verifying ledgers: each replica's chain and signatures, and that the replicas agree with each other.

One replica is sound when its records are numbered 1..n, every stored hash is the hash of its body,
every body is well formed (every player of its contributions is on its party list; parties are
absent only beside their aggregator and a fellow client), names the replica's owner as a present
party and, as that party's previous record, the record before it; every party it names is a member
of the federation, and every present party signed it with its pinned key. Replicas agree when every
record one of them holds that names another replica's owner as a present party is held by that
replica too, and copies of one owner's ledger hold the same records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from isthmus.errors import ConfigError
from isthmus.incentive.ledger import Entry, Ledger
from isthmus.incentive.record import GENESIS, signature_problems


@dataclass(frozen=True)
class Finding:
    ledger: str  # the replica's path
    seq: int | None  # the record's number in it, if the finding is about one record
    problem: str

    def __str__(self) -> str:
        where = f"{self.ledger}" + (f" record {self.seq}" if self.seq is not None else "")
        return f"{where}: {self.problem}"


@dataclass
class Verification:
    replicas: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (owner, records)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def verify_ledgers(paths: Iterable[Path], pinned: dict[str, Ed25519PublicKey]) -> Verification:
    """Check each replica on its own, then the replicas against each other."""
    result = Verification()
    replicas: dict[str, tuple[str, list[Entry]]] = {}
    for path in map(str, paths):
        try:
            with Ledger(Path(path), read_only=True) as ledger:
                replicas[path] = ledger.owner, ledger.entries()
        except ConfigError as exc:
            result.findings.append(Finding(path, None, str(exc)))
            continue
        owner, entries = replicas[path]
        result.replicas[path] = (owner, len(entries))
        result.findings += _check_chain(path, owner, entries, pinned)
    result.findings += _disagreements(replicas)
    return result


def _check_chain(path: str, owner: str, entries: list[Entry],
                 pinned: dict[str, Ed25519PublicKey]) -> list[Finding]:
    findings, previous = [], GENESIS
    for position, entry in enumerate(entries, start=1):
        problems = []
        if entry.seq != position:
            problems.append(f"is numbered {entry.seq} but is the ledger's record {position} (one was deleted "
                            "or the records were renumbered)")
        if entry.stored_hash != entry.record.hash:
            problems.append("its body does not hash to the stored hash (the record was edited)")
        problems += _content_problems(entry, owner, previous, pinned)
        findings += [Finding(path, entry.seq, problem) for problem in problems]
        previous = entry.record.hash
    return findings


def _content_problems(entry: Entry, owner: str, previous: str, pinned: dict[str, Ed25519PublicKey]) -> list[str]:
    try:
        parties = entry.record.content["parties"]
    except ValueError as exc:
        return [f"malformed body: {exc}"]
    problems = signature_problems(entry.record, pinned)
    strangers = sorted(set(entry.record.roles) - set(parties) - set(pinned))
    if strangers:
        problems.append(f"names {', '.join(strangers)} as absent, but the federation pins no key for them "
                        "(not members)")
    if owner not in parties:
        problems.append(f"does not name the ledger's owner {owner} as a party")
    elif parties[owner]["previous"] != previous:
        problems.append(f"names {parties[owner]['previous'][:16]} as {owner}'s previous record, but the record "
                        f"before it is {previous[:16]} (records deleted, inserted or reordered)")
    return problems


def _disagreements(replicas: dict[str, tuple[str, list[Entry]]]) -> list[Finding]:
    """Records a replica holds that another replica should hold too, but does not."""
    findings = []
    hashes = {path: [entry.record.hash for entry in entries] for path, (_, entries) in replicas.items()}
    for path, (owner, entries) in replicas.items():
        for other, (other_owner, _) in replicas.items():
            if other == path:
                continue
            if other_owner == owner and hashes[other] != hashes[path]:
                findings.append(Finding(path, None, f"disagrees with {other}, another copy of {owner}'s ledger"))
                continue
            for entry in entries:
                if _names(entry, other_owner) and entry.record.hash not in hashes[other]:
                    findings.append(Finding(path, entry.seq, f"names {other_owner} as a party, but {other_owner}'s "
                                                             f"ledger at {other} does not hold it"))
    return findings


def _names(entry: Entry, party: str) -> bool:
    try:
        return party in entry.record.content["parties"]
    except ValueError:
        return False  # reported as malformed already
