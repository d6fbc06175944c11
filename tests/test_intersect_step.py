"""The `intersect` step leaves the shared rows in one order that every party holds and every run of a job
repeats, and that another job does not.

PSI's own order follows each run's random keys, so the same job on the same data held out other rows,
drew other batches and trained another model each time (the demo's delta moved between 0.0000 and 0.0036)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_parties

from isthmus.data.ids import canonical_id
from isthmus.jobs.runner import run_party
from isthmus.jobs.spec import parse_job
from isthmus.jobs.steps.intersect import OVERLAP
from isthmus.transport.local import LocalHub

PARTIES = ["guest", "host"]


def job(folder: Path, keep_all_rows: bool, name: str = "order"):
    rng = np.random.default_rng(0)
    guest_ids = rng.permutation(400)  # integers; the host's are text with spaces: the same ids, canonically
    host_ids = [f" {i} " for i in rng.permutation(np.arange(200, 700))]
    pd.DataFrame({"id": guest_ids, "y": rng.integers(0, 2, 400), "a": rng.normal(size=400)}).to_csv(
        folder / "guest.csv", index=False)
    pd.DataFrame({"id": host_ids, "b": rng.normal(size=500)}).to_csv(folder / "host.csv", index=False)
    parties = {"guest": {"address": "127.0.0.1:1", "data": {"path": "guest.csv", "id": "id", "label": "y"}},
               "host": {"address": "127.0.0.1:2", "data": {"path": "host.csv", "id": "id"}}}
    return parse_job({"job": name, "parties": parties, "steps": [{"intersect": {"keep_all_rows": keep_all_rows}}]},
                     base_dir=folder)


def shared_ids(spec, run_dir: Path) -> dict[str, list[str]]:
    """Each party's shared ids, canonical, in the order the step left its rows (or the overlap's positions)."""
    hub = LocalHub(PARTIES)
    contexts = run_parties({p: (lambda p=p: run_party(spec, p, hub.channel(p, spec.name), run_dir / p)) for p in PARTIES},
                           timeout=60)
    order = {}
    for party, ctx in contexts.items():
        rows = ctx.state[OVERLAP] if OVERLAP in ctx.state else np.arange(ctx.table.n_rows)
        order[party] = [canonical_id(raw, party=party, row=0) for raw in ctx.table.ids[rows]]
    return order


@pytest.mark.parametrize("keep_all_rows", [False, True])
def test_every_party_and_every_run_hold_the_shared_rows_in_the_same_order(tmp_path, keep_all_rows):
    spec = job(tmp_path, keep_all_rows)
    first, second = shared_ids(spec, tmp_path / "run1"), shared_ids(spec, tmp_path / "run2")
    assert sorted(first["guest"], key=int) == [str(i) for i in range(200, 400)]
    assert first["guest"] == first["host"]
    assert second == first
    assert first["guest"] != sorted(first["guest"]) and first["guest"] != sorted(first["guest"], key=int)

    other_job = shared_ids(job(tmp_path, keep_all_rows, name="another"), tmp_path / "run3")
    assert other_job["guest"] == other_job["host"] and sorted(other_job["guest"]) == sorted(first["guest"])
    assert other_job["guest"] != first["guest"]  # an arbiter cannot line up one job's rows with another's
