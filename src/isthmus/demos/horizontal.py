"""`isthmus demo horizontal`: four hospital-like clients with the same columns and different patients.

scikit-learn's breast-cancer rows are dealt to four clients, each keeping a quarter of its rows as its
own test set. The clients and an aggregator run as five processes over mutual TLS and train logistic
regression with FedAvg under secure aggregation; client-4 crashes in the middle of the run (the
`fail_after_round` fault-injection switch) and training goes on with the other three. Each surviving
client evaluates the final model on its own test rows, beside the same model trained on the pooled rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from isthmus.demos.folder import demo_folder
from isthmus.horizontal.partition import iid
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.jobs.parity import run_parity

CLIENTS = 4
ROUNDS = 20
CRASHING_CLIENT, CRASH_ROUND = "client-4", 8


def make_horizontal_data(folder: Path, *, clients: int = CLIENTS, seed: int = 7) -> list[tuple[Path, Path]]:
    """One (train, test) CSV pair per client: ``id``, label ``y`` and the 30 measurements.

    The columns are standardised with the statistics of the whole public data set, standing in for the
    scaling a real federation agrees on before training (isthmus does not compute it federatedly).
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    features = (data.data - data.data.mean(axis=0)) / data.data.std(axis=0)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for number, rows in enumerate(iid(len(data.target), clients, seed=seed), start=1):
        frame = pd.DataFrame(features[rows], columns=names)
        frame.insert(0, "y", data.target[rows])
        frame.insert(0, "id", [f"patient-{i:05d}" for i in rows])
        test = rng.random(len(frame)) < 0.25
        train_path, test_path = folder / f"client-{number}.csv", folder / f"client-{number}-test.csv"
        frame[~test].to_csv(train_path, index=False)
        frame[test].to_csv(test_path, index=False)
        files.append((train_path, test_path))
    return files


def run_horizontal_demo(out_dir: Path, *, console: Console | None = None) -> dict:
    console = console or Console()
    with demo_folder(out_dir, "isthmus demo horizontal", console, job_line="job: demo-horizontal") as folder:
        return _run(folder, console)


def _run(out_dir: Path, console: Console) -> dict:
    files = make_horizontal_data(out_dir / "data")
    parties = {f"client-{n}": {"data": {"path": str(train), "id": "id", "label": "y", "test": str(test)}}
               for n, (train, test) in enumerate(files, start=1)}
    job = {
        "job": "demo-horizontal",
        "connect_timeout": 10,  # also how long the aggregator keeps trying the crashed client before giving up
        "parties": loopback_parties({**parties, "aggregator": {}}),
        "steps": [
            {"train": {"model": "homo_lr", "strategy": "fedavg", "rounds": ROUNDS, "secure_aggregation": True,
                       "local_epochs": 1, "batch_size": 16, "learning_rate": 0.05, "alpha": 0.001,
                       "min_clients": 2, "dropout_tolerance": 0.3,
                       "fail_after_round": {CRASHING_CLIENT: CRASH_ROUND}}},
            {"evaluate": {}},
        ],
    }
    job_path = write_job(out_dir / "job.yaml", job)
    console.print(f"job file: {job_path}")
    console.print(f"{CLIENTS} clients, secure aggregation on; {CRASHING_CLIENT} will crash in round {CRASH_ROUND} "
                  f"of {ROUNDS} (fault injection)")
    report = run_parity(job_path, out_dir / "run", console=console)
    table = Table(title=f"{report['metric'].upper()} on each client's own test rows")
    for column in ("party", "test rows", "federated", "centralised (pooled rows)", "delta"):
        table.add_column(column)
    for party, row in report["parties"].items():
        table.add_row(party, str(row["evaluation_rows"]), f"{row['federated']:.4f}", f"{row['centralized']:.4f}",
                      f"{row['delta']:.4f}")
    console.print(table)
    console.print(f"largest delta {report['delta']:.4f} ({report['train_rows']} training rows in all; "
                  f"{report['seconds']} s); {CRASHING_CLIENT} dropped out, so its rows count only until round "
                  f"{CRASH_ROUND} in the federated model")
    run = out_dir / "run"
    console.print(f"  aggregator {run / 'aggregator'}: model.json (with each round's contributors), "
                  f"checkpoints/, audit.jsonl")
    for party in parties:
        console.print(f"  {party:<10} {run / party}" + ("  (crashed: see events.jsonl)" if party == CRASHING_CLIENT
                                                         else ": model.json, metrics.json, roc.png"))
    console.print(f"  parity: {run / 'parity.json'}")
    return report
