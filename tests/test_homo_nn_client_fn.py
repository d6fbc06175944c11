"""The Flower-style API: docs/horizontal.md's `client_fn` example, run by simulate() and by a job's processes."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from isthmus.demos.nn_horizontal import digits_job, make_digits_data
from isthmus.errors import ConfigError

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
SECTION = "### One client for simulation and for jobs"


def _documented() -> tuple[str, dict]:
    """The section's Python file and its job's train step, exactly as the docs show them."""
    section = (ROOT / "docs" / "horizontal.md").read_text().split(SECTION, 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    steps = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])["steps"]
    return code, steps[0]["train"]


@pytest.mark.e2e
@pytest.mark.slow  # three processes importing PyTorch, secure aggregation on: about 30 s on two loaded cores
def test_the_documented_client_fn_trains_alike_in_simulation_and_in_job_processes(tmp_path, monkeypatch, capsys):
    code, train = _documented()
    (tmp_path / "digits_client.py").write_text(code)
    files, pooled_test = make_digits_data(tmp_path / "data", clients=2, alpha=1000.0, held_out=300)

    # `python digits_client.py client-1.npz client-2.npz`, in this process (one PyTorch import fewer), on one
    # thread like the job's processes below: float sums over 1 or 2 threads round differently, and other
    # tests in this process may have changed torch's thread count
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["digits_client.py", *(str(tr) for tr, _ in files)])
    try:
        runpy.run_path(str(tmp_path / "digits_client.py"), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    assert "round 4: 2 clients" in capsys.readouterr().out

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")])}

    job = digits_job(tmp_path / "job.yaml", [(tr, None) for tr, _ in files], pooled_test, name="client-fn",
                     train=train)
    launched = subprocess.run([sys.executable, "-m", "isthmus", "launch", str(job), "--out", str(tmp_path / "run")],
                              env=env, capture_output=True, text=True, timeout=180, check=False)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    final = json.loads((tmp_path / "run" / "aggregator" / "model.json").read_text())
    assert final["secure_aggregation"] is True and len(final["history"]) == 4
    assert final["history"][-1]["central_metrics"]["accuracy"] > 0.85  # 300 pooled test images
    # same clients, same starting weights, same seeds: the job's model is the simulation's, up to the
    # fixed-point rounding of secure aggregation
    with np.load(tmp_path / "simulated.npz") as saved:
        expected = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    got = [np.asarray(p["values"], dtype=np.float32).reshape(p["shape"]) for p in final["parameters"]]
    assert [g.shape for g in got] == [e.shape for e in expected]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-3)


def test_simulate_calls_a_client_fn_once_per_client_with_its_context():
    from isthmus.horizontal import ClientContext, FedAvg, LinearClient, LinearModel, simulate
    from isthmus.horizontal.partition import iid

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = (X.sum(1) > 0).astype(float)
    seen: list[ClientContext] = []

    def client_fn(context: ClientContext) -> LinearClient:
        seen.append(context)
        rows = iid(len(y), context.count)[context.index]
        return LinearClient(LinearModel(3, learning_rate=0.1), X[rows], y[rows], seed=context.index)

    result = simulate(client_fn, FedAvg(), 3, num_clients=3, secure=False)
    assert [(c.name, c.index, c.count, c.table) for c in seen] == [
        ("client-0001", 0, 3, None), ("client-0002", 1, 3, None), ("client-0003", 2, 3, None)]
    assert [len(r.clients) for r in result.history] == [3, 3, 3]
    with pytest.raises(ConfigError, match="either num_clients= or tables="):
        simulate(client_fn, FedAvg(), 1)


def test_a_job_names_a_client_fn_that_is_not_a_function_path_when_it_loads():
    from isthmus.algorithms.registry import algorithm

    options = {"network": {"layers": [4]}, "client_fn": "not a path"}
    with pytest.raises(ConfigError, match="client_fn must look like 'package.module:function'"):
        algorithm("homo_nn").Options.parse(options, where="train")
