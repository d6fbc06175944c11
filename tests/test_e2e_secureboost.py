"""End to end: SecureBoost jobs as real party processes over gRPC with mutual TLS, through the CLI.

Hetero: PSI, encrypted WOE/IV binning, IV selection, SecureBoost with missing values, joint evaluation
and parity; host thresholds never leave the host; a host that is gone at prediction time is named.
Horizontal: three clients and an aggregator, secure aggregation, every client with the whole model.
1024-bit keys and small data, to stay fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from isthmus.demos.secureboost import make_secureboost_data
from isthmus.jobs.agreement import TAG as AGREEMENT_TAG
from isthmus.jobs.local import loopback_parties, write_job
from tests.payload_helpers import SentBytes

pytestmark = pytest.mark.e2e

TRAIN = {"model": "hetero_secureboost", "trees": 6, "max_depth": 3, "learning_rate": 0.3, "bins": 16,
         "validation_fraction": 0.25, "key_bits": 1024}


def isthmus(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "isthmus", *args], check=False, capture_output=True, text=True,
                          timeout=timeout)


def hetero_job(folder: Path, steps: list, **options) -> Path:
    guest_csv, host_csv = make_secureboost_data(folder / "data")
    job = {"job": "e2e-secureboost", **options,
           "parties": loopback_parties({"guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}},
                                        "host": {"data": {"path": str(host_csv), "id": "id"}}}),
           "steps": steps}
    return write_job(folder / "job.yaml", job)


@pytest.fixture(scope="module")
def parity_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("secureboost")
    job = hetero_job(folder, [{"intersect": {}}, {"binning": {"bins": 8, "key_bits": 1024}},
                              {"select": {"top_k": 24}}, {"train": TRAIN}, {"evaluate": {}}], audit_payloads=True)
    result = isthmus("parity", str(job), "--out", str(folder / "run"))
    assert result.returncode == 0, result.stdout + result.stderr
    return folder / "run"


def test_parity_with_a_centralised_booster(parity_run):
    report = json.loads((parity_run / "parity.json").read_text())
    assert report["metric"] == "auc" and report["model"] == "hetero_secureboost"
    assert report["reference"].startswith(("xgboost", "isthmus SecureBoostReference"))
    assert report["federated"] > 0.9 and report["delta"] <= 0.05, report  # 108 held-out rows: AUC is noisy
    assert report["train_rows"] + report["evaluation_rows"] == 431  # the shared customers


def test_each_party_keeps_its_part_and_its_binning(parity_run):
    guest = json.loads((parity_run / "guest" / "model.json").read_text())
    host = json.loads((parity_run / "host" / "model.json").read_text())
    assert guest["task"] == "binary" and len(guest["ensemble"]["trees"]) == 6
    assert set(guest["feature_importance"]) == {"guest", "host"}  # hosts in total, guest per column
    assert len(guest["feature_importance"]["guest"]["gain"]) == len(guest["feature_names"])
    assert "threshold" not in json.dumps(guest["ensemble"])  # the guest knows host splits by id only
    assert host["splits"] and all({"threshold", "feature_name"} <= set(rule) for rule in host["splits"].values())
    kept = [json.loads((parity_run / p / "selection.json").read_text())["kept"] for p in ("guest", "host")]
    assert sum(map(len, kept)) == 24 and host["feature_names"] == kept[1]
    guest_iv = json.loads((parity_run / "guest" / "iv.json").read_text())["parties"]
    assert len(guest_iv["guest"]) == 10 and len(guest_iv["host"]) == 20
    assert all(entry["iv"] >= 0 for party in guest_iv.values() for entry in party.values())
    host_iv = json.loads((parity_run / "host" / "iv.json").read_text())
    assert "iv" not in json.dumps(host_iv["features"])  # the host learns no label statistic
    assert json.loads((parity_run / "guest" / "metrics.json").read_text())["metrics"]["auc"] > 0.9


def test_no_host_threshold_or_split_point_leaves_the_host(parity_run):
    # but the job as the host reads it (plan/agreement): the shared job file, whose addresses hold "127.0.0.1"
    shared = {entry["sha256"][:16] for entry in map(json.loads, (parity_run / "host" / "audit.jsonl").read_text()
                                                   .splitlines()) if entry["tag"] == AGREEMENT_TAG}
    payloads = SentBytes(b"".join(p.read_bytes() for p in (parity_run / "host" / "audit-payloads").glob("*.bin")
                                  if p.stem.split("-")[1] not in shared))
    assert len(payloads) > 50_000
    host = json.loads((parity_run / "host" / "model.json").read_text())
    points = [p for f in json.loads((parity_run / "host" / "iv.json").read_text())["features"].values()
              for p in f["split_points"]]
    values = {rule["threshold"] for rule in host["splits"].values()} | set(points)
    assert len(values) > 20
    values -= {0.0, 1.0}
    for value in values:
        assert np.float64(value).tobytes() not in payloads, value
        assert repr(float(value)).encode() not in payloads, value
    # Four bytes turn up by chance in ciphertexts (each value's with probability ~ payload size / 2^32, about
    # 3e-5 here: it happened once in a suite run); a host sending its thresholds as float32 would show them all.
    as_float32 = [value for value in values if np.float32(value).tobytes() in payloads]
    assert len(as_float32) <= 2, as_float32


def test_plaintext_mode_is_refused_without_the_benchmark_switch(tmp_path):
    job = hetero_job(tmp_path, [{"train": {**TRAIN, "encryption": "plaintext"}}], connect_timeout=3)
    result = isthmus("launch", str(job), "--out", str(tmp_path / "run"), timeout=120)
    assert result.returncode == 1
    assert "benchmark_only_plaintext" in result.stderr and "labels" in result.stderr
    assert not any((tmp_path / "run").glob("*/model.json"))


def test_joint_prediction_with_a_host_gone_names_the_host(tmp_path):
    """The host trains, then its side ends; the guest's joint evaluation fails naming it, and leaves its model
    without metrics. (Two processes whose job files differ in their steps no longer stage this: they stop
    before their first step, tests/test_agreement.py.)"""
    import threading

    from isthmus.errors import PeerError
    from isthmus.jobs.runner import run_party
    from isthmus.jobs.spec import load_job, parse_job
    from isthmus.transport.local import LocalHub

    spec = load_job(hetero_job(tmp_path, [{"intersect": {}}, {"train": {**TRAIN, "trees": 2}}, {"evaluate": {}}]))
    trains_only = spec.to_dict()
    trains_only["steps"] = trains_only["steps"][:2]
    hub = LocalHub(["guest", "host"])
    guest_channel = hub.channel("guest", spec.name)
    guest_channel.default_timeout = 3  # a host gone answers nothing
    host = threading.Thread(target=run_party, args=(parse_job(trains_only, base_dir=tmp_path), "host",
                                                    hub.channel("host", spec.name), tmp_path / "run" / "host"))
    host.start()
    with pytest.raises(PeerError) as caught:
        run_party(spec, "guest", guest_channel, tmp_path / "run" / "guest")
    host.join(30)
    assert caught.value.peer == "host"
    guest_dir = tmp_path / "run" / "guest"
    assert (guest_dir / "model.json").exists() and not (guest_dir / "metrics.json").exists()
    failed = [json.loads(line) for line in (guest_dir / "events.jsonl").read_text().splitlines()
              if '"failed"' in line]
    assert failed and failed[0]["step"] == "evaluate"


def test_horizontal_secureboost_job(tmp_path):
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True).frame.rename(columns=lambda c: c.replace(" ", "_"))
    data.insert(0, "id", [f"r{i}" for i in range(len(data))])
    data = data.sample(frac=1, random_state=0)
    test_csv = tmp_path / "test.csv"
    data[:100].to_csv(test_csv, index=False)
    parties = {"aggregator": {}}
    for i, rows in enumerate(np.array_split(np.arange(100, len(data)), 3), start=1):
        data.iloc[rows].to_csv(tmp_path / f"client-{i}.csv", index=False)
        parties[f"client-{i}"] = {"data": {"path": f"client-{i}.csv", "id": "id", "label": "target", "test": "test.csv"}}
    job = write_job(tmp_path / "job.yaml", {
        "job": "e2e-homo-secureboost", "parties": loopback_parties(parties),
        "steps": [{"train": {"model": "homo_secureboost", "trees": 5, "max_depth": 3, "bins": 16}}, {"evaluate": {}}]})
    result = isthmus("launch", str(job), "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stdout + result.stderr
    run = tmp_path / "run"
    models = [json.loads((run / p / "model.json").read_text()) for p in ("aggregator", "client-1", "client-2", "client-3")]
    for model in models[1:]:  # every client holds the whole model, thresholds included
        assert model["ensemble"] == models[0]["ensemble"] and model["splits"] == models[0]["splits"]
    for client in ("client-1", "client-2", "client-3"):
        metrics = json.loads((run / client / "metrics.json").read_text())
        assert metrics["rows"] == 100 and metrics["metrics"]["auc"] > 0.95
    frame = pd.read_csv(run / "client-1" / "predictions.csv")
    assert len(frame) == 100


@pytest.mark.parametrize("request_", [{"op": np.array([1, 2])}, {"op": "predict", "rows": np.array([7, 999])},
                                      {"op": "finish", "rows": np.array([0])}, ["predict"]])
def test_a_host_refuses_malformed_scoring_requests(request_):
    from isthmus.algorithms.hetero_secureboost import tags
    from isthmus.algorithms.hetero_secureboost.algorithm import BoostHostPart
    from isthmus.errors import ProtocolError
    from isthmus.transport.local import LocalHub

    hub = LocalHub(["guest", "host"])
    hub.channel("guest").send("host", tags.SERVE, request_)
    with pytest.raises(ProtocolError, match="peer='guest'"):
        BoostHostPart(trained=None, guest="guest").serve(hub.channel("host"), np.zeros((10, 2)))
