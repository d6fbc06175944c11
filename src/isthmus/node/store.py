"""A node's own history: jobs, votes and events in SQLite (WAL mode), safe across restarts.

Every write is one committed transaction, so a node killed at any moment restarts with every decision
it took. Statuses: ``proposed`` (waiting for the participants), ``pending`` (waiting for this node's
operator), ``accepted`` (this node signed), ``running``, ``finished``, ``failed``, ``refused``, ``cancelled``.

Published models are kept by version: publishing a name again adds version N+1 and keeps the earlier
ones; ``model_current`` holds the version a name serves by default (the latest, until a rollback).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from isthmus.errors import ConfigError, IsthmusError

FINAL = ("finished", "failed", "refused", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, name TEXT, proposer TEXT, digest TEXT, proposal TEXT,
    status TEXT, reason TEXT, addresses TEXT, created REAL, updated REAL);
CREATE TABLE IF NOT EXISTS votes (job TEXT, party TEXT, decision TEXT, reason TEXT, signature BLOB, address TEXT,
    PRIMARY KEY (job, party));
CREATE TABLE IF NOT EXISTS model_versions (name TEXT, version INTEGER, job TEXT, status TEXT, created REAL,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS model_current (name TEXT PRIMARY KEY, version INTEGER);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT, time REAL, event TEXT);
CREATE TABLE IF NOT EXISTS cleaned (job TEXT PRIMARY KEY, time REAL, reason TEXT);
"""


class StoreError(IsthmusError):
    """The node's store cannot be read or written now (its disk is full): what it was to record is not recorded."""


