"""`isthmus demo nn-horizontal`: a small CNN on 8x8 digit images, five clients with skewed labels.

scikit-learn's digits (1,797 grey 8x8 images, pixels scaled to [0, 1]) are dealt to five clients with
Dirichlet(0.5) label skew, so each client sees some digits often and others rarely; each keeps a
fifth of its images as its own test set, and the aggregator holds a pooled test set of its own. The
clients and the aggregator run as six processes over mutual TLS and train the job's CNN with FedAvg
under secure aggregation; every client then scores its own test images, beside the same CNN trained
on the pooled images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from isthmus.demos.folder import demo_folder
from isthmus.horizontal.partition import dirichlet_label_skew
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.jobs.parity import run_parity

CLIENTS = 5
CNN = {"input_shape": [1, 8, 8], "layers": [{"conv2d": 8, "kernel": 3, "padding": 1}, "relu", "maxpool", 32, "relu"]}
TRAIN = {"model": "homo_nn", "task": "multiclass", "classes": 10, "network": CNN, "optimizer": "sgd",
         "learning_rate": 0.05, "momentum": 0.9, "batch_size": 32, "local_epochs": 2, "rounds": 15,
         "secure_aggregation": True}


def make_digits_data(folder: Path, *, clients: int = CLIENTS, alpha: float = 0.5, seed: int = 3,
                     held_out: int = 300) -> tuple[list[tuple[Path, Path]], Path]:
    """Per client a (train, test) ``.npz`` pair with arrays ``id``, ``y`` and ``image`` (n, 1, 8, 8);
    and the aggregator's pooled test set (the first ``held_out`` shuffled images)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    folder.mkdir(parents=True, exist_ok=True)

    def save(path: Path, rows: np.ndarray) -> Path:
        np.savez(path, id=np.array([f"digit-{i:04d}" for i in rows]), y=digits.target[rows], image=images[rows])
        return path

    pooled_test = save(folder / "aggregator-test.npz", order[:held_out])
    rest = order[held_out:]
    files = []
    for number, shard in enumerate(dirichlet_label_skew(digits.target[rest], clients, alpha, seed=seed, min_rows=40),
                                   start=1):
        rows = rest[shard]
        test = rng.random(len(rows)) < 0.2
        files.append((save(folder / f"client-{number}.npz", rows[~test]),
                      save(folder / f"client-{number}-test.npz", rows[test])))
    return files, pooled_test


def digits_job(path: Path, files: list[tuple[Path, Path | None]], aggregator_test: Path | None, *,
               name: str = "demo-nn", train: dict[str, Any] | None = None) -> Path:
    """The job: a client per (train, test) pair (no test file: the client does not evaluate), the aggregator
    evaluating on ``aggregator_test``; ``train`` overrides the demo's train options."""
    parties: dict[str, dict] = {
        f"client-{n}": {"data": {"path": str(tr), "id": "id", "label": "y", **({"test": str(te)} if te else {})}}
        for n, (tr, te) in enumerate(files, start=1)}
    parties["aggregator"] = {"data": {"path": str(aggregator_test), "id": "id", "label": "y"}} if aggregator_test \
        else {}
    job = {"job": name, "parties": loopback_parties(parties),
           "steps": [{"train": {**TRAIN, **(train or {})}}, {"evaluate": {}}]}
    return write_job(path, job)


def run_nn_horizontal_demo(out_dir: Path, *, console: Console | None = None) -> dict:
    console = console or Console()
    with demo_folder(out_dir, "isthmus demo nn-horizontal", console, job_line="job: demo-nn") as folder:
        return _run(folder, console)


def _run(out_dir: Path, console: Console) -> dict:
    files, pooled_test = make_digits_data(out_dir / "data")
    job_path = digits_job(out_dir / "job.yaml", files, pooled_test)
    console.print(f"job file: {job_path}")
    console.print(f"{CLIENTS} clients with Dirichlet(0.5) label skew, a CNN "
                  f"(conv 8x3x3, max-pool, dense 32), FedAvg, secure aggregation on")
    report = run_parity(job_path, out_dir / "run", console=console)
    table = Table(title="accuracy on each party's own test images")
    for column in ("party", "test images", "digits seen in training", "federated", "pooled training", "delta"):
        table.add_column(column)
    for party, row in report["parties"].items():
        seen = "-" if party == "aggregator" else \
            str(len(np.unique(np.load(out_dir / "data" / f"{party}.npz")["y"])))
        table.add_row(party, str(row["evaluation_rows"]), seen, f"{row['federated']:.4f}", f"{row['centralized']:.4f}",
                      f"{row['delta']:.4f}")
    console.print(table)
    console.print(f"largest delta {report['delta']:.4f} ({report['train_rows']} training images; {report['seconds']} s)")
    console.print(f"  results: {out_dir / 'run'} (model.json, metrics.json per party; parity.json)")
    return report
