"""`isthmus demo nn`: a split neural network over a guest and two hosts, each its own process.

default_credit from ``../shared/datasets/fate`` (a sample of its rows; generated data of the same
shape when the file is absent): the guest holds the label and the first columns, two hosts share
the others. They align privately (ECDH PSI), train bottom models at every party joined by the
Paillier-protected interactive layer and a top model at the guest, evaluate jointly on the rows the
guest held out, and compare with the same networks trained in PyTorch on the pooled columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from isthmus.demos.folder import demo_folder
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.jobs.parity import parity_summary, run_parity

DATA = Path("shared") / "datasets" / "fate"
ROWS = 1200


def default_credit() -> tuple[pd.DataFrame, pd.DataFrame]:
    """``ROWS`` rows of default_credit's guest file (id, y, x0..x12) and the host file's same rows
    (id, x0..x9), or generated tables of that shape when the files are absent."""
    for root in (Path.cwd().parent, Path(__file__).resolve().parents[4]):
        if (root / DATA / "default_credit_hetero_guest.csv").exists():
            guest = pd.read_csv(root / DATA / "default_credit_hetero_guest.csv").iloc[:ROWS]
            host = pd.read_csv(root / DATA / "default_credit_hetero_host.csv")
            return guest, host[host["id"].isin(guest["id"])]
    from sklearn.datasets import make_classification

    X, y = make_classification(ROWS, 23, n_informative=8, weights=[0.78], random_state=0)
    ids = np.arange(ROWS)
    guest = pd.DataFrame(X[:, :13], columns=[f"x{i}" for i in range(13)])
    guest.insert(0, "y", y)
    guest.insert(0, "id", ids)
    host = pd.DataFrame(X[:, 13:], columns=[f"x{i}" for i in range(10)])
    host.insert(0, "id", ids)
    return guest, host


def make_nn_data(folder: Path) -> list[Path]:
    """guest.csv (id, y and 13 columns), host-1.csv and host-2.csv (5 columns each), each in its own row order."""
    guest, host = default_credit()
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"guest": guest, "host-1": host[["id", *[f"x{i}" for i in range(5)]]],
              "host-2": host[["id", *[f"x{i}" for i in range(5, 10)]]]}
    paths = []
    for seed, (name, table) in enumerate(tables.items()):
        paths.append(folder / f"{name}.csv")
        table.sample(frac=1, random_state=seed).to_csv(paths[-1], index=False)
    return paths


def run_nn_demo(out_dir: Path, *, console: Console | None = None, key_bits: int = 1024) -> dict:
    console = console or Console()
    with demo_folder(out_dir, "isthmus demo nn", console, job_line="job: demo-nn") as folder:
        guest_csv, *host_csvs = make_nn_data(folder / "data")
        parties = {"guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}}}
        parties.update({f"host-{i}": {"data": {"path": str(path), "id": "id"}} for i, path in enumerate(host_csvs, 1)})
        job = {"job": "demo-nn", "parties": loopback_parties(parties),
               "steps": [{"intersect": {"method": "ecdh"}},
                         {"train": {"model": "hetero_nn", "bottom": {"guest": [8, "relu", 4], "host": [8, "relu", 4]},
                                    "interactive_units": 4, "top": [4, "relu"], "epochs": 4, "batch_size": 128,
                                    "learning_rate": 0.01, "validation_fraction": 0.25, "key_bits": key_bits}},
                         {"evaluate": {}}]}
        job_path = write_job(folder / "job.yaml", job)
        console.print(f"job file: {job_path} ({key_bits}-bit Paillier keys, one per host)")
        report = run_parity(job_path, folder / "run", console=console)
        console.print(parity_summary(report))
        run = folder / "run"
        console.print(f"  guest    {run / 'guest'}  (its network and its share of each host's interactive weights)")
        console.print(f"  hosts    {run / 'host-1'}, {run / 'host-2'}  (each its bottom model and its share)")
        return report
