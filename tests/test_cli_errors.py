"""Every `isthmus` subcommand, given the mistakes people make, as a real process: a non-zero exit and one
clear line on stderr (or click's usage box for a typo), never a traceback nor an internal function's name."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from isthmus.jobs.local import loopback_parties, write_job
from isthmus.jobs.rundir import locked, party_folder
from isthmus.transport.certs import create_federation

USAGE, ERROR = 2, 1


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    """A folder with a good job, a bad one, certificates, and folders already in use."""
    root = tmp_path_factory.mktemp("cli")
    write_job(root / "job.yaml", {"job": "j", "parties": loopback_parties({"guest": {}, "host": {}, "arbiter": {}}),
                                  "steps": [{"selftest": {"key_bits": 1024}}]})
    write_job(root / "typo-step.yaml", {"job": "j", "parties": {"guest": {"address": "127.0.0.1:7001"}},
                                        "steps": ["trian"]})
    write_job(root / "no-evaluate.yaml", {
        "job": "j", "parties": loopback_parties({"guest": {"data": {"path": "g.csv", "id": "id", "label": "y"}},
                                                 "host": {"data": {"path": "h.csv", "id": "id"}}, "arbiter": {}}),
        "steps": ["intersect", {"train": {"model": "hetero_lr"}}]})
    (root / "bad.yaml").write_text("job: j\nparties:\n  guest: {address: 127.0.0.1:1\n")
    (root / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (root / "notes.txt").write_text("not a folder")
    create_federation(root / "certs", ["arbiter", "guest", "host"])
    (root / "mine" / "vertical").mkdir(parents=True)
    (root / "mine" / "vertical" / "thesis.tex").write_text("years of work")
    (root / "mine" / "query").mkdir()
    (root / "mine" / "query" / "thesis.tex").write_text("years of work")
    with party_folder(root / "used" / "guest", job="j", party="guest", role="guest"):
        pass
    return root


CASES = {
    # typos: click's usage box
    "a subcommand typo": (USAGE, ["lanch", "job.yaml"]),
    "an option typo": (USAGE, ["launch", "job.yaml", "--ouy", "x"]),
    "a demo typo": (USAGE, ["demo", "vertial"]),
    "a ledger typo": (USAGE, ["ledger", "shw", "certs"]),
    "a query typo": (USAGE, ["query", "aks"]),
    "a missing job file": (USAGE, ["launch", "nope.yaml"]),
    "a missing data file": (USAGE, ["run", "job.yaml", "--party", "guest", "--certs", "certs", "--data", "nope.csv"]),
    "a missing query configuration": (USAGE, ["query", "ask", "--config", "nope.yaml", "--party", "bank1", "x"]),
    "a missing ledger": (USAGE, ["ledger", "show", "nope"]),
    # one line
    "bad YAML (launch)": (ERROR, ["launch", "bad.yaml"]),
    "bad YAML (parity)": (ERROR, ["parity", "bad.yaml"]),
    "parity without an evaluate step": (ERROR, ["parity", "no-evaluate.yaml", "--out", "out-parity"]),
    "bad YAML (run)": (ERROR, ["run", "bad.yaml", "--party", "guest", "--certs", "certs"]),
    "a binary job file": (ERROR, ["launch", "binary.yaml"]),
    "bad YAML (query)": (ERROR, ["query", "ask", "--config", "bad.yaml", "--party", "bank1", "x"]),
    "a step typo": (ERROR, ["launch", "typo-step.yaml", "--out", "out-typo"]),
    "an unknown party": (ERROR, ["run", "job.yaml", "--party", "gust", "--certs", "certs"]),
    "missing certificates": (ERROR, ["run", "job.yaml", "--party", "guest", "--certs", "nocerts"]),
    "the party's own folder as --certs": (ERROR, ["run", "job.yaml", "--party", "guest", "--certs", "certs/guest"]),
    "a party's earlier run": (ERROR, ["run", "job.yaml", "--party", "guest", "--certs", "certs", "--out", "used"]),
    "--data for a party without data": (ERROR, ["run", "job.yaml", "--party", "guest", "--certs", "certs",
                                                "--data", "notes.txt", "--out", "fresh"]),
    "a file as --out (launch)": (ERROR, ["launch", "job.yaml", "--out", "notes.txt"]),
    "a file as --out (selftest)": (ERROR, ["selftest", "--out", "notes.txt"]),
    "someone's folder (launch)": (ERROR, ["launch", "job.yaml", "--out", "mine/vertical"]),
    "someone's folder (demo)": (ERROR, ["demo", "--out", "mine", "vertical"]),
    "someone's folder (demo query)": (ERROR, ["demo", "--out", "mine", "query"]),
    "a folder in use": (ERROR, ["launch", "job.yaml", "--out", "in-use"]),
    "certificates made twice": (ERROR, ["certs", "certs", "arbiter", "guest", "host"]),
    "a party name a certificate cannot hold": (ERROR, ["certs", "new-certs", "Guest"]),
    "no ledger in a folder": (ERROR, ["ledger", "show", "mine"]),
    "a file that is no ledger": (ERROR, ["ledger", "export", "notes.txt"]),
    "no query service": (ERROR, ["query", "status", "--party", "bank1", "--state-dir", "mine"]),
    "no node there (its address as node.yaml writes it)": (ERROR, ["job", "list", "--node", "127.0.0.1:1"]),
}


@pytest.fixture(scope="module")
def results(place) -> dict[str, subprocess.CompletedProcess]:
    """Every case's process, a few at a time (each mostly waits for Python to start)."""
    def run(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "isthmus", *args], cwd=place, capture_output=True, text=True,
                              timeout=180)

    with locked(place / "in-use"), ThreadPoolExecutor(4) as pool:  # as a launch running there holds it
        return dict(zip(CASES, pool.map(run, [args for _, args in CASES.values()])))


@pytest.mark.parametrize("case", CASES)
def test_a_user_error_is_one_clear_line(results, case):
    code, _ = CASES[case]
    result = results[case]
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "issue_party_certificate" not in result.stderr
    if code == USAGE:
        assert "Usage: isthmus" in result.stderr and "Error" in result.stderr
    else:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) > 30, result.stderr


def test_what_the_user_must_do_is_said(place, results):
    assert "pass --force to replace it, or choose another --out" in results["a party's earlier run"].stderr
    assert "line 4, column 1" in results["bad YAML (launch)"].stderr
    assert "has no party 'gust' (did you mean 'guest'?)" in results["an unknown party"].stderr
    assert "certs/guest is the folder of party 'guest' itself; give the one that holds it and ca.pem: certs" in \
        results["the party's own folder as --certs"].stderr
    assert "unknown step 'trian' (did you mean 'train'?)" in results["a step typo"].stderr
    # it ran the whole job and then failed on a missing predictions.csv
    assert "parity needs a job with a train step and an evaluate step" in results["parity without an evaluate step"].stderr
    assert not (place / "out-parity").exists()
    assert "in use by another isthmus process" in results["a folder in use"].stderr
    assert "choose another folder" in results["certificates made twice"].stderr
    assert "did not write (thesis.tex)" in results["someone's folder (demo)"].stderr
    assert (place / "mine" / "vertical" / "thesis.tex").read_text() == "years of work"
    assert "cannot reach the node at http://127.0.0.1:1: [Errno 111] Connection refused" in \
        results["no node there (its address as node.yaml writes it)"].stderr
