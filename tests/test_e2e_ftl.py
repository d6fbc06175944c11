"""End to end: a transfer-learning job as real guest and host processes over gRPC with mutual TLS.

PSI keeps all rows (``keep_all_rows``), hetero_ftl trains with both parties' Paillier keys, and the
host labels its rows the guest never had: predictions.csv exists at the host only and is good.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ftl_helpers import QUICK
from isthmus.demos.ftl_data import write_ftl_data
from isthmus.jobs.local import loopback_parties, write_job

pytestmark = pytest.mark.e2e


def test_a_transfer_learning_job_labels_the_hosts_new_rows_at_the_host_only(tmp_path):
    guest_csv, host_csv, truth_csv = write_ftl_data(tmp_path / "data", guest_rows=300, host_rows=260, overlap=60)
    job = write_job(tmp_path / "job.yaml", {
        "job": "e2e-ftl",
        "parties": loopback_parties({"guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}},
                                     "host": {"data": {"path": str(host_csv), "id": "id"}}}),
        "steps": [{"intersect": {"keep_all_rows": True}}, {"train": {"model": "hetero_ftl", **QUICK}}]})
    run = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "isthmus", "launch", str(job), "--out", str(run)],
                            capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    predictions = pd.read_csv(run / "host" / "predictions.csv", dtype={"id": str}).merge(
        pd.read_csv(truth_csv, dtype={"id": str}), on="id")
    assert len(predictions) == 200 and roc_auc_score(predictions.y, predictions.score) > 0.85
    assert not (run / "guest" / "predictions.csv").exists()
    guest_model = json.loads((run / "guest" / "model.json").read_text())
    assert guest_model["model"] == "hetero_ftl" and len(guest_model["phi"]) == QUICK["representation"]
    assert json.loads((run / "host" / "model.json").read_text())["labelled_rows"] == 200
    # each is told what the other learns of its own data, and only that
    guest_events, host_events = ((run / party / "events.jsonl").read_text() for party in ("guest", "host"))
    assert "the hosts learn your labels: hetero_ftl:" in guest_events and "summary of your columns" not in guest_events
    assert "the guest learns a summary of your columns: hetero_ftl:" in host_events and "your labels" not in host_events


def test_a_plaintext_transfer_job_is_refused_at_load_without_the_benchmark_switch(tmp_path):
    guest_csv, host_csv, _ = write_ftl_data(tmp_path / "data", guest_rows=100, host_rows=100, overlap=30)
    job = write_job(tmp_path / "job.yaml", {
        "job": "e2e-ftl-plain",
        "parties": loopback_parties({"guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}},
                                     "host": {"data": {"path": str(host_csv), "id": "id"}}}),
        "steps": [{"intersect": {"keep_all_rows": True}}, {"train": {"model": "hetero_ftl", "protection": "plain"}}]})
    result = subprocess.run([sys.executable, "-m", "isthmus", "launch", str(job), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0 and "benchmark_only_plaintext" in result.stdout + result.stderr
