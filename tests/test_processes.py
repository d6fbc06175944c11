"""Processes forked from the fork server: the environment of their start, none of the starter's state."""

from __future__ import annotations

import json
import os
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
