"""End to end: hetero_lr_sshe as three real party processes (a guest and two hosts) over gRPC with mutual TLS,
no arbiter, with parity."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from isthmus.demos.vertical import make_vertical_data
from isthmus.jobs.local import loopback_parties, write_job

pytestmark = pytest.mark.e2e


def test_a_guest_and_two_hosts_alone_match_the_pooled_model(tmp_path):
    guest_csv, host_csv = make_vertical_data(tmp_path / "data")
    host = pd.read_csv(host_csv)  # the host's 20 columns split between two hosts, each with all its rows' ids
    hosts = {}
    for name, columns in (("host-a", host.columns[1:11]), ("host-b", host.columns[11:])):
        hosts[name] = tmp_path / "data" / f"{name}.csv"
        host[["id", *columns]].to_csv(hosts[name], index=False)
    job = write_job(tmp_path / "job.yaml", {
        "job": "e2e-sshe",
        "parties": loopback_parties({"guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}},
                                     **{name: {"role": "host", "data": {"path": str(path), "id": "id"}}
                                        for name, path in hosts.items()}}),
        "steps": [{"intersect": {"method": "ecdh"}},
                  {"train": {"model": "hetero_lr_sshe", "epochs": 5, "batch_size": 64, "learning_rate": 0.5,
                             "validation_fraction": 0.25, "key_bits": 1024}},
                  {"evaluate": {}}],
    })
    result = subprocess.run([sys.executable, "-m", "isthmus", "parity", str(job), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "run" / "parity.json").read_text())
    assert report["model"] == "hetero_lr_sshe" and report["metric"] == "auc"
    # ~110 evaluation rows drawn by PSI's random row order: one run swings by a few thousandths (seen up to
    # 0.006); the 0.002 target is held in-process on a fixed order (test_sshe_lr.py) and by the benchmark
    assert report["delta"] <= 0.01, report
    assert report["train_rows"] + report["evaluation_rows"] == 431
    guest = json.loads((tmp_path / "run" / "guest" / "model.json").read_text())
    parts = {name: json.loads((tmp_path / "run" / name / "model.json").read_text()) for name in hosts}
    # each party its own columns (+ the guest's intercept)
    assert len(guest["coef"]) == 11 and [len(part["coef"]) for part in parts.values()] == [10, 10]
