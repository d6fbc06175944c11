"""A horizontal job with `contribution` (GTG-Shapley, opt-in) and `record`, every party in-process."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import run_parties

from isthmus.demos.horizontal import make_horizontal_data
from isthmus.errors import ConfigError
from isthmus.incentive.ledger import ledger_path
from isthmus.transport.keyfiles import federation_file, load_pinned_keys
from isthmus.incentive.verify import verify_ledgers
from isthmus.jobs.runner import run_party
from isthmus.jobs.spec import parse_job
from isthmus.transport.certs import create_federation
from isthmus.transport.local import LocalHub

CLIENTS = ["client-1", "client-2", "client-3", "client-4"]
PARTIES = ["aggregator", *CLIENTS]


def job(folder, *, contribution: dict):
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
                      "steps": [{"train": {"model": "homo_lr", "rounds": 3, "batch_size": 16, "learning_rate": 0.05}},
                                {"contribution": contribution}]}, base_dir=folder)


def run_all(spec, folder, certs=None):
    hub = LocalHub(PARTIES)
    return run_parties({p: (lambda p=p: run_party(spec, p, hub.channel(p, spec.name), folder / "run" / p,
                                                  certs_dir=certs)) for p in PARTIES}, timeout=120)


def test_flipped_labels_rank_last_and_every_party_records_the_report(tmp_path):
    spec = job(tmp_path, contribution={"reveal_updates": True, "budget": 40})
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
