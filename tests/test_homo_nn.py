"""homo_nn: the network from the job (layer list or factory), its checks at load and before round 1,
training over the in-process channel against the same network on pooled rows, and real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_e2e_horizontal import run_in_process

from isthmus.algorithms.registry import algorithm
from isthmus.demos.nn_horizontal import digits_job, make_digits_data
from isthmus.errors import ConfigError
from isthmus.jobs.launcher import LaunchResult
from isthmus.jobs.parity import _horizontal
from isthmus.jobs.plan import make_plan
from isthmus.jobs.spec import load_job

pytest.importorskip("torch")  # the `torch` extra; `make test` installs it, so this never skips there

PLUGINS = Path(__file__).parent / "plugins"
MLP = {"layers": [32, "relu"]}  # no dropout: in-process parties share PyTorch's random generator


@pytest.mark.parametrize("network, message", [
    ({"layers": [64, "rleu"]}, r"layers\[1\]: unknown layer 'rleu' \(did you mean 'relu'\?\)"),
    ({"layers": [0]}, r"layers\[0\]: a dense layer needs 1 to"),
    ({"layers": [{"dropout": 1.5}]}, r"layers\[0\]: dropout takes a rate in \[0, 1\)"),
    ({"layers": [{"conv2d": 8}]}, "conv2d and maxpool need network.input_shape"),
    ({"layers": [{"conv2d": 4, "kernel": 5}, {"conv2d": 4, "kernel": 5}], "input_shape": [1, 8, 8]},
     r"layers\[1\] \(conv2d\) turns a 4x4 input into 0x0"),
    ({"layers": [32, "maxpool"], "input_shape": [1, 8, 8]}, r"layers\[1\] \(maxpool\) needs an image-shaped input"),
    ({"layers": [{"conv3d": 2}]}, r"layers\[0\]: .* is not a layer"),
    ({"factory": "not a path"}, "package.module:function"),
    ({"layers": [8], "factory": "a.b:c"}, "either 'layers'"),
])
def test_a_bad_network_is_refused_when_the_job_loads(network, message):
    with pytest.raises(ConfigError, match=message):
        algorithm("homo_nn").Options.parse({"network": network}, where="train")


def test_loading_every_model_and_checking_a_homo_nn_job_does_not_import_torch():
    code = ("import sys; from isthmus.algorithms.registry import algorithm; "
            "algorithm('homo_nn').Options.parse({'network': {'layers': [8, 'relu']}}, where='t'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_multiclass_needs_its_class_count():
    with pytest.raises(ConfigError, match="'classes'"):
        algorithm("homo_nn").Options.parse({"network": MLP, "task": "multiclass"}, where="train")


def _digits(folder: Path, clients: int = 3, held_out: int = 200) -> tuple[list[tuple[Path, Path]], Path]:
    """IID digits shards (a very large Dirichlet alpha), so federated and pooled training should agree."""
    return make_digits_data(folder, clients=clients, alpha=1000.0, held_out=held_out)


def test_an_mlp_job_over_the_in_process_channel_matches_the_pooled_network(tmp_path):
    files, pooled_test = _digits(tmp_path / "data")
    train = {"network": MLP, "optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9, "rounds": 8, "local_epochs": 3,
             "secure_aggregation": False, "strategy": "fedprox", "strategy_options": {"proximal_mu": 0.001}}
    spec = load_job(digits_job(tmp_path / "mlp.yaml", files, pooled_test, name="mlp", train=train))
    run = tmp_path / "run"
    run_in_process(spec, run)

    report = _horizontal(LaunchResult(spec, run, 0.0), make_plan(spec, "aggregator").first("train").options)
    assert report["metric"] == "accuracy" and report["centralized"] > 0.9, report
    at_aggregator = report["parties"]["aggregator"]  # 200 pooled test images; each client tests on about 120
    assert at_aggregator["federated"] > 0.9 and at_aggregator["delta"] <= 0.02, report
    assert report["delta"] <= 0.05, report
    saved = json.loads((run / "aggregator" / "model.json").read_text())
    assert [p["shape"] for p in saved["parameters"]] == [[32, 64], [32], [10, 32], [10]]
    assert saved["history"][-1]["central_metrics"]["accuracy"] > 0.9
    # a party's model.json loads back into the network that scored its test rows
    part = algorithm("homo_nn").load("client", json.loads((run / "client-1" / "model.json").read_text()))
    test = np.load(files[0][1])
    scores = pd.read_csv(run / "client-1" / "predictions.csv").filter(like="score_").to_numpy()
    np.testing.assert_allclose(part.predict(test["image"].reshape(len(test["y"]), -1)), scores, atol=1e-6)


def test_a_client_whose_network_differs_is_named_before_round_1(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    import isthmus_nn_factory

    monkeypatch.setattr(isthmus_nn_factory, "mismatched", {"client-2"})
    files, _ = _digits(tmp_path / "data")
    train = {"network": {"factory": "isthmus_nn_factory:build"}, "rounds": 2, "secure_aggregation": False}
    spec = load_job(digits_job(tmp_path / "factory.yaml", files, None, name="factory", train=train))
    with pytest.raises(AssertionError, match=r"client 'client-2' built another network: .*tensor 0 has shape "
                                             r"\[24, 64\] vs \[16, 64\]"):
        run_in_process(spec, tmp_path / "run")
    assert not any((tmp_path / "run").glob("*/model.json"))


def test_a_binary_job_on_tables_trains_and_a_regression_network_fits_pooled_rows(tmp_path):
    from sklearn.datasets import make_regression

    from isthmus.demos.horizontal import make_horizontal_data
    from test_e2e_horizontal import horizontal_job

    files = make_horizontal_data(tmp_path / "data", clients=2)
    train = {"model": "homo_nn", "network": {"layers": [16, "tanh"]}, "rounds": 3, "optimizer": "adam",
             "learning_rate": 0.01, "secure_aggregation": False}
    spec = load_job(horizontal_job(tmp_path, files, train=train, name="binary"))
    run_in_process(spec, tmp_path / "run")
    for client in ("client-1", "client-2"):
        assert json.loads((tmp_path / "run" / client / "metrics.json").read_text())["metrics"]["auc"] > 0.95

    X, y = make_regression(400, 5, noise=1.0, random_state=0)
    options = algorithm("homo_nn").Options.parse({"network": {"layers": [16, "relu"]}, "task": "regression",
                                                  "rounds": 20, "learning_rate": 0.01}, where="train")
    scores = algorithm("homo_nn").reference(options, "regression", X[:300], y[:300] / 100, X[300:]).scores
    assert scores.shape == (100,) and np.corrcoef(scores, y[300:])[0, 1] > 0.95


@pytest.mark.e2e
@pytest.mark.slow  # three processes importing PyTorch: about 35 s at load 8 on two cores
def test_a_cnn_on_images_over_real_processes_under_secure_aggregation_matches_pooled_training(tmp_path):
    """Two client processes and the aggregator's; only the aggregator evaluates, on 400 pooled test images."""
    files, pooled_test = _digits(tmp_path / "data", clients=2, held_out=400)
    job = digits_job(tmp_path / "cnn.yaml", [(train, None) for train, _ in files], pooled_test, name="cnn",
                     train={"rounds": 6, "local_epochs": 3, "optimizer": "sgd", "learning_rate": 0.1,
                            "momentum": 0.9})
    result = subprocess.run([sys.executable, "-m", "isthmus", "parity", str(job), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "run" / "parity.json").read_text())
    assert report["model"] == "homo_nn" and report["party"] == "aggregator" and report["evaluation_rows"] == 400
    assert report["federated"] > 0.9 and report["delta"] <= 0.02, report
    final = json.loads((tmp_path / "run" / "aggregator" / "model.json").read_text())
    assert final["secure_aggregation"] is True and [len(h["clients"]) for h in final["history"]] == [2] * 6
    assert final["input_shape"] == [1, 8, 8] and [p["shape"] for p in final["parameters"]][:2] == [[8, 1, 3, 3], [8]]


def test_robust_rules_ignore_a_minority_of_outliers_and_need_updates_in_the_clear():
    from isthmus.horizontal.robust import robust_center

    deltas = np.array([[1.0, -1.0], [1.2, -0.8], [0.8, -1.2], [0.9, -1.1], [1e6, -1e6]])
    np.testing.assert_allclose(robust_center("median", deltas), [1.0, -1.1])
    np.testing.assert_allclose(robust_center("trimmed_mean", deltas, 0.2), [(0.9 + 1.0 + 1.2) / 3, -(1.2 + 1.1 + 1.0) / 3])
    options = algorithm("homo_nn").Options
    with pytest.raises(ConfigError, match="robust aggregation looks at every update"):
        options.parse({"network": MLP, "robust": "median"}, where="train")
    with pytest.raises(ConfigError, match="do not combine with dp"):
        options.parse({"network": MLP, "update_clip": 1.0, "dp": {"clip_norm": 1.0, "noise_multiplier": 1.0}},
                      where="train")
