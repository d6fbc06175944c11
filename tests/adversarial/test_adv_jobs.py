"""What a failing party tells its peers, and job files built to mislead or exhaust the loader.

A step that fails on bad data raises an error quoting that data (a duplicate id, a cell, the file's
columns, its path). The operator needs the detail; the peers are other organisations: they must
learn who failed and where, never the text. The parties here are real processes over mutual TLS.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from isthmus.jobs.local import loopback_parties, write_job

SECRET_ID = "790512-1234567"
SECRET_CELL = "n/a-48213x"
SECRET_COLUMNS = ("salary_band_q7", "tenure_months_z3")


def write_tables(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"cust-{i:04d}" for i in range(40)]
    guest = pd.DataFrame({"id": ids, "y": [i % 2 for i in range(40)], "g_a": range(40), "g_b": range(40, 80)})
    host = pd.DataFrame({"id": ids, SECRET_COLUMNS[0]: [0.5 * i for i in range(40)],
                         SECRET_COLUMNS[1]: [float(i % 7) for i in range(40)]})
    guest.to_csv(folder / "guest.csv", index=False)
    host.to_csv(folder / "host.csv", index=False)
    return folder / "guest.csv", folder / "host.csv"


def duplicate_id(host_csv: Path) -> dict:
    frame = pd.read_csv(host_csv)
    frame.loc[[3, 11], "id"] = SECRET_ID
    frame.to_csv(host_csv, index=False)
    return {"path": str(host_csv), "id": "id"}


def non_numeric_cell(host_csv: Path) -> dict:
    frame = pd.read_csv(host_csv).astype({SECRET_COLUMNS[0]: object})
    frame.loc[5, SECRET_COLUMNS[0]] = SECRET_CELL
    frame.to_csv(host_csv, index=False)
    return {"path": str(host_csv), "id": "id"}


def missing_column(host_csv: Path) -> dict:
    return {"path": str(host_csv), "id": "customer_ref_k2"}  # the error lists the file's real columns


def missing_file(host_csv: Path) -> dict:
    return {"path": str(host_csv.parent / "vault-5c1e" / "host-private.csv"), "id": "id"}


# (how the host's data goes wrong, what the host's error quotes that must stay at the host)
FAILURES = {
    "duplicate id": (duplicate_id, [SECRET_ID]),
    "non-numeric cell": (non_numeric_cell, [SECRET_CELL, SECRET_COLUMNS[0]]),
    "missing column": (missing_column, ["customer_ref_k2", *SECRET_COLUMNS]),
    "missing file": (missing_file, ["vault-5c1e", "host-private.csv"]),
}


def launch(folder: Path, host_data: dict, *, arbiter: bool) -> subprocess.CompletedProcess:
    """Guest and host intersect (and, with the arbiter, would train); the host's data is bad."""
    guest_csv = folder / "data" / "guest.csv"
    parties = {"guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}}, "host": {"data": host_data}}
    steps: list = [{"intersect": {}}]
    if arbiter:  # it waits in `train`: the guest, failing too, tells it as well
        parties["arbiter"] = {}
        steps.append({"train": {"model": "hetero_lr", "epochs": 1, "key_bits": 1024}})
    job = write_job(folder / "job.yaml", {
        "job": "adv-abort", "record": False, "audit_payloads": True, "connect_timeout": 20, "timeout": 60,
        "parties": loopback_parties(parties), "steps": steps})
    return subprocess.run([sys.executable, "-m", "isthmus", "launch", str(job), "--out", str(folder / "run")],
                          capture_output=True, text=True, timeout=180)


def failure_event(run: Path, party: str) -> dict:
    events = [json.loads(line) for line in (run / party / "events.jsonl").read_text().splitlines()]
    (failed,) = [e for e in events if e.get("status") == "failed"]
    return failed


@pytest.mark.e2e
@pytest.mark.parametrize("kind", FAILURES)
def test_peers_learn_who_failed_and_where_but_not_the_data(tmp_path, kind):
    spoil, secrets = FAILURES[kind]
    _, host_csv = write_tables(tmp_path / "data")
    arbiter = kind == "duplicate id"  # one job of three parties is enough; each process costs seconds
    result = launch(tmp_path, spoil(host_csv), arbiter=arbiter)
    assert result.returncode == 1, result.stdout + result.stderr
    run = tmp_path / "run"
    parties = ["guest", "host", *(["arbiter"] if arbiter else [])]

    sent = {party: b"".join(p.read_bytes() for p in sorted((run / party / "audit-payloads").glob("*.bin")))
            for party in parties}
    assert sent["host"], "the host told nobody that it failed"
    for party, payloads in sent.items():
        for secret in secrets:
            assert secret.encode() not in payloads, f"{party} sent {secret!r}"

    own = failure_event(run, "host")
    assert own["step"] == "intersect"
    log = (run / "host" / "party.log").read_text()
    for secret in secrets:
        assert secret in own["error"] and secret in log, (secret, own["error"])
    peers = {party: failure_event(run, party)["error"] for party in parties if party != "host"}
    # the guest hears from the host itself (an abort, or the intersection's own stop signal)
    assert "'host'" in peers["guest"] or "failed at host (DataError" in peers["guest"], peers
    assert "intersect" in peers["guest"], peers
    if arbiter:  # told by the host or by the guest, whichever came first
        assert re.search(r"step intersect failed at (host|guest) \(DataError", peers["arbiter"]), peers
    for error in peers.values():
        assert not any(secret in error for secret in secrets), error
