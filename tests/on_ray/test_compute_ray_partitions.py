"""A party's table read per partition on this package's real two-node Ray cluster (conftest.py): PSI over ids read
by the cluster's tasks (guest and host, every method) and the shared rows loaded per partition give the rows the
whole file gives, aligned between the parties; and a launched job whose host is on the cluster, which loads only
its shared rows there, trains the same model as the same job all on local pools."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from isthmus.protocols.psi import METHODS
from test_table_partitions import assert_same_as_the_whole_file, partitioned_alignment, party_files

pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.mark.parametrize("method", METHODS)
def test_both_parties_partitioned_on_ray_align_the_whole_files_rows(ray_compute, tmp_path, method):
    files = party_files(tmp_path)
    assert_same_as_the_whole_file(files, partitioned_alignment(files, method, ray_compute))


@pytest.mark.e2e
def test_a_job_with_its_host_on_ray_trains_on_the_same_aligned_rows(ray_cluster, ray_compute, tmp_path):
    """Full-batch hetero LR depends on the aligned rows' values and alignment but not on their order (PSI's order
    is random per job): the host on the cluster (reading its Parquet file per row group) and the host on its local
    pool must give the same coefficients."""
    from isthmus.jobs.local import loopback_parties, write_job

    files = party_files(tmp_path, guest_rows=300, host_rows=900, shared=200)
    data = {party: {"data": {"path": str(files[party]["path"]), "id": "id", "exclude": files[party]["exclude"],
                             **({"label": "y"} if party == "guest" else {})}} for party in ("guest", "host")}
    train = {"model": "hetero_lr", "epochs": 2, "batch_size": 0, "learning_rate": 0.3, "key_bits": 1024}
    job = write_job(tmp_path / "job.yaml", {"job": "ray-rows", "parties": loopback_parties({**data, "arbiter": {}}),
                                            "steps": [{"intersect": {}}, {"train": train}]})
    models = {}
    for where, extra in (("ray", ["--compute", f"host={ray_cluster.address}"]), ("local", [])):
        out = tmp_path / where
        result = subprocess.run([sys.executable, "-m", "isthmus", "launch", str(job), "--out", str(out), *extra],
                                capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stdout + result.stderr
        models[where] = {party: json.loads((out / party / "model.json").read_text()) for party in ("guest", "host")}
        events = [json.loads(line) for line in (out / "host" / "events.jsonl").read_text().splitlines()]
        loads = [event for event in events if event.get("step") == "load"]
        assert [(event["rows"], event.get("shared_only")) for event in loads] == [(200 if where == "ray" else 900,
                                                                                   True if where == "ray" else None)]
    for party in ("guest", "host"):
        assert models["ray"][party]["features"] == models["local"][party]["features"]
        np.testing.assert_allclose(models["ray"][party]["coef"], models["local"][party]["coef"], rtol=0, atol=1e-9)
        assert np.abs(models["ray"][party]["coef"]).max() > 1e-4  # a model that learned something from the rows
