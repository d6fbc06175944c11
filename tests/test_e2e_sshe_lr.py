"""End to end: hetero_lr_sshe as two real party processes over gRPC with mutual TLS, no arbiter, with parity."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from isthmus.demos.vertical import make_vertical_data
from isthmus.jobs.local import loopback_parties, write_job

pytestmark = pytest.mark.e2e


def test_guest_and_host_alone_match_the_pooled_model(tmp_path):
    guest_csv, host_csv = make_vertical_data(tmp_path / "data")
    job = write_job(tmp_path / "job.yaml", {
        "job": "e2e-sshe",
        "parties": loopback_parties({"guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}},
                                     "host": {"data": {"path": str(host_csv), "id": "id"}}}),
        "steps": [{"intersect": {"method": "ecdh"}},
                  {"train": {"model": "hetero_lr_sshe", "epochs": 2, "batch_size": 64, "learning_rate": 0.5,
                             "validation_fraction": 0.25, "key_bits": 1024}},
                  {"evaluate": {}}],
    })
    result = subprocess.run([sys.executable, "-m", "isthmus", "parity", str(job), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "run" / "parity.json").read_text())
    assert report["model"] == "hetero_lr_sshe" and report["metric"] == "auc"
    assert report["delta"] <= 0.005, report
    assert report["train_rows"] + report["evaluation_rows"] == 431
    guest = json.loads((tmp_path / "run" / "guest" / "model.json").read_text())
    host = json.loads((tmp_path / "run" / "host" / "model.json").read_text())
    assert len(guest["coef"]) == 11 and len(host["coef"]) == 20  # each party its own columns (+ intercept)
