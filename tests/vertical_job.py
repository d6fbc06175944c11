"""A vertical job file for tests that start party processes: the demo's breast-cancer split (guest with the
label, host, arbiter) at free loopback addresses."""

from __future__ import annotations

from pathlib import Path

from isthmus.demos.vertical import make_vertical_data
from isthmus.jobs.local import loopback_parties, write_job

#: Vertical LR long enough to stop a party mid-training (the demo data need `precision` 6 for full batches).
LONG_TRAINING = {"model": "hetero_lr", "epochs": 500, "batch_size": 0, "key_bits": 1024, "precision": 6}


def vertical_job(folder: Path, name: str, steps: list, **options) -> Path:
    """``folder/job.yaml`` (its data in ``folder/data``) with ``steps`` and job-level ``options``."""
    guest_csv, host_csv = make_vertical_data(folder / "data")
    return write_job(folder / "job.yaml", {
        "job": name, **options,
        "parties": loopback_parties({"guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}},
                                     "host": {"data": {"path": str(host_csv), "id": "id"}}, "arbiter": {}}),
        "steps": steps})
