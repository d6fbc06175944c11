"""End to end: hetero_nn as real party processes over gRPC with mutual TLS, through the CLI: PSI, the
protected interactive layer (1024-bit keys), joint evaluation and parity with PyTorch on pooled columns."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from isthmus.demos.vertical import make_vertical_data
from isthmus.jobs.local import loopback_parties, write_job

pytestmark = pytest.mark.e2e
pytest.importorskip("torch")

# tanh rather than relu in 4-unit layers, 10 epochs: with PSI's random row order the relu network sometimes
# lost units and missed parity by 0.02-0.03 (seen in 3 of 6 runs); tanh stayed within 0.007 in 6 of 6 (0.021 once since,
# when the pooled reference was the weaker side)
TRAIN = {"model": "hetero_nn", "bottom": {"guest": [4], "host": [4]}, "interactive_units": 4, "interactive_activation": "tanh", "top": [4, "tanh"],
         "epochs": 10, "batch_size": 64, "learning_rate": 0.05, "validation_fraction": 0.25, "key_bits": 1024}


def test_a_protected_split_network_matches_pytorch_on_pooled_columns(tmp_path):
    guest_csv, host_csv = make_vertical_data(tmp_path / "data")
    job = write_job(tmp_path / "job.yaml", {
        "job": "e2e-hetero-nn",
        "parties": loopback_parties({"guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}},
                                     "host": {"data": {"path": str(host_csv), "id": "id"}}}),
        "steps": [{"intersect": {}}, {"train": TRAIN}, {"evaluate": {}}]})
    result = subprocess.run([sys.executable, "-m", "isthmus", "parity", str(job), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "run" / "parity.json").read_text())
    assert report["model"] == "hetero_nn" and report["reference"] == "PyTorch on pooled columns"
    assert report["train_rows"] + report["evaluation_rows"] == 431
    # ~110 evaluation rows drawn by PSI's random row order, and tiny networks on both sides: either side's AUC
    # swings by up to 0.02 over runs (the pooled reference too: 0.973-0.997); benchmarks/hetero_nn.py holds 0.01
    assert report["federated"] > 0.95 and report["delta"] < 0.03, report
    guest = json.loads((tmp_path / "run" / "guest" / "model.json").read_text())
    host = json.loads((tmp_path / "run" / "host" / "model.json").read_text())
    assert np.shape(guest["interactive"]["host"]) == np.shape(host["noise_share"]) == (4, 4)
    assert "network" not in host and "bottom" not in guest  # each keeps only its own part
