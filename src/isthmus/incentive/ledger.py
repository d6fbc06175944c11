"""One party's replica of the ledger: an append-only SQLite file of signed records, chained by hash.

SQLite because it is in the standard library, is one file a party can back up, and writes a record
and its signatures in one transaction. Triggers refuse UPDATE and DELETE; they only stop honest
mistakes, since whoever holds the file can drop them: what makes tampering evident is that each
record names the hash of the party's previous record and carries every present party's signature
on its hash (:mod:`isthmus.incentive.verify`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from isthmus.errors import ConfigError, IsthmusError
from isthmus.incentive.record import GENESIS, Record, signature_problems

LEDGER_FILE = "ledger.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,          -- 1, 2, ... in the order this party appended them
    hash TEXT NOT NULL UNIQUE,        -- SHA-256 of body, in hex
    body BLOB NOT NULL                -- canonical JSON
);
CREATE TABLE IF NOT EXISTS signatures (
    record TEXT NOT NULL REFERENCES records (hash),
    party TEXT NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (record, party)
);
"""
_APPEND_ONLY = "".join(
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{action.lower()} BEFORE {action} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;\n"
    for table in ("records", "signatures", "meta")
    for action in ("UPDATE", "DELETE")
)


class LedgerError(IsthmusError):
    """A record cannot be appended: it is not final, or it does not continue this ledger's chain."""


@dataclass(frozen=True)
class Entry:
    """A row as stored: what a verifier must check rather than trust."""

    seq: int
    stored_hash: str
    record: Record


def ledger_path(certs_dir: Path, party: str) -> Path:
    """Where a party keeps its ledger: beside the key that signs its records."""
    return Path(certs_dir) / party / LEDGER_FILE


class Ledger:
    """A party's ledger file; ``owner`` is required to create one and checked when opening one."""

    def __init__(self, path: Path, *, owner: str | None = None, read_only: bool = False):
        self.path = Path(path)
        if read_only or self.path.exists():
            if not self.path.is_file():
                raise ConfigError(f"no ledger at {self.path}")
            uri = f"{self.path.resolve().as_uri()}?mode={'ro' if read_only else 'rw'}"
            self._db = sqlite3.connect(uri, uri=True)
        elif owner is None:
            raise ConfigError(f"no ledger at {self.path}; a new ledger needs its owner's name")
        else:
            self._db = sqlite3.connect(self.path)
            with self._db:
                self._db.executescript(_SCHEMA + _APPEND_ONLY)
                self._db.execute("INSERT INTO meta VALUES ('owner', ?)", (owner,))
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'owner'").fetchone()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ConfigError(f"{self.path} is not an isthmus ledger: {exc}") from None
        if row is None or (owner is not None and row[0] != owner):
            self._db.close()
            raise ConfigError(f"{self.path} is the ledger of {row[0] if row else 'nobody'!r}, not of {owner!r}")
        self.owner: str = row[0]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def entries(self) -> list[Entry]:
        rows = self._read("SELECT seq, hash, body FROM records ORDER BY seq")
        signatures: dict[str, dict[str, bytes]] = {}
        for record, party, signature in self._read("SELECT record, party, signature FROM signatures"):
            signatures.setdefault(str(record), {})[str(party)] = _blob(signature)
        return [Entry(seq, str(stored), Record(_blob(body), signatures.get(str(stored), {}))) for seq, stored, body in rows]

    def head(self) -> str:
        """The hash of the last record, which the next one must name as this party's previous."""
        rows = self._read("SELECT hash FROM records ORDER BY seq DESC LIMIT 1")
        return rows[0][0] if rows else GENESIS

    def _read(self, query: str) -> list[tuple]:
        """Rows of ``query``; a file whose tables were dropped or altered is a damaged ledger, said in one line."""
        try:
            return self._db.execute(query).fetchall()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path} is a damaged isthmus ledger: {exc}") from None

    def append(self, record: Record, pinned: dict[str, Ed25519PublicKey]) -> int:
        """Store a final record that continues this ledger's chain; returns its sequence number.

        The write lock is held from reading the head to writing the record, so two jobs finishing
        at once cannot both append after the same head: the second is refused.
        """
        try:
            problems = signature_problems(record, pinned)
        except ValueError as exc:
            raise LedgerError(f"record {record.hash[:16]} cannot be appended to {self.path}: {exc}") from None
        if self.owner not in record.parties:
            problems.append(f"{self.owner} is not a party of it")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            head = self.head()
            if self.owner in record.parties and record.previous(self.owner) != head:
                problems.append(f"it follows {record.previous(self.owner)[:16]}, not this ledger's head {head[:16]}")
            if problems:
                raise LedgerError(f"record {record.hash[:16]} cannot be appended to {self.path}: {'; '.join(problems)}")
            cursor = self._db.execute("INSERT INTO records (hash, body) VALUES (?, ?)", (record.hash, record.body))
            self._db.executemany("INSERT INTO signatures VALUES (?, ?, ?)",
                                 [(record.hash, party, sig) for party, sig in sorted(record.signatures.items())])
        except BaseException:
            self._db.rollback()
            raise
        self._db.commit()
        return cursor.lastrowid

def _blob(value: object) -> bytes:
    """A stored value as bytes, whatever type an edit of the file left in the column."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")
