"""`isthmus launch` stopped from outside (Ctrl-C, SIGTERM from kill or a scheduler, SIGKILL) stops its parties.

SIGTERM ended the launch alone: its three party processes trained on, unwatched, for as long as the job took,
and every run.json (the launch's too) said "running". Ctrl-C killed them at once, their runs marked "failed"
for a reason that was not the one ("had not ended within 15 s of another party's failure").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from isthmus.processes import alive
from tests.vertical_job import LONG_TRAINING, vertical_job

PARTIES = ("arbiter", "guest", "host")


@pytest.fixture
def training(tmp_path: Path):
    """A launch of a long vertical training, returned once every party is training."""
    job = vertical_job(tmp_path, "stopped", [{"intersect": {}}, {"train": LONG_TRAINING}])
    out = tmp_path / "out"
    launch = subprocess.Popen([sys.executable, "-m", "isthmus", "launch", str(job), "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not all(_training(out / party) for party in PARTIES):
            assert time.monotonic() < deadline and launch.poll() is None, \
                f"the parties never all trained: {launch.stdout.read() if launch.poll() is not None else ''}"
            time.sleep(0.2)
        yield launch, out
    finally:
        launch.kill()
        for party in PARTIES:
            pid = _marker(out / party).get("pid")
            if pid and alive(pid):
                os.kill(pid, signal.SIGKILL)


def _training(run_dir: Path) -> bool:
    events = run_dir / "events.jsonl"
    return events.exists() and '"step": "train", "status": "running"' in events.read_text()


def _marker(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _all_ended(out: Path, within: float) -> bool:
    deadline = time.monotonic() + within
    while any(alive(_marker(out / party)["pid"]) for party in PARTIES):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_launch_stopped_by_a_signal_stops_its_parties_and_says_why(training, signum):
    launch, out = training
    launch.send_signal(signum)
    output = launch.communicate(timeout=60)[0]
    assert launch.returncode == 130 and "interrupted: every party was stopped" in output, output
    assert _all_ended(out, within=5)
    name = signal.Signals(signum).name
    for party in PARTIES:  # a party told by a peer that stopped first ends as told
        marker = _marker(out / party)
        assert (marker["status"], marker["error"]) == (
            "interrupted", f"stopped by `isthmus launch`, itself interrupted ({name})") or (
            marker["status"] == "failed" and "was interrupted at" in marker["error"]), marker
    launched = json.loads((out / "launch.json").read_text())
    assert (launched["status"], launched["error"]) == ("interrupted", name)


def test_the_parties_of_a_killed_launch_stop_themselves(training):
    """SIGKILL (the OOM killer) leaves the launch no time: each party notices its launcher is gone."""
    launch, out = training
    launch.kill()
    launch.wait(timeout=10)
    assert _all_ended(out, within=30)
    for party in PARTIES:
        marker = _marker(out / party)
        assert marker["status"] == "interrupted" or "was interrupted at" in marker.get("error", ""), marker


def test_a_demo_stopped_by_sigterm_says_so(tmp_path):
    """A demo stopped its parties, as a launch does, but ended without a word."""
    demo = subprocess.Popen([sys.executable, "-m", "isthmus", "demo", "--out", str(tmp_path), "--key-bits", "1024"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = tmp_path / "vertical" / "run"
        deadline = time.monotonic() + 60
        while not (out / "launch.json").exists():
            assert time.monotonic() < deadline and demo.poll() is None, "the demo never launched its parties"
            time.sleep(0.1)
        demo.send_signal(signal.SIGTERM)
        output = demo.communicate(timeout=60)[0]
    finally:
        demo.kill()
    assert demo.returncode == 130, output
    assert f"interrupted: every party was stopped, and each of its runs in {tmp_path / 'vertical'} says so" in output
    assert json.loads((out / "launch.json").read_text())["status"] == "interrupted"
