"""End to end: a launched vertical job measures contributions and records them on every party's ledger."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from ledger_helpers import tamper

from isthmus.demos.vertical import make_vertical_data
from isthmus.jobs.local import loopback_parties, write_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PARTIES = ["arbiter", "guest", "host"]


def isthmus(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "isthmus", *args], check=False, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e-ledger")
    guest_csv, host_csv = make_vertical_data(folder / "data")
    job = write_job(folder / "job.yaml", {
        "job": "e2e-ledger",  # no `record:` key: `isthmus launch` records by default
        "parties": loopback_parties({"guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}},
                                     "host": {"data": {"path": str(host_csv), "id": "id"}}, "arbiter": {}}),
        "steps": [{"intersect": {}},
                  {"train": {"model": "hetero_lr", "epochs": 3, "batch_size": 0, "learning_rate": 0.5,
                             "validation_fraction": 0.25, "key_bits": 1024, "precision": 6}},
                  {"evaluate": {}},
                  {"contribution": {"budget": 10}}],
    })
    result = isthmus("launch", str(job), "--out", str(folder / "run"))
    assert result.returncode == 0, result.stdout + result.stderr
    return folder / "run"


def test_every_party_recorded_the_job_and_each_ledger_verifies(launched):
    certs = launched / "certs"
    for party in PARTIES:
        result = isthmus("ledger", "verify", str(certs / party))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ledger verified" in result.stdout and "1 replica" in result.stdout
    together = isthmus("ledger", "verify", str(certs))
    assert together.returncode == 0 and "3 replica(s)" in together.stdout and "replicas agree" in together.stdout


def test_the_launch_folder_and_a_party_run_folder_lead_to_the_ledgers(launched):
    """What a user holds after the launch: its folder, and each party's folder in it (it said "no ledger")."""
    together = isthmus("ledger", "verify", str(launched))
    assert together.returncode == 0 and "3 replica(s)" in together.stdout, together.stdout + together.stderr
    shown = isthmus("ledger", "show", str(launched / "guest"))
    assert shown.returncode == 0 and "e2e-ledger" in shown.stdout, shown.stdout + shown.stderr
    several = isthmus("ledger", "show", str(launched))  # which of them: it said "name one party's folder"
    assert several.returncode == 1 and str(launched / "certs" / "host" / "ledger.sqlite") in several.stderr
    unrecorded = launched.parent / "no-record"
    unrecorded.mkdir()
    refused = isthmus("ledger", "show", str(unrecorded))
    assert refused.returncode == 1 and "a party's run folder after its record step" in refused.stderr


def test_the_record_holds_the_contributions_every_party_was_sent(launched):
    exported = isthmus("ledger", "export", str(launched / "certs" / "host"))
    assert exported.returncode == 0, exported.stderr
    ledger = json.loads(exported.stdout)
    assert ledger["owner"] == "host" and len(ledger["records"]) == 1
    record = ledger["records"][0]
    assert sorted(record["signatures"]) == PARTIES and record["body"]["job"] == "e2e-ledger"
    report = record["body"]["contributions"]
    for party in PARTIES:
        assert json.loads((launched / party / "contribution.json").read_text()) == report
    assert sorted(report["values"]) == ["guest", "host"] and sum(report["rewards"].values()) == pytest.approx(10)
    assert report["grand_value"] == record["body"]["parties"]["guest"]["metrics"]["auc"] > 0.9
    shown = isthmus("ledger", "show", str(launched / "certs" / "guest"))
    assert shown.returncode == 0 and "e2e-ledger" in shown.stdout and "3/3" in shown.stdout


def test_verify_fails_on_an_edited_copy(launched, tmp_path):
    certs = launched / "certs"
    copy = tmp_path / "guest" / "ledger.sqlite"
    copy.parent.mkdir()
    copy.write_bytes((certs / "guest" / "ledger.sqlite").read_bytes())
    tamper(copy, "UPDATE records SET body = replace(body, '\"job\":\"e2e-ledger\"', '\"job\":\"e2e-ledgeR\"')")
    result = isthmus("ledger", "verify", str(certs / "host"), str(copy), "--federation", str(certs / "federation.json"))
    assert result.returncode == 1
    assert "does not hash to the stored hash" in result.stdout and "does not hold it" in result.stdout
