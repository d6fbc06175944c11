"""Processes forked from the fork server: the environment of their start, none of the starter's state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from isthmus.crypto import parallel
from isthmus.processes import fresh_process

STATE = "as imported"


def _report(path: Path) -> None:
    path.write_text(json.dumps({"mark": os.environ.get("ISTHMUS_TEST_MARK"), "state": STATE,
                                "workers": parallel.workers()}))


def _run(path: Path) -> dict:
    process = fresh_process(_report, (path,), name="isthmus-test")
    process.start()
    process.join(60)
    assert process.exitcode == 0
    return json.loads(path.read_text())


def test_a_fresh_process_gets_the_environment_of_its_start_and_none_of_this_processs_state(tmp_path, monkeypatch):
    global STATE
    monkeypatch.setenv("ISTHMUS_TEST_MARK", "first")
    assert _run(tmp_path / "first.json")["mark"] == "first"  # the fork server runs from here on
    monkeypatch.setenv("ISTHMUS_TEST_MARK", "second")
    monkeypatch.setenv("ISTHMUS_CRYPTO_WORKERS", "3")
    STATE = "changed here"
    try:
        second = _run(tmp_path / "second.json")
    finally:
        STATE = "as imported"
    assert second == {"mark": "second", "state": "as imported", "workers": 3}


def test_the_crypto_worker_count_follows_the_environment_until_configured(monkeypatch):
    monkeypatch.setattr(parallel, "_workers", None)
    monkeypatch.setenv("ISTHMUS_CRYPTO_WORKERS", "5")
    assert parallel.workers() == 5
    monkeypatch.delenv("ISTHMUS_CRYPTO_WORKERS")
    assert parallel.workers() == (os.cpu_count() or 1)
    parallel.configure(1)
    monkeypatch.setenv("ISTHMUS_CRYPTO_WORKERS", "5")
    assert parallel.workers() == 1


# A party that keeps its worker pools busy: it prints their pids, then waits to be killed.
_OWNER = """
import os, sys, time
from isthmus.crypto import parallel
from isthmus.crypto.batchpool import BatchPool
if __name__ == "__main__":
    parallel.configure(2)
    loky = parallel.in_processes(os.getpid, [(), (), (), ()])
    with BatchPool(2) as pool:
        forked = [pool.submit(os.getpid).result() for _ in range(4)]
        pool.submit(time.sleep, 120)
        print(" ".join(map(str, set(loky) | set(forked))), flush=True)
        time.sleep(120)
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (an orphan's zombie, which the container's init may never reap, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_crypto_workers_end_with_a_party_killed_outright(tmp_path):
    """A node cancels a job with SIGKILL: the party's loky and fork-server workers stayed, idle, for hours."""
    script = tmp_path / "owner.py"
    script.write_text(_OWNER)
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in owner.stdout.readline().split()]
        assert len(workers) >= 2 and all(_running(pid) for pid in workers)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 20
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in workers if _running(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers outlived their party: {left}"
