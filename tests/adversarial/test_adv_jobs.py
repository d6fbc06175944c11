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
import time
from pathlib import Path

import pandas as pd
import pytest

from isthmus.errors import ConfigError
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.jobs.spec import load_job
from isthmus.yaml_files import MAX_DEPTH

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
@pytest.mark.slow
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


# --- job files -----------------------------------------------------------------------------------

JOB = """\
job: credit-risk
parties:
  guest:   {address: 127.0.0.1:7001, data: {path: guest.csv, id: id, label: y}}
  host:    {address: 127.0.0.1:7002, data: {path: host.csv, id: id}}
  arbiter: {address: 127.0.0.1:7003}
steps:
  - intersect: {}
"""


def job_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_reference_job_loads(tmp_path):
    assert sorted(load_job(job_file(tmp_path, JOB)).parties) == ["arbiter", "guest", "host"]


@pytest.mark.parametrize("field, value", [
    ("party name", '"arbiter\\n": {role: arbiter, address: 127.0.0.1:7003}'),
    ("address", 'arbiter: {address: "127.0.0.1:7003\\n"}'),
    ("address", 'arbiter: {address: "127.0.0.1:70030"}'),
    ("address", 'arbiter: {address: "127.0.0.1:\\u0667\\u0660\\u0660\\u0663"}'),  # Arabic-Indic digits
    ("role", 'arbiter: {role: "arbiter\\n", address: 127.0.0.1:7003}'),
    ("job name", None),
])
def test_names_addresses_and_roles_must_match_whole(tmp_path, field, value):
    if value is None:
        text = JOB.replace("job: credit-risk", 'job: "credit-risk\\n"')
    else:
        text = JOB.replace("arbiter: {address: 127.0.0.1:7003}", value)
    with pytest.raises(ConfigError, match=field):
        load_job(job_file(tmp_path, text))


@pytest.mark.parametrize("text, line, why", [
    (JOB.replace("  arbiter: {address: 127.0.0.1:7003}",
                 "  arbiter: {address: 127.0.0.1:7003}\n  host: {address: 127.0.0.1:7009}"), 6, "'host' appears twice"),
    (JOB.replace("data: {path: host.csv, id: id}", "data: {path: host.csv, id: id, path: /etc/x.csv}"), 4,
     "'path' appears twice (first on line 4)"),
    (JOB.replace("job: credit-risk", "job: credit-risk\njob: other"), 2, "'job' appears twice (first on line 1)"),
])
def test_duplicate_keys_are_refused_naming_the_line(tmp_path, text, line, why):
    with pytest.raises(ConfigError, match=rf"job file .*job\.yaml, line {line}, column \d+: key {re.escape(why)}"):
        load_job(job_file(tmp_path, text))


def test_anchors_and_aliases_are_refused(tmp_path):
    text = JOB.replace("data: {path: guest.csv, id: id, label: y}", "data: &d {path: guest.csv, id: id, label: y}")
    with pytest.raises(ConfigError, match=r"line 3, column \d+: anchors and aliases"):
        load_job(job_file(tmp_path, text))


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    """Nine levels of nine aliases: 9**9 strings once expanded (safe_load then str() took 49 s and all memory)."""
    levels = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 9)]
    text = "\n".join(levels) + JOB.replace("job: credit-risk", "\njob: *a8")
    assert len(text.encode()) < 1000
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"line 1, column \d+: anchors and aliases"):
        load_job(job_file(tmp_path, text))
    assert time.monotonic() - started < 5


def test_deep_nesting_is_refused(tmp_path):
    text = JOB + "deep: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    with pytest.raises(ConfigError, match="nested more than"):
        load_job(job_file(tmp_path, text))


def test_the_query_configuration_uses_the_same_loader(tmp_path):
    from isthmus.query.config import load_config

    path = tmp_path / "query.yaml"
    path.write_text("consortium: c\naggregator: {name: agg, address: 127.0.0.1:1}\n"
                    "institutions: {bank-a: 127.0.0.1:2, bank-a: 127.0.0.1:3}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"query configuration .*line 3, column \d+: key 'bank-a' appears twice"):
        load_config(path)
