"""A vertical job with `contribution` and `record` steps, every party in-process: the values and the ledgers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_parties
from sklearn.datasets import load_breast_cancer

from isthmus.errors import ConfigError
from isthmus.incentive.ledger import Ledger, ledger_path
from isthmus.transport.keyfiles import federation_file, load_pinned_keys
from isthmus.incentive.verify import verify_ledgers
from isthmus.jobs.runner import run_party
from isthmus.jobs.spec import parse_job
from isthmus.transport.certs import create_federation
from isthmus.transport.local import LocalHub

PARTIES = ["arbiter", "guest", "host-1", "host-2"]


def write_tables(folder):
    """The guest has the label and 4 columns, host-1 10 informative ones, host-2 only noise."""
    data = load_breast_cancer()
    rng = np.random.default_rng(0)
    rows = rng.choice(len(data.target), 240, replace=False)
    ids = [f"p{i:04d}" for i in rows]
    frames = {
        "guest": pd.DataFrame(data.data[rows][:, [1, 4, 8, 9]], columns=["c1", "c4", "c8", "c9"]).assign(
            y=data.target[rows]),
        "host-1": pd.DataFrame(data.data[rows][:, 20:30], columns=[f"w{i}" for i in range(10)]),
        "host-2": pd.DataFrame(rng.normal(size=(len(rows), 3)), columns=["n0", "n1", "n2"]),
    }
    paths = {}
    for party, frame in frames.items():
        frame.insert(0, "id", ids)
        paths[party] = folder / f"{party}.csv"
        frame.to_csv(paths[party], index=False)
    return paths


# precision 6: 168 training rows are then a safe batch beside host-1's 10 columns (hetero_linear/batches.py)
TRAIN = {"model": "hetero_lr", "epochs": 3, "batch_size": 0, "learning_rate": 0.5, "validation_fraction": 0.3,
         "key_bits": 1024, "precision": 6}
STEPS = [{"train": TRAIN}, {"evaluate": {}}, {"contribution": {"budget": 1000}}]


def job(paths, *, steps=STEPS, record=True):
    return parse_job({
        "job": "ledger-job",
        "record": record,
        "parties": {
            "guest": {"address": "127.0.0.1:1", "data": {"path": str(paths["guest"]), "id": "id", "label": "y"}},
            "host-1": {"address": "127.0.0.1:2", "data": {"path": str(paths["host-1"]), "id": "id"}},
            "host-2": {"address": "127.0.0.1:3", "data": {"path": str(paths["host-2"]), "id": "id"}},
            "arbiter": {"address": "127.0.0.1:4"},
        },
        "steps": steps,
    }, base_dir=paths["guest"].parent)


def run_all(spec, run, certs=None):
    hub = LocalHub(PARTIES)
    run_parties({p: (lambda p=p: run_party(spec, p, hub.channel(p, spec.name), run / p, certs_dir=certs))
                 for p in PARTIES}, timeout=240)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ledger-job")
    spec = job(write_tables(folder))
    certs = folder / "certs"
    create_federation(certs, PARTIES)
    run_all(spec, folder / "run", certs)
    return folder, certs


def test_contributions_are_measured_and_every_party_keeps_the_same_report(finished):
    run = finished[0] / "run"
    reports = {p: json.loads((run / p / "contribution.json").read_text()) for p in PARTIES}
    assert all(r == reports["guest"] for r in reports.values())
    report = reports["guest"]
    assert report["method"] == "exact shapley" and report["metric"] == "auc"
    assert len(report["coalitions"]) == 8  # every coalition of guest, host-1, host-2
    values = report["values"]
    assert sum(values.values()) == pytest.approx(report["grand_value"] - report["empty_value"])
    assert report["empty_value"] == 0.5  # no feature: a constant score
    metrics = json.loads((run / "guest" / "metrics.json").read_text())["metrics"]
    assert report["grand_value"] == pytest.approx(metrics["auc"])  # the job's own model is the grand coalition
    assert report["shares"]["host-1"] > 0.3 and report["shares"]["host-2"] < 0.05  # host-2 holds only noise
    assert report["leave_one_out"]["host-2"] == pytest.approx(0.0, abs=0.01)
    assert sum(report["rewards"].values()) == pytest.approx(1000.0)


def test_every_party_appended_the_same_endorsed_record(finished):
    folder, certs = finished
    pinned = load_pinned_keys(federation_file(certs))
    result = verify_ledgers([ledger_path(certs, p) for p in PARTIES], pinned)
    assert result.ok, result.findings
    with Ledger(ledger_path(certs, "host-2"), read_only=True) as ledger:
        (entry,) = ledger.entries()
    body = entry.record.content
    assert sorted(body["parties"]) == PARTIES and sorted(entry.record.signatures) == PARTIES
    assert body["contributions"] == json.loads((folder / "run" / "host-2" / "contribution.json").read_text())
    assert body["parties"]["arbiter"]["input"] is None and body["parties"]["host-1"]["input"] is not None
    assert body["parties"]["guest"]["metrics"]["auc"] > 0.9
    opening = json.loads((folder / "run" / "host-1" / "input_commitment.json").read_text())
    assert opening["commitment"] == body["parties"]["host-1"]["input"] and opening["rows"] == 240


def test_beyond_exact_up_to_join_orders_are_sampled_and_coalitions_trained_once(tmp_path):
    sampled = {"contribution": {"exact_up_to": 2, "max_permutations": 4, "seed": 1}}
    run_all(job(write_tables(tmp_path), steps=[{"train": TRAIN}, sampled], record=False), tmp_path / "run")
    report = json.loads((tmp_path / "run" / "host-1" / "contribution.json").read_text())
    assert report["method"] == "sampled shapley" and 3 <= report["permutations"] <= 4
    assert sum(report["values"].values()) == pytest.approx(report["grand_value"] - report["empty_value"])
    valued = [json.loads(line)["coalition"] for line in (tmp_path / "run" / "guest" / "events.jsonl").read_text()
              .splitlines() if '"coalition"' in line]
    assert len(valued) == len(set(valued)) == len(report["coalitions"]) <= 8


def test_a_model_the_step_cannot_measure_is_refused_before_training(tmp_path):
    spec = job(write_tables(tmp_path), steps=[{"train": {**TRAIN, "fit_intercept": False}}, STEPS[2]])
    hub = LocalHub(PARTIES)
    with pytest.raises(ConfigError, match="fit_intercept"):
        run_party(spec, "guest", hub.channel("guest"), tmp_path / "guest")
    assert not (tmp_path / "guest" / "model.json").exists()


def test_a_recorded_job_without_keys_is_refused_before_training(tmp_path):
    spec = job(write_tables(tmp_path))
    with pytest.raises(ConfigError, match="record needs the party's certificate folder"):
        run_party(spec, "guest", LocalHub(PARTIES).channel("guest"), tmp_path / "guest")
    assert not (tmp_path / "guest" / "model.json").exists()


def test_every_coalitions_run_gives_a_host_the_batches_of_the_jobs_own_run(tmp_path, monkeypatch):
    """A coalition without host-1 (the widest party) has a lower batch floor: it used to cut its batches
    at other rows, so host-2 got gradients over new sets of the same rows, hence by difference over a few
    rows. Every coalition's run now uses the job's run's batches."""
    from isthmus.algorithms.hetero_linear.host import HeteroLinearHost

    seen: dict[str, set[tuple]] = {}
    batch = HeteroLinearHost._batch

    def spy(self, order, check):
        seen.setdefault(self._trainer.channel.party, set()).add(tuple(np.asarray(order["rows"]).tolist()))
        return batch(self, order, check)

    monkeypatch.setattr(HeteroLinearHost, "_batch", spy)
    steps = [{"train": {**TRAIN, "batch_size": 1, "epochs": 1}}, {"contribution": {"budget": 1000}}]
    run_all(job(write_tables(tmp_path), steps=steps, record=False), tmp_path / "run")
    for host in ("host-1", "host-2"):  # ("host" is the guest's own stand-in for coalitions without hosts)
        batches = seen[host]
        rows = [row for rows in batches for row in rows]
        assert len(rows) == len(set(rows)), f"{host} got batches cutting the rows differently: {sorted(map(len, batches))}"
