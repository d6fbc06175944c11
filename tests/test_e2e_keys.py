"""The multi-machine flow end to end: three parties make their own keys in three folders, a CA in a
fourth signs their requests, each installs the answer, then each runs its side of a real job as its own
process over mutual TLS on loopback and the job is recorded on every party's ledger with those keys."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from isthmus.cli import app
from isthmus.jobs.peers import listening_peers
from isthmus.jobs.spec import load_job
from tests.vertical_job import LONG_TRAINING, vertical_job

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PARTIES = ["arbiter", "guest", "host"]


def isthmus(*args: str | Path) -> str:
    """The `isthmus` command in process (the key steps); returns its output, asserts it succeeded."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.stdout + result.stderr
    return result.stdout


def carry(files: list[Path], to: Path) -> list[Path]:
    """What travels between machines (by mail, a share, a USB stick): public files only."""
    to.mkdir(parents=True, exist_ok=True)
    for f in files:
        assert b"PRIVATE KEY" not in f.read_bytes(), f
    return [Path(shutil.copy(f, to / f.name)) for f in files]


def private_keys(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()}


@pytest.fixture(scope="module")
def federation(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("machines")
    machines = {party: root / party for party in PARTIES}
    ca = root / "ca"
    isthmus("ca", "init", ca)
    for party, machine in machines.items():
        isthmus("keys", "init", "--party", party, "--dir", machine / "certs")
        request, signing_pub = carry([machine / "certs" / party / "request.csr", machine / "certs" / party / "signing.pub"],
                                     ca / "inbox" / party)
        isthmus("ca", "sign", request, "--ca", ca, "--signing-key", signing_pub)
    for party, machine in machines.items():  # federation.json now pins all three: one copy for everyone
        cert, ca_pem, pins = carry([ca / "issued" / f"{party}.pem", ca / "ca.pem", ca / "federation.json"], machine / "inbox")
        isthmus("keys", "install", "--party", party, "--dir", machine / "certs", "--cert", cert, "--ca", ca_pem,
                "--federation", pins)
    return root


def test_each_folder_only_ever_holds_its_own_private_keys(federation):
    for party in PARTIES:
        assert private_keys(federation / party) == {f"certs/{party}/key.pem", f"certs/{party}/signing.key"}
    assert private_keys(federation / "ca") == {"ca.key"}


def test_a_job_runs_across_the_folders_and_every_ledger_records_it(federation):
    folder = federation.parent / "job"
    job = vertical_job(folder, "keys-e2e", [
        {"intersect": {}},
        {"train": {"model": "hetero_lr", "epochs": 2, "batch_size": 0, "learning_rate": 0.5,
                   "validation_fraction": 0.25, "key_bits": 1024, "precision": 6}},
        {"evaluate": {}}], record=True)
    processes = start_runs(job, PARTIES, federation, folder / "out")
    try:
        outputs = {party: process.communicate(timeout=240)[0] for party, process in processes.items()}
    finally:
        for process in processes.values():
            process.kill()
    for party, process in processes.items():
        assert process.returncode == 0, f"{party}: {outputs[party]}"
    auc = json.loads((folder / "out" / "guest" / "metrics.json").read_text())["metrics"]["auc"]
    assert auc > 0.9
    # Progress as it ran (it printed nothing until the end), then this party's evaluation
    assert "step=train model=0 epoch=2 epochs=2 loss=" in outputs["guest"] and "stage=blind peer set" in outputs["host"]
    assert f"{auc:.4f}" in outputs["guest"].split("finished; results in")[1], outputs["guest"]

    ledgers = [federation / party / "certs" / party / "ledger.sqlite" for party in PARTIES]
    verified = subprocess.run([sys.executable, "-m", "isthmus", "ledger", "verify", *map(str, ledgers),
                               "--federation", str(federation / "guest" / "certs" / "federation.json")],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "3 replica(s)" in verified.stdout and "replicas agree" in verified.stdout
    record = json.loads((folder / "out" / "host" / "ledger_record.json").read_text())
    assert sorted(record["signatures"]) == PARTIES and record["body"]["job"] == "keys-e2e"
    test_each_folder_only_ever_holds_its_own_private_keys(federation)


def start_runs(job: Path, parties: list[str], federation: Path, out: Path) -> dict[str, subprocess.Popen]:
    """`isthmus run` for each of ``parties``, each with its own keys, as its own process."""
    return {party: subprocess.Popen(
        [sys.executable, "-m", "isthmus", "run", str(job), "--party", party, "--certs", str(federation / party / "certs"),
         "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for party in parties}


def terminate_guest_once(processes: dict[str, subprocess.Popen], ready: Callable[[], bool], *, within: float,
                         then: float) -> tuple[dict[str, str], float]:
    """SIGTERM the guest once ``ready()`` holds (at most ``within`` seconds from now), then wait up to ``then``
    seconds for every party to end; returns their outputs and how long they took to end after the signal."""
    try:
        deadline = time.monotonic() + within
        while not ready():
            assert time.monotonic() < deadline and processes["guest"].poll() is None, "the moment never came"
            time.sleep(0.2)
        processes["guest"].terminate()
        signalled = time.monotonic()
        outputs = {party: process.communicate(timeout=then)[0] for party, process in processes.items()}
        return outputs, time.monotonic() - signalled
    finally:
        for process in processes.values():
            process.kill()


def test_sigterm_on_a_party_ends_the_job_everywhere_at_once(federation):
    """kill, systemd and schedulers stop with SIGTERM, which ended `isthmus run` at once: its peers waited out
    their connect timeout (60 s, then 119 s for the host). It now ends as Ctrl-C does, telling them."""
    folder = federation.parent / "sigterm"
    job = vertical_job(folder, "sigterm", [{"intersect": {}}, {"train": {**LONG_TRAINING, "learning_rate": 0.5}}])
    processes = start_runs(job, PARTIES, federation, folder / "out")
    events = folder / "out" / "guest" / "events.jsonl"
    outputs, ended = terminate_guest_once(
        processes, lambda: '"step": "train", "status": "running"' in (events.read_text() if events.exists() else ""),
        within=120, then=60)
    assert ended < 20
    assert processes["guest"].returncode == 130 and "party guest interrupted" in outputs["guest"], outputs["guest"]
    for party in ("host", "arbiter"):  # each told by the guest, or by the other one that heard first
        assert processes[party].returncode == 1 and "peer aborted the job" in outputs[party], outputs[party]
    assert any("step train was interrupted at guest" in outputs[party] for party in ("host", "arbiter")), outputs
    assert json.loads((folder / "out" / "guest" / "run.json").read_text())["status"] == "interrupted"


def test_sigterm_while_waiting_for_a_peer_tells_the_peers_already_there(federation):
    """Stopped while its peers were still starting, a party told nobody: the host, which had started, waited
    out the whole connect timeout for the arbiter and then blamed it. It now hears why at once; the party
    that is not listening yet is not tried (that would hold the stopped party for a connect timeout)."""
    folder = federation.parent / "sigterm-connect"
    job = vertical_job(folder, "sigterm-connect", [{"intersect": {}}, {"train": {"model": "hetero_lr", "epochs": 1}}],
                       connect_timeout=120)
    processes = start_runs(job, ["guest", "host"], federation, folder / "out")  # the arbiter never comes
    spec = load_job(job)
    outputs, ended = terminate_guest_once(processes, lambda: listening_peers(spec, "arbiter") == ["guest", "host"],
                                          within=60, then=150)
    assert ended < 20, outputs
    assert processes["guest"].returncode == 130 and "party guest interrupted" in outputs["guest"], outputs["guest"]
    assert processes["host"].returncode == 1, outputs["host"]
    assert "step connect was interrupted at guest" in outputs["host"], outputs["host"]

