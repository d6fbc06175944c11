"""`isthmus demo` / `isthmus demo vertical`: the white paper's figure on scikit-learn's breast cancer data.

A bank-like guest holds the label and 10 columns, an e-commerce-like host the other 20, for
overlapping but different customers. They align privately (ECDH PSI), train vertical logistic
regression with an arbiter over mutual TLS (the default, exact residual), evaluate on a quarter of the
shared rows held out, and compare with scikit-learn trained on the pooled columns of the same training
rows and evaluated on the same held-out rows (the held-out rows differ from run to run; the deltas
printed are below, at DEMO_TRAIN).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from isthmus.demos.folder import demo_folder
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.jobs.parity import parity_summary, run_parity


#: ~320 training rows and a host of 20 columns: one batch per epoch, and features at 6 fractional bits,
#: so that a batch has the rows per host column that keep the host from solving its gradient for the
#: labels (protocols/hetero_linear/batches.py; 16 bits would need 480 rows). 20 full-batch steps at 1.0
#: come as close to scikit-learn's optimum as the AUC on 108 rows can tell, in half the time of 40 at 0.5
#: (delta over runs, 1024-bit keys: 20 at 0.15 0.0012 to 0.0068 over four; 40 at 0.5 0.0000 to 0.0025
#: over seven; 20 at 1.0 0.0000 to 0.0036 over eight, mean 0.0013, its training loss falling every step).
#: Nineteen runs later (9 at 2048 bits, 10 at 1024): 0.0000 to 0.0015, and once 0.0107, the federated model
#: above scikit-learn's on that run's held-out rows (0.9982 against 0.9875).
DEMO_TRAIN = {"model": "hetero_lr", "epochs": 20, "batch_size": 0, "learning_rate": 1.0, "optimizer": "sgd",
              "penalty": "l2", "alpha": 0.01, "validation_fraction": 0.25, "precision": 6}


def make_vertical_data(folder: Path, *, seed: int = 7) -> tuple[Path, Path]:
    """Split breast cancer vertically; 80% of each party's customers are shared with the other."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    ids = np.array([f"cust-{i:05d}" for i in range(len(data.target))])
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    guest_rows, host_rows = order[:500], order[69:]  # 431 shared customers
    folder.mkdir(parents=True, exist_ok=True)
    guest = pd.DataFrame(data.data[guest_rows, :10], columns=names[:10])
    guest.insert(0, "y", data.target[guest_rows])
    guest.insert(0, "id", ids[guest_rows])
    host = pd.DataFrame(data.data[host_rows, 10:], columns=names[10:])
    host.insert(0, "id", ids[host_rows])
    guest_path, host_path = folder / "guest.csv", folder / "host.csv"
    guest.sample(frac=1, random_state=seed).to_csv(guest_path, index=False)
    host.sample(frac=1, random_state=seed + 1).to_csv(host_path, index=False)
    return guest_path, host_path


def run_vertical_demo(out_dir: Path, *, console: Console | None = None, key_bits: int = 2048) -> dict:
    console = console or Console()
    with demo_folder(out_dir, "isthmus demo vertical", console, job_line="job: demo-vertical") as folder:
        return _run(folder, console, key_bits)


def _run(out_dir: Path, console: Console, key_bits: int) -> dict:
    guest_csv, host_csv = make_vertical_data(out_dir / "data")
    job = {
        "job": "demo-vertical",
        "parties": loopback_parties({
            "guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}},
            "host": {"data": {"path": str(host_csv), "id": "id"}},
            "arbiter": {},
        }),
        "steps": [
            {"intersect": {"method": "ecdh"}},
            {"train": DEMO_TRAIN | {"key_bits": key_bits}},
            {"evaluate": {}},
        ],
    }
    job_path = write_job(out_dir / "job.yaml", job)
    console.print(f"job file: {job_path}")
    report = run_parity(job_path, out_dir / "run", console=console)
    console.print(parity_summary(report))
    for party in ("guest", "host", "arbiter"):
        console.print(f"  {party:<8} {out_dir / 'run' / party}")
    console.print(f"  metrics and plots: {out_dir / 'run' / 'guest' / 'metrics.json'}, roc.png, ks.png")
    return report
