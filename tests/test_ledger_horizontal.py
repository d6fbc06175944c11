"""A horizontal job with `contribution` (GTG-Shapley, opt-in) and `record`: every party in-process, then as
processes over mutual TLS."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import run_parties

from isthmus.demos.horizontal import make_horizontal_data
from isthmus.errors import ConfigError
from isthmus.incentive.ledger import ledger_path
from isthmus.transport.keyfiles import federation_file, load_pinned_keys
from isthmus.incentive.verify import verify_ledgers
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.jobs.runner import run_party
from isthmus.jobs.spec import parse_job
from isthmus.transport.certs import create_federation
from isthmus.transport.local import LocalHub

CLIENTS = ["client-1", "client-2", "client-3", "client-4"]
PARTIES = ["aggregator", *CLIENTS]
LINEAR = {"model": "homo_lr", "rounds": 3, "batch_size": 16, "learning_rate": 0.05}
NETWORK = {"model": "homo_nn", "network": {"layers": [8, "relu"]}, "rounds": 3, "batch_size": 16, "learning_rate": 0.1}


def job(folder, *, contribution: dict, train: dict = LINEAR):
    files = make_horizontal_data(folder / "data", clients=len(CLIENTS))
    flipped = pd.read_csv(files[3][0])
    flipped["y"] = 1 - flipped["y"]  # client-4 trains on wrong labels
    flipped.to_csv(files[3][0], index=False)
    pooled_test = folder / "data" / "pooled-test.csv"
    pd.concat([pd.read_csv(test) for _, test in files]).to_csv(pooled_test, index=False)
    parties = {name: {"address": f"127.0.0.1:{n}", "data": {"path": str(train), "id": "id", "label": "y"}}
               for n, (name, (train, _)) in enumerate(zip(CLIENTS, files), start=1)}
    parties["aggregator"] = {"address": "127.0.0.1:9", "data": {"path": str(pooled_test), "id": "id", "label": "y"}}
    return parse_job({"job": "hfl-ledger", "record": True, "parties": parties,
                      "steps": [{"train": train}, {"contribution": contribution}]}, base_dir=folder)


def run_all(spec, folder, certs=None):
    hub = LocalHub(PARTIES)
    return run_parties({p: (lambda p=p: run_party(spec, p, hub.channel(p, spec.name), folder / "run" / p,
                                                  certs_dir=certs)) for p in PARTIES}, timeout=120)


@pytest.mark.parametrize("train", [LINEAR, NETWORK], ids=["homo_lr", "homo_nn"])
def test_flipped_labels_rank_last_and_every_party_records_the_report(tmp_path, train):
    """homo_nn could not be measured ("cannot yet measure contributions"): it keeps its rounds as homo_lr does."""
    spec = job(tmp_path, contribution={"reveal_updates": True, "budget": 40}, train=train)
    certs = tmp_path / "certs"
    create_federation(certs, PARTIES)
    run_all(spec, tmp_path, certs)
    run = tmp_path / "run"
    assert json.loads((run / "aggregator" / "model.json").read_text())["secure_aggregation"] is False
    report = json.loads((run / "aggregator" / "contribution.json").read_text())
    assert report["method"] == "gtg-shapley" and report["metric"] == "auc"
    values = report["values"]
    assert min(values, key=values.get) == "client-4" and values["client-4"] < 0
    assert report["rewards"]["client-4"] == 0.0 and sum(report["rewards"].values()) == pytest.approx(40)
    assert sum(values.values()) == pytest.approx(report["grand_value"] - report["empty_value"])  # FedAvg: efficient
    for client in CLIENTS:
        assert json.loads((run / client / "contribution.json").read_text()) == report
    result = verify_ledgers([ledger_path(certs, p) for p in PARTIES], load_pinned_keys(federation_file(certs)))
    assert result.ok, result.findings
    record = json.loads((run / "client-2" / "ledger_record.json").read_text())
    assert record["body"]["contributions"] == report and sorted(record["signatures"]) == PARTIES


def test_without_consent_a_secure_job_refuses_before_training(tmp_path):
    spec = job(tmp_path, contribution={})
    with pytest.raises(AssertionError) as caught:
        run_all(spec, tmp_path)
    assert isinstance(caught.value.__cause__, ConfigError) and "reveal_updates" in str(caught.value.__cause__)
    assert not any((tmp_path / "run").glob("*/model.json"))


@pytest.mark.e2e
@pytest.mark.slow  # five processes, one fork server importing PyTorch: about 15 s
def test_a_launched_network_job_values_its_clients_over_mutual_tls(tmp_path):
    raw = job(tmp_path, contribution={"reveal_updates": True, "budget": 40}, train=NETWORK).to_dict()
    raw["parties"] = loopback_parties(raw["parties"])
    path = write_job(tmp_path / "job.yaml", raw)
    launched = subprocess.run([sys.executable, "-m", "isthmus", "launch", str(path), "--out", str(tmp_path / "launch")],
                              capture_output=True, text=True, timeout=180, check=False)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    report = json.loads((tmp_path / "launch" / "aggregator" / "contribution.json").read_text())
    values = report["values"]
    assert report["method"] == "gtg-shapley" and min(values, key=values.get) == "client-4" and values["client-4"] < 0
    for client in CLIENTS:  # every client process got the same report, and recorded it
        assert json.loads((tmp_path / "launch" / client / "contribution.json").read_text()) == report
    verified = subprocess.run([sys.executable, "-m", "isthmus", "ledger", "verify", str(tmp_path / "launch")],
                              capture_output=True, text=True, timeout=60, check=False)
    assert verified.returncode == 0 and "5 replica(s)" in verified.stdout, verified.stdout + verified.stderr