class Store:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._migrate()

    def _migrate(self) -> None:
        """A store from before model versions: each published name becomes its version 1."""
        if self._run("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'models'"):
            self._db.executescript("""BEGIN;
                INSERT OR IGNORE INTO model_versions SELECT name, 1, job, status, created FROM models;
                INSERT OR IGNORE INTO model_current SELECT name, 1 FROM models WHERE status = 'published';
                DROP TABLE models; COMMIT;""")

    def close(self) -> None:
        self._db.close()

    def _run(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:  # "database or disk is full", "database is locked"
                raise StoreError(f"node store {self.path}: {exc}") from None

    def add_job(self, job_id: str, name: str, proposer: str, digest: str, proposal: dict, status: str) -> None:
        now = time.time()
        try:
            self._run("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?)", job_id, name, proposer, digest,
                      json.dumps(proposal), status, now, now)
        except sqlite3.IntegrityError:
            raise ConfigError(f"job {job_id} is known here already") from None
        self.event(job_id, status=status)

    def set_status(self, job_id: str, status: str, reason: str | None = None) -> None:
        self._run("UPDATE jobs SET status = ?, reason = ?, updated = ? WHERE id = ?",
                  status, reason, time.time(), job_id)
        self.event(job_id, status=status, **({"reason": reason} if reason else {}))

    def set_addresses(self, job_id: str, addresses: dict[str, str]) -> None:
        self._run("UPDATE jobs SET addresses = ? WHERE id = ?", json.dumps(addresses), job_id)

    def job(self, job_id: str) -> dict | None:
        rows = self._run(f"{_JOBS} WHERE id = ?", job_id)
        return _job(rows[0]) if rows else None

    def jobs(self) -> list[dict]:
        return [_job(row) for row in self._run(f"{_JOBS} ORDER BY created")]

    def proposed_since(self, proposer: str, since: float) -> int:
        """How many jobs ``proposer`` proposed here since the time ``since``."""
        return self._run("SELECT COUNT(*) FROM jobs WHERE proposer = ? AND created >= ?", proposer, since)[0][0]

    def with_status(self, *statuses: str) -> list[dict]:
        marks = ",".join("?" * len(statuses))
        return [_job(row) for row in self._run(f"{_JOBS} WHERE status IN ({marks})", *statuses)]

    def mark_cleaned(self, job_id: str, reason: str) -> None:
        """The job's per-row outputs are gone from this node (:mod:`isthmus.node.retention`)."""
        self._run("INSERT OR REPLACE INTO cleaned (job, time, reason) VALUES (?, ?, ?)", job_id, time.time(), reason)

    def vote(self, job_id: str, party: str, decision: str, reason: str | None = None, signature: bytes | None = None,
             address: str | None = None) -> None:
        self._run("INSERT OR REPLACE INTO votes VALUES (?, ?, ?, ?, ?, ?)", job_id, party, decision, reason, signature,
                  address)
        self.event(job_id, party=party, vote=decision, **({"reason": reason} if reason else {}))

    def ports_held(self, party: str) -> set[int]:
        """The ports ``party`` chose for its side of jobs agreed or running: no other job may take them."""
        rows = self._run("SELECT votes.address FROM votes JOIN jobs ON jobs.id = votes.job WHERE votes.party = ? "
                         "AND votes.address IS NOT NULL AND jobs.status IN ('accepted', 'running')", party)
        return {int(row["address"].rpartition(":")[2]) for row in rows}

    def votes(self, job_id: str) -> dict[str, dict]:
        return {row["party"]: dict(row) for row in self._run("SELECT * FROM votes WHERE job = ?", job_id)}

    def add_version(self, name: str, version: int, job_id: str, status: str = "published") -> None:
        """Record ``name`` version ``version``; a published one becomes the one served by default."""
        try:
            self._run("INSERT INTO model_versions VALUES (?, ?, ?, ?, ?)", name, version, job_id, status, time.time())
        except sqlite3.IntegrityError:
            raise ConfigError(f"model {name!r} has a version {version} here already") from None
        if status == "published":
            self.set_current(name, version)
        self.event(job_id, model=name, version=version, status=status)

    def next_version(self, name: str) -> int:
        return self._run("SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE name = ?", name)[0][0]

    def set_current(self, name: str, version: int | None) -> None:
        if version is None:
            self._run("DELETE FROM model_current WHERE name = ?", name)
        else:
            self._run("INSERT OR REPLACE INTO model_current VALUES (?, ?)", name, version)

    def current(self, name: str) -> int | None:
        rows = self._run("SELECT version FROM model_current WHERE name = ?", name)
        return rows[0][0] if rows else None

    def unpublish(self, name: str, version: int) -> None:
        rows = self._run("UPDATE model_versions SET status = 'unpublished' WHERE name = ? AND version = ? "
                         "AND status = 'published' RETURNING job", name, version)
        if rows:
            self.event(rows[0][0], model=name, version=version, status="unpublished")

    def models(self) -> list[dict]:
        """Every version of every model, with ``current`` true for the one its name serves by default."""
        return [{**dict(row), "current": bool(row["current"])} for row in self._run(
            "SELECT v.*, c.version IS NOT NULL AS current FROM model_versions v LEFT JOIN model_current c "
            "ON c.name = v.name AND c.version = v.version ORDER BY v.name, v.version")]

    def event(self, job_id: str, **event: Any) -> None:
        self._run("INSERT INTO events (job, time, event) VALUES (?, ?, ?)", job_id, time.time(), json.dumps(event))

    def events(self, job_id: str) -> list[dict]:
        return [{"time": row["time"], **json.loads(row["event"])}
                for row in self._run("SELECT * FROM events WHERE job = ? ORDER BY seq", job_id)]


#: A job with when and why its per-row outputs were removed here (both null while they are kept).
_JOBS = ("SELECT jobs.*, cleaned.time AS cleaned, cleaned.reason AS cleaned_reason FROM jobs "
         "LEFT JOIN cleaned ON cleaned.job = jobs.id")


def _job(row: sqlite3.Row) -> dict:
    job = dict(row)
    job["proposal"] = json.loads(job["proposal"])
    job["addresses"] = json.loads(job["addresses"]) if job["addresses"] else None
    return job
