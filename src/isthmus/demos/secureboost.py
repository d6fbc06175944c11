"""`isthmus demo secureboost`: vertical SecureBoost on the breast-cancer split of the vertical demo.

The same bank-like guest (label + 10 columns) and e-commerce-like host (20 columns), with some cells
left empty as real tables have them. They align privately (ECDH PSI), grow gradient-boosted trees
with Paillier-encrypted gradients (no arbiter: the guest holds the key), evaluate jointly on the
rows the guest held out, and compare with a centralised booster on the pooled data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from isthmus.demos.folder import demo_folder
from isthmus.demos.vertical import make_vertical_data
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.jobs.parity import parity_summary, run_parity


def make_secureboost_data(folder: Path, *, seed: int = 7, missing: float = 0.03) -> tuple[Path, Path]:
    """The vertical demo's tables with a share ``missing`` of feature cells emptied."""
    paths = make_vertical_data(folder, seed=seed)
    rng = np.random.default_rng(seed)
    for path in paths:
        table = pd.read_csv(path, dtype={"id": str})
        features = [c for c in table.columns if c not in ("id", "y")]
        table[features] = table[features].mask(rng.random((len(table), len(features))) < missing)
        table.to_csv(path, index=False)
    return paths


def run_secureboost_demo(out_dir: Path, *, console: Console | None = None, key_bits: int = 2048) -> dict:
    console = console or Console()
    with demo_folder(out_dir, "isthmus demo secureboost", console, job_line="job: demo-secureboost") as folder:
        return _run(folder, console, key_bits)


def _run(out_dir: Path, console: Console, key_bits: int) -> dict:
    guest_csv, host_csv = make_secureboost_data(out_dir / "data")
    job = {
        "job": "demo-secureboost",
        "parties": loopback_parties({
            "guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}},
            "host": {"data": {"path": str(host_csv), "id": "id"}},
        }),
        "steps": [
            {"intersect": {"method": "ecdh"}},
            {"train": {"model": "hetero_secureboost", "trees": 10, "max_depth": 3, "learning_rate": 0.3,
                       "bins": 32, "validation_fraction": 0.25, "key_bits": key_bits}},
            {"evaluate": {}},
        ],
    }
    job_path = write_job(out_dir / "job.yaml", job)
    console.print(f"job file: {job_path}")
    report = run_parity(job_path, out_dir / "run", console=console)
    console.print(parity_summary(report))
    run = out_dir / "run"
    console.print(f"  guest    {run / 'guest'}  (trees, leaf values, feature importance: model.json)")
    console.print(f"  host     {run / 'host'}  (its thresholds by split id: model.json)")
    console.print(f"  metrics and plots: {run / 'guest' / 'metrics.json'}, roc.png, ks.png")
    return report
