"""Building real ledgers for tests: parties endorse records over an in-process hub, as in a job."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from conftest import run_parties

from isthmus.incentive.endorse import JobFacts, Statement, endorse
from isthmus.incentive.ledger import Ledger, ledger_path
from isthmus.incentive.record import sha256_hex
from isthmus.transport.keyfiles import federation_file, load_pinned_keys, load_signing_key
from isthmus.transport.certs import create_federation
from isthmus.transport.local import LocalHub

ROLES = {"guest": "guest", "host": "host", "arbiter": "arbiter"}


def federation(folder: Path, parties: list[str]) -> Path:
    certs = folder / "certs"
    create_federation(certs, parties)
    return certs


def record_job(certs: Path, job: str, roles: dict[str, str], *, proposer: str = "guest",
               contributions: dict | None = None) -> dict[str, str]:
    """Every party of ``roles`` endorses one record and appends it to its ledger; returns party -> record hash."""
    hub = LocalHub(list(roles))
    pinned = load_pinned_keys(federation_file(certs))
    facts = JobFacts(job=job, job_digest=sha256_hex(job.encode()), roles=roles, contributions=contributions)

    def side(party: str):
        def run() -> str:
            with Ledger(ledger_path(certs, party), owner=party) as ledger:
                statement = Statement(previous=ledger.head(), input=sha256_hex(f"{party}-rows".encode()),
                                      model=None, metrics={"auc": 0.75} if party == proposer else {})
                record = endorse(hub.channel(party, job), proposer=proposer, facts=facts, statement=statement,
                                 signing_key=load_signing_key(certs, party), pinned=pinned)
                ledger.append(record, pinned)
                return record.hash
        return run

    return run_parties({party: side(party) for party in roles})


def record_at_nodes(node_keys: dict[str, Path], merged: Path, job: str, roles: dict[str, str],
                    holders: tuple[str, ...]) -> dict[str, str]:
    """A job endorsed with the nodes' own signing keys (each node's key folder in ``node_keys``; copies are
    gathered in ``merged``); the replicas of ``holders``' nodes then hold it, and the jobs recorded before it."""
    for party, keys in node_keys.items():
        shutil.copytree(keys, merged, dirs_exist_ok=True, ignore=lambda folder, names: [
            n for n in names if (keys / n).is_dir() and n != party])
    hashes = record_job(merged, job, roles)
    for party in holders:
        shutil.copy(ledger_path(merged, party), ledger_path(node_keys[party], party))
    return hashes


def copy_ledger(certs: Path, party: str, folder: Path) -> Path:
    """A copy of a party's ledger, to tamper with (the original stays intact)."""
    target = folder / party / "ledger.sqlite"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ledger_path(certs, party), target)
    return target


def tamper(path: Path, *statements: str, params: tuple = ()) -> None:
    """Run SQL on a ledger file the way an attacker would: first drop the append-only triggers."""
    db = sqlite3.connect(path)
    with db:
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            db.execute(f"DROP TRIGGER {name}")
        for statement in statements:
            db.execute(statement, params)
    db.close()
