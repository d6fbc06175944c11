"""End to end: a softmax hetero_lr_sshe model (no arbiter) as real party processes over gRPC with mutual TLS,
through `isthmus parity`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from isthmus.jobs.local import loopback_parties, write_job
from test_e2e_softmax import DIGITS, GUEST_PIXELS, HOST_PIXELS, digits_files
from test_e2e_vertical import isthmus

pytestmark = pytest.mark.e2e

#: 120 training rows: every row costs ~90 products of shared values per epoch at four classes
ROWS = 160


def test_sshe_softmax_parity_between_processes(tmp_path):
    guest_csv, host_csv = digits_files(tmp_path / "data", ROWS)
    job = write_job(tmp_path / "job.yaml", {
        "job": "e2e-sshe-softmax",
        "parties": loopback_parties({"guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}},
                                     "host": {"data": {"path": str(host_csv), "id": "id"}}}),
        "steps": [{"intersect": {"method": "ecdh"}},
                  {"train": {"model": "hetero_lr_sshe", "epochs": 2, "batch_size": 30, "learning_rate": 1.0,
                             "validation_fraction": 0.25, "key_bits": 1024}},
                  {"evaluate": {}}],
    })
    result = isthmus("parity", str(job), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "run" / "parity.json").read_text())
    assert report["model"] == "hetero_lr_sshe" and report["metric"] == "accuracy" and report["evaluation_rows"] == 40
    # 40 held-out rows drawn by the PSI's random order, one row 0.025: on the float64 twin over 8 row orders
    # the gap was 0 on 6 and one row on 2 (tests/test_sshe_softmax.py holds the 0.01 target on fixed rows).
    # At most two rows (0.05), counted as rows: as floats, 1.0 - 0.95 is above 0.05
    assert round(report["delta"] * report["evaluation_rows"]) <= 2, report
    guest = json.loads((tmp_path / "run" / "guest" / "model.json").read_text())
    host = json.loads((tmp_path / "run" / "host" / "model.json").read_text())
    assert guest["task"] == "multiclass" and guest["classes"] == DIGITS
    # one multinomial model: a weight column per class at every party
    assert np.shape(guest["coef"]) == (len(GUEST_PIXELS) + 1, 4) and np.shape(host["coef"]) == (len(HOST_PIXELS), 4)
