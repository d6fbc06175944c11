"""`isthmus demo ftl`: federated transfer learning between a labelling guest and a host that shares
only a few hundred of its customers and none of its columns.

The guest (a bank: labels and 6 columns on 1,200 customers) and the host (a retailer: 5 other columns
on 1,000 customers, 250 of them the bank's) run as processes over mutual TLS: PSI keeps all rows and
records the shared ones, hetero_ftl trains with each party's own Paillier key, and the host labels
its 750 customers the bank never had. The demo, which alone holds their true labels, scores the
host's predictions and compares with what the host could do with only the 250 shared labels.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from isthmus.demos.folder import demo_folder
from isthmus.demos.ftl_data import write_ftl_data
from isthmus.jobs.launcher import launch
from isthmus.jobs.local import loopback_parties, write_job

SIZES = {"guest_rows": 1200, "host_rows": 1000, "overlap": 250}
TRAIN = {"model": "hetero_ftl", "representation": 4, "hidden": 8, "epochs": 10, "batch_size": 125,
         "learning_rate": 0.03}


def run_ftl_demo(out_dir: Path, *, console: Console | None = None, key_bits: int = 2048) -> dict:
    console = console or Console()
    with demo_folder(out_dir, "isthmus demo ftl", console, job_line="job: demo-ftl") as folder:
        return _run(folder, console, key_bits)


def _run(out_dir: Path, console: Console, key_bits: int) -> dict:
    guest_csv, host_csv, truth_csv = write_ftl_data(out_dir / "data", **SIZES)
    job = {"job": "demo-ftl",
           "parties": loopback_parties({"guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}},
                                        "host": {"data": {"path": str(host_csv), "id": "id"}}}),
           "steps": [{"intersect": {"keep_all_rows": True}}, {"train": TRAIN | {"key_bits": key_bits}}]}
    job_path = write_job(out_dir / "job.yaml", job)
    console.print(f"job file: {job_path}")
    run = out_dir / "run"
    result = launch(job_path, run, console=console)
    console.print(f"job finished in {result.seconds:.0f} s")

    truth = pd.read_csv(truth_csv, dtype={"id": str})
    predictions = pd.read_csv(run / "host" / "predictions.csv", dtype={"id": str}).merge(truth, on="id")
    guest, host = pd.read_csv(guest_csv, dtype={"id": str}), pd.read_csv(host_csv, dtype={"id": str})
    shared = host.merge(guest[["id", "y"]], on="id")  # what sharing the 250 labels would give the host
    columns = [c for c in host.columns if c != "id"]
    unseen = host.merge(truth, on="id")
    alone = LogisticRegression().fit(shared[columns], shared.y).predict_proba(unseen[columns])[:, 1]
    report = {"host_rows_labelled": len(predictions), "ftl_auc": roc_auc_score(predictions.y, predictions.score),
              "shared_labels_only_auc": roc_auc_score(unseen.y, alone),
              "accuracy": float((predictions.label == predictions.y).mean())}
    console.print(f"host labelled {report['host_rows_labelled']} customers the guest never had: AUC "
                  f"{report['ftl_auc']:.3f} (accuracy {report['accuracy']:.3f}); a host model fitted on the "
                  f"{SIZES['overlap']} shared labels alone: AUC {report['shared_labels_only_auc']:.3f}")
    console.print(f"  predictions (host only): {run / 'host' / 'predictions.csv'}")
    console.print(f"  guest: {run / 'guest' / 'model.json'} (its network and Phi); no predictions file")
    return report
