"""A node whose store cannot be written (its disk is full): the error names the store, the API says so, and a job
that ends meanwhile is recorded once there is room. Before, the thread reporting the job's end died with
SQLite's error: the job read "running" at that node for the node's life, and its peers were never told."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import yaml

from isthmus.node import runner as runner_module
from isthmus.node.runner import ProcessRunner
from isthmus.node.store import Store, StoreError
from tests.board_helpers import board, job_cli
from tests.node_helpers import federation, local_nodes, proposal

JOB = "0123456789abcdef"
WHY = "step train: party 'guest' cannot write its audit log: No space left on device: " + "/data/run/audit.jsonl " * 200


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "node.sqlite")
    store.add_job(JOB, "credit", "host", "d" * 64, {"job": "credit"}, "running")
    return store


def fill(store: Store) -> None:
    """No page more for the database, and no room left in its pages: SQLite answers "database or disk is full"
    to any write that adds a byte, as on a full disk."""
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    for size in (4096, 256, 16, 1):
        try:
            while True:
                store._db.execute("INSERT INTO events (job, time, event) VALUES ('filler', 0, ?)", ("x" * size,))
        except sqlite3.OperationalError:
            pass


def make_room(store: Store) -> None:
    store._db.execute("PRAGMA max_page_count = 1073741823")


def test_a_full_store_is_named(store, tmp_path):
    fill(store)
    with pytest.raises(StoreError, match=f"node store {tmp_path / 'node.sqlite'}: database or disk is full"):
        store.set_status(JOB, "failed", WHY)
    assert store.job(JOB)["status"] == "running"  # reading still works


def test_a_job_that_ends_while_the_store_is_full_is_recorded_once_there_is_room(store, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(runner_module, "REPORT_RETRY_S", 0.05)
    reports: list[str] = []

    def job_done(job_id: str, status: str, reason: str | None) -> None:  # what the coordinator records first
        reports.append(status)
        store.set_status(job_id, status, reason)

    runner = ProcessRunner("guest", tmp_path, tmp_path / "keys", "127.0.0.1", on_done=job_done)
    fill(store)
    caplog.set_level(logging.INFO, logger="isthmus.node.runner")
    reporting = threading.Thread(target=runner._report, args=(JOB, "failed", WHY))
    reporting.start()
    time.sleep(0.5)
    assert reporting.is_alive() and store.job(JOB)["status"] == "running" and len(reports) > 3
    make_room(store)
    reporting.join(timeout=5)
    assert not reporting.is_alive()
    assert (store.job(JOB)["status"], store.job(JOB)["reason"]) == ("failed", WHY)
    said = [record.getMessage() for record in caplog.records]
    assert len(said) == 2, said  # one line while it waits, one when it is done: not one per attempt
    assert "job 0123456789abcdef failed, and the node cannot record it yet (node store" in said[0]
    assert said[1].endswith("recorded at last")


def test_the_cli_says_the_store_is_full(tmp_path, monkeypatch):
    """`isthmus job submit` at a node whose disk is full: the node's words, not "Internal Server Error"."""
    nodes = local_nodes(federation(tmp_path))
    try:
        host = nodes.coordinators["host"]
        fill(host.store)
        job = tmp_path / "credit.yaml"
        job.write_text(yaml.safe_dump(proposal()))
        result = job_cli(nodes, "host", monkeypatch)("submit", str(job))
    finally:
        nodes.stop()
    assert result.exit_code == 1
    assert f"node store {host.store.path}: database or disk is full" in result.output, result.output
    assert board(host).get("/v1/jobs").status_code == 200  # reading still works


def test_a_job_whose_end_went_unrecorded_keeps_its_own_failure_across_a_restart(tmp_path):
    """The node was restarted before its store had room again: the job's failure, as its process wrote it, is
    what the store records, not only "the node restarted while this job ran"."""
    from isthmus.jobs.events import EventLog
    from isthmus.node.config import load_node_config
    from isthmus.node.runner import job_folder
    from isthmus.node.service import _started

    config = load_node_config(federation(tmp_path)["guest"])
    store = Store(config.store / "node.sqlite")
    store.add_job(JOB, "credit", "host", "d" * 64, {"id": JOB, "proposer": "host", "job": proposal()}, "running")
    store.close()
    run = job_folder(config.store, JOB) / "run"
    run.mkdir(parents=True)
    EventLog(run, "guest").emit(step="train", status="failed", error="party 'guest' cannot write its audit log")
    with _started(config) as coordinator:
        assert coordinator.store.job(JOB)["reason"] == "step train: party 'guest' cannot write its audit log"
