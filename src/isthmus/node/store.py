"""A node's own history: jobs, votes and events in SQLite (WAL mode), safe across restarts.

Every write is one committed transaction, so a node killed at any moment restarts with every decision
it took. Statuses: ``proposed`` (waiting for the participants), ``pending`` (waiting for this node's
operator), ``accepted`` (this node signed), ``running``, ``finished``, ``failed``, ``refused``, ``cancelled``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from isthmus.errors import ConfigError

FINAL = ("finished", "failed", "refused", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, name TEXT, proposer TEXT, digest TEXT, proposal TEXT,
    status TEXT, reason TEXT, addresses TEXT, created REAL, updated REAL);
CREATE TABLE IF NOT EXISTS votes (job TEXT, party TEXT, decision TEXT, reason TEXT, signature BLOB, address TEXT,
    PRIMARY KEY (job, party));
CREATE TABLE IF NOT EXISTS models (name TEXT PRIMARY KEY, job TEXT, status TEXT, created REAL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT, time REAL, event TEXT);
"""


class Store:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def _run(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

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
        rows = self._run("SELECT * FROM jobs WHERE id = ?", job_id)
        return _job(rows[0]) if rows else None

    def jobs(self) -> list[dict]:
        return [_job(row) for row in self._run("SELECT * FROM jobs ORDER BY created")]

    def with_status(self, *statuses: str) -> list[dict]:
        marks = ",".join("?" * len(statuses))
        return [_job(row) for row in self._run(f"SELECT * FROM jobs WHERE status IN ({marks})", *statuses)]

    def vote(self, job_id: str, party: str, decision: str, reason: str | None = None, signature: bytes | None = None,
             address: str | None = None) -> None:
        self._run("INSERT OR REPLACE INTO votes VALUES (?, ?, ?, ?, ?, ?)", job_id, party, decision, reason, signature,
                  address)
        self.event(job_id, party=party, vote=decision, **({"reason": reason} if reason else {}))

    def votes(self, job_id: str) -> dict[str, dict]:
        return {row["party"]: dict(row) for row in self._run("SELECT * FROM votes WHERE job = ?", job_id)}

    def add_model(self, name: str, job_id: str, status: str) -> None:
        self._run("INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?)", name, job_id, status, time.time())
        self.event(job_id, model=name, status=status)

    def models(self) -> list[dict]:
        return [dict(row) for row in self._run("SELECT * FROM models ORDER BY created")]

    def event(self, job_id: str, **event: Any) -> None:
        self._run("INSERT INTO events (job, time, event) VALUES (?, ?, ?)", job_id, time.time(), json.dumps(event))

    def events(self, job_id: str) -> list[dict]:
        return [{"time": row["time"], **json.loads(row["event"])}
                for row in self._run("SELECT * FROM events WHERE job = ? ORDER BY seq", job_id)]


def _job(row: sqlite3.Row) -> dict:
    job = dict(row)
    job["proposal"] = json.loads(job["proposal"])
    job["addresses"] = json.loads(job["addresses"]) if job["addresses"] else None
    return job
