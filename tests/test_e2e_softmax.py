"""End to end: softmax hetero_lr as real party processes over gRPC with mutual TLS, through `isthmus parity`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from test_e2e_vertical import isthmus, vertical_job

pytestmark = pytest.mark.e2e

#: Four digits that look alike (3, 5, 8, 9), 400 images; 8 pixels from the upper middle for the guest,
#: 8 from the lower middle for the host: a task the pooled model gets 96-99% right, not 100%.
DIGITS, ROWS = [3, 5, 8, 9], 400
GUEST_PIXELS, HOST_PIXELS = [18, 19, 20, 21, 26, 27, 28, 29], [34, 35, 36, 37, 42, 43, 44, 45]


def digits_files(folder, rows: int = ROWS):
    X, y = load_digits(return_X_y=True)
    keep = np.flatnonzero(np.isin(y, DIGITS))[:rows]
    ids = [f"img-{i:04d}" for i in keep]
    folder.mkdir(parents=True)
    guest = pd.DataFrame(X[keep][:, GUEST_PIXELS], columns=[f"p{i}" for i in GUEST_PIXELS]).assign(id=ids, y=y[keep])
    host = pd.DataFrame(X[keep][:, HOST_PIXELS], columns=[f"p{i}" for i in HOST_PIXELS]).assign(id=ids)
    guest.to_csv(folder / "guest.csv", index=False)
    host.sample(frac=1.0, random_state=1).to_csv(folder / "host.csv", index=False)  # another row order
    return folder / "guest.csv", folder / "host.csv"


def test_softmax_parity_between_processes(tmp_path):
    guest_csv, host_csv = digits_files(tmp_path / "data")
    # precision 6: the 300 training rows make one safe batch (14 x 8 features x 1.5 for four classes); few
    # full-batch epochs, so plain SGD with a large step (in-process over 20 row orders: within 0.01 of the
    # pooled model on 19, 0.02 on one)
    train = {"model": "hetero_lr", "residual": "sigmoid", "optimizer": "sgd", "learning_rate": 4.0, "epochs": 12,
             "batch_size": 0, "tol": 0.0, "validation_fraction": 0.25, "key_bits": 1024, "precision": 6}
    job = vertical_job(tmp_path, guest_data={"path": str(guest_csv), "id": "id", "label": "y"},
                       host_data={"path": str(host_csv), "id": "id"}, train=train)
    result = isthmus("parity", str(job), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "run" / "parity.json").read_text())
    assert report["metric"] == "accuracy" and report["evaluation_rows"] == 100
    # 100 held-out rows drawn by the PSI's random order, one row 0.01: over 20 row orders in-process the gap
    # was 0.01 or less on 19 and 0.02 on one, so 0.03 leaves a row of slack (tests/test_hetero_softmax.py
    # holds the 0.01 target on fixed rows)
    assert report["delta"] <= 0.03, report
    assert report["federated"] >= 0.9
    guest = json.loads((tmp_path / "run" / "guest" / "model.json").read_text())
    host = json.loads((tmp_path / "run" / "host" / "model.json").read_text())
    assert guest["task"] == "multiclass" and guest["classes"] == DIGITS
    # one multinomial model: a weight column per class at every party
    assert np.shape(guest["coef"]) == (len(GUEST_PIXELS) + 1, 4) and np.shape(host["coef"]) == (len(HOST_PIXELS), 4)
