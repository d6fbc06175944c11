"""A model registered from outside isthmus (tests/plugins, through ISTHMUS_PLUGINS) runs as real party
processes over gRPC: intersect, train, evaluate and parity dispatch on the contract alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from isthmus.demos.vertical import make_vertical_data
from isthmus.jobs.local import loopback_parties, write_job

pytestmark = pytest.mark.e2e

PLUGINS = Path(__file__).parent / "plugins"


def isthmus(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ISTHMUS_PLUGINS": "isthmus_toy_plugin",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "isthmus", *args], capture_output=True, text=True, env=env,
                          timeout=240, check=False)


def toy_job(folder: Path, **options) -> Path:
    guest_csv, host_csv = make_vertical_data(folder / "data")
    job = {"job": "toy-plugin", **options,
           "parties": loopback_parties({"guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}},
                                        "host": {"data": {"path": str(host_csv), "id": "id"}}}),
           "steps": [{"intersect": {}}, {"train": {"model": "toy_pooled_lr", "holdout": 0.3}}, {"evaluate": {}}]}
    return write_job(folder / "job.yaml", job)


def test_a_plugin_model_trains_evaluates_and_matches_its_reference(tmp_path):
    result = isthmus("parity", str(toy_job(tmp_path, benchmark_only_plaintext=True)), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "run" / "parity.json").read_text())
    assert report["model"] == "toy_pooled_lr" and report["reference"] == "scikit-learn on pooled columns"
    assert report["train_rows"] + report["evaluation_rows"] == 431
    assert report["federated"] > 0.9 and report["delta"] < 0.01, report  # the same model on the same rows
    host_model = json.loads((tmp_path / "run" / "host" / "model.json").read_text())
    assert host_model == {"model": "toy_pooled_lr", "role": "host", "guest": "guest"}


def test_a_plugin_model_is_held_to_its_own_check_at_load(tmp_path):
    result = isthmus("launch", str(toy_job(tmp_path)), "--out", str(tmp_path / "run"))
    assert result.returncode != 0
    assert "toy_pooled_lr sends every host's raw columns" in result.stdout + result.stderr


def test_without_the_plugin_the_model_is_unknown_and_the_known_ones_are_named(tmp_path):
    job = toy_job(tmp_path, benchmark_only_plaintext=True)
    result = subprocess.run([sys.executable, "-m", "isthmus", "launch", str(job), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=120, check=False,
                            env={k: v for k, v in os.environ.items() if k != "ISTHMUS_PLUGINS"})
    assert result.returncode != 0
    assert "unknown model 'toy_pooled_lr'" in result.stdout + result.stderr
    assert "hetero_lr" in result.stdout + result.stderr
