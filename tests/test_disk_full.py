"""A party whose disk fills mid-job (here a file-size limit on its process, which cuts writes as a full disk
does): it stops naming the file it could not write, its peers end within seconds naming it, and every line
of its logs still parses. Before, it said "[Errno 27] File too large" without a file, its peers retried it
for their whole connect timeout (65 s) and then blamed its address, and its audit log ended in a torn line."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from isthmus.jobs.local import loopback_parties, write_job
from isthmus.transport.certs import create_federation


def limited(size: int):
    """What a new process runs first: its files may grow to ``size`` bytes, then a write is cut short."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def vertical_job(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = 300
    x = rng.normal(size=(rows, 4))
    y = (x.sum(axis=1) + rng.normal(size=rows) > 0).astype(int)
    lines = lambda columns: "\n".join(",".join(map(str, row)) for row in columns)  # noqa: E731
    (folder / "guest.csv").write_text("id,y,a,b\n" + lines(zip(range(rows), y, x[:, 0], x[:, 1])) + "\n")
    (folder / "host.csv").write_text("id,c,d\n" + lines(zip(range(rows), x[:, 2], x[:, 3])) + "\n")
    return write_job(folder / "job.yaml", {
        "job": "disk-full", "connect_timeout": 60,
        "parties": loopback_parties({"guest": {"data": {"path": str(folder / "guest.csv"), "id": "id", "label": "y"}},
                                     "host": {"data": {"path": str(folder / "host.csv"), "id": "id"}},
                                     "arbiter": {}}),
        "steps": ["intersect", {"train": {"model": "hetero_lr", "epochs": 3, "key_bits": 1024}}, "evaluate"]})


@pytest.mark.e2e
@pytest.mark.parametrize("limit", [6000, 9000])
def test_a_party_whose_disk_fills_names_the_file_and_its_peers_end_at_once(tmp_path, limit):
    """The host's audit log reaches 6,000 bytes in the intersection (here most often as the host sends, while
    the guest waits for it: the guest finds its process ended) and 9,000 in training (most often as the
    guest's message arrives: the host fails to take it, and says so to the guest)."""
    create_federation(tmp_path / "certs", ["guest", "host", "arbiter"])
    job = vertical_job(tmp_path)
    run = tmp_path / "run"

    def start(party: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "isthmus", "run", str(job), "--party", party, "--certs",
                                 str(tmp_path / "certs"), "--out", str(run)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, preexec_fn=limited(limit) if party == "host" else None)

    started = time.monotonic()
    parties = {party: start(party) for party in ("arbiter", "host", "guest")}
    errors = {party: process.communicate(timeout=120)[1] for party, process in parties.items()}
    assert time.monotonic() - started < 30, errors  # the peers' connect timeout is 60 s
    assert {party: process.returncode for party, process in parties.items()} == {"arbiter": 1, "host": 1, "guest": 1}

    assert f"File too large: {run / 'host'}" in errors["host"], errors["host"]  # names its own file
    assert "'host'" in errors["guest"] and "File too large" not in errors["guest"], errors["guest"]
    for log in (run / "host").glob("*.jsonl"):
        text = log.read_text()
        assert text.endswith("\n") and all(json.loads(line)["party"] == "host" for line in text.splitlines()), log
