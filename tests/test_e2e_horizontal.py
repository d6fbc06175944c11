"""Horizontal jobs: real client processes over mutual TLS (one crashing mid-run), resume, and the job plumbing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_parties
from sklearn.datasets import make_regression

from isthmus.demos.horizontal import make_horizontal_data
from isthmus.errors import ConfigError, DataError, PeerTimeoutError
from isthmus.horizontal.columns import check_same_columns
from isthmus.jobs.launcher import LaunchResult
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.jobs.parity import _horizontal
from isthmus.jobs.plan import make_plan
from isthmus.jobs.runner import run_party
from isthmus.jobs.spec import JobSpec, load_job, parse_job
from isthmus.transport.certs import create_federation
from isthmus.transport.local import LocalHub


def isthmus(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "isthmus", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def horizontal_job(folder: Path, files: list[tuple[Path, Path]], *, train: dict, aggregator_data: Path | None = None,
                   name: str = "e2e-horizontal", **options) -> Path:
    parties = {f"client-{n}": {"data": {"path": str(tr), "id": "id", "label": "y", "test": str(te)}}
               for n, (tr, te) in enumerate(files, start=1)}
    aggregator = {"data": {"path": str(aggregator_data), "id": "id", "label": "y"}} if aggregator_data else {}
    parties["aggregator"] = aggregator
    train = {"model": "homo_lr", "batch_size": 16, "learning_rate": 0.05, **train}
    job = {"job": name, **options, "parties": loopback_parties(parties), "steps": [{"train": train}, {"evaluate": {}}]}
    return write_job(folder / f"{name}.yaml", job)


def run_in_process(spec: JobSpec, run: Path) -> None:
    """Every party of the job as a thread over an in-process hub (no fault injection: it would end the tests)."""
    hub = LocalHub(spec.parties)
    certs = run / "certs"
    if not certs.exists():
        create_federation(certs, sorted(spec.parties))
    run_parties({party: (lambda p=party: run_party(spec, p, hub.channel(p, spec.name), run / p, certs_dir=certs))
                 for party in spec.parties}, timeout=60)


def model(run: Path, party: str) -> dict:
    return json.loads((run / party / "model.json").read_text())


# --- four client processes, secure aggregation, client-4 crashing in round 3 ------------------------


@pytest.fixture(scope="module")  # real processes, > 10 s: the crash costs a connect timeout
def dropout_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("horizontal")
    files = make_horizontal_data(folder / "data")
    pooled_test = folder / "data" / "pooled-test.csv"
    pd.concat([pd.read_csv(test) for _, test in files]).to_csv(pooled_test, index=False)
    job = horizontal_job(folder, files, aggregator_data=pooled_test, connect_timeout=10, audit_payloads=True,
                         train={"rounds": 6, "secure_aggregation": True, "fail_after_round": {"client-4": 3}})
    result = isthmus("parity", str(job), "--out", str(folder / "run"))
    assert result.returncode == 0, result.stdout + result.stderr
    return folder / "run", files


@pytest.mark.e2e
@pytest.mark.slow
def test_a_client_crashing_mid_run_leaves_the_job_standing(dropout_run):
    run, files = dropout_run
    history = model(run, "aggregator")["history"]
    assert [sorted(h["clients"]) for h in history] == [[f"client-{n}" for n in range(1, 5)]] * 2 + [
        [f"client-{n}" for n in range(1, 4)]] * 4
    assert all("unreachable" in h["left_out"]["client-4"] for h in history[2:])
    # client-4 crashed after sharing its mask keys: the sum is still exact once its masks are rebuilt
    survivors_rows = sum(len(pd.read_csv(train)) for train, _ in files[:3])
    assert history[2]["total_weight"] == survivors_rows
    dropped = [json.loads(line) for line in (run / "client-4" / "events.jsonl").read_text().splitlines()]
    assert dropped[-1]["status"] == "dropped out"
    assert not (run / "client-4" / "model.json").exists()


@pytest.mark.e2e
@pytest.mark.slow
def test_every_survivor_keeps_the_final_model_and_scores_its_own_test_rows(dropout_run):
    run, _ = dropout_run
    final = model(run, "aggregator")
    for party in ("client-1", "client-2", "client-3"):
        mine = model(run, party)
        assert mine["coef"] == final["coef"] and mine["intercept"] == final["intercept"]
        assert mine["rounds_fitted"] == 6
        assert json.loads((run / party / "metrics.json").read_text())["metrics"]["auc"] > 0.95
    assert final["history"][-1]["central_metrics"]["auc"] > 0.95  # the aggregator evaluates on its own table
    report = json.loads((run / "parity.json").read_text())
    assert report["metric"] == "auc" and set(report["parties"]) == {"client-1", "client-2", "client-3", "aggregator"}
    assert report["delta"] <= 0.02, report


@pytest.mark.e2e
@pytest.mark.slow
def test_no_training_row_or_label_leaves_a_client(dropout_run):
    run, files = dropout_run
    payloads = sorted((run / "client-1" / "audit-payloads").glob("*.bin"))
    assert len(payloads) >= 6 * 4  # four stages a round under secure aggregation
    sent = b"".join(p.read_bytes() for p in payloads)
    table = pd.read_csv(files[0][0])
    features = table.drop(columns=["id", "y"]).to_numpy(np.float64)
    for row in features[:20]:
        assert row.tobytes() not in sent
    assert table["y"].to_numpy(np.float64)[:16].tobytes() not in sent
    assert table["id"].iloc[0].encode() not in sent


# --- resume: the aggregator process continues after the checkpoint of an earlier run -------------


@pytest.mark.e2e
@pytest.mark.slow
def test_the_aggregator_resumes_from_its_checkpoint(tmp_path):
    files = make_horizontal_data(tmp_path / "data", clients=3)
    run = tmp_path / "run"
    run_in_process(load_job(horizontal_job(tmp_path, files, train={"rounds": 2}, name="resumable")), run)
    before = model(run, "aggregator")["history"]

    longer = load_job(horizontal_job(tmp_path, files, train={"rounds": 4}, name="resumable"))  # same certs
    processes = [subprocess.Popen([sys.executable, "-m", "isthmus", "run", str(tmp_path / "resumable.yaml"),
                                   "--party", party, "--certs", str(run / "certs"), "--out", str(run),
                                   "--resume" if party == "aggregator" else "--force"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for party in sorted(longer.parties)]
    for process in processes:
        assert process.wait(timeout=90) == 0, process.stderr.read()

    after = model(run, "aggregator")["history"]
    assert [h["round"] for h in after] == [1, 2, 3, 4]
    assert after[:2] == before
    assert "resuming after round 2" in (run / "aggregator" / "party.log").read_text()
    assert model(run, "client-1")["rounds_fitted"] == 2  # the new client processes trained rounds 3 and 4 only


# --- the job plumbing, in one process -----------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.slow
def test_clients_stop_soon_when_the_aggregators_machine_vanishes(tmp_path):
    """A client waits for the aggregator's next request and sends nothing meanwhile, so when the aggregator's
    machine drops off the network (no abort, no closed connection: a stopped process stands in for it), only
    the wait can tell. It waited out the job's timeout, ten minutes; it now ends once the aggregator has
    answered no ping for the job's connect timeout, naming it."""
    files = make_horizontal_data(tmp_path / "data")[:2]
    job = horizontal_job(tmp_path, files, connect_timeout=3, timeout=600, train={"rounds": 20_000})
    certs = tmp_path / "certs"
    assert isthmus("certs", str(certs), "aggregator", "client-1", "client-2").returncode == 0
    processes = {party: subprocess.Popen(
        [sys.executable, "-m", "isthmus", "run", str(job), "--party", party, "--certs", str(certs),
         "--out", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for party in ("aggregator", "client-1", "client-2")}
    events = tmp_path / "run" / "aggregator" / "events.jsonl"
    try:
        deadline = time.monotonic() + 120
        while '"epoch": 3,' not in (events.read_text() if events.exists() else ""):
            assert time.monotonic() < deadline and processes["aggregator"].poll() is None, "round 3 never came"
            time.sleep(0.1)
        processes["aggregator"].send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        outputs = {party: processes[party].communicate(timeout=120)[0] for party in ("client-1", "client-2")}
        assert time.monotonic() - stopped < 60, outputs
    finally:
        for process in processes.values():
            process.kill()
    for party, output in outputs.items():  # "no answer to pings", or a reply left unacknowledged if it was mid-send
        assert processes[party].returncode == 1 and "'aggregator'" in output, output


def test_homo_linr_job_in_process_matches_central_training(tmp_path):
    X, y = make_regression(600, 5, noise=5.0, random_state=3)
    files = []
    for n, rows in enumerate(np.array_split(np.arange(600), 3), start=1):
        frame = pd.DataFrame(X[rows], columns=[f"x{i}" for i in range(5)]).assign(y=y[rows])
        frame.insert(0, "id", [f"r{i}" for i in rows])
        paths = tmp_path / f"c{n}.csv", tmp_path / f"c{n}-test.csv"
        frame.iloc[:150].to_csv(paths[0], index=False)
        frame.iloc[150:].to_csv(paths[1], index=False)
        files.append(paths)
    job = horizontal_job(tmp_path, files, name="linr", train={"model": "homo_linr", "rounds": 10,
                                                                "secure_aggregation": False, "strategy": "fedprox",
                                                                "strategy_options": {"proximal_mu": 0.01}})
    spec = load_job(job)
    run_in_process(spec, tmp_path / "run")

    report = _horizontal(LaunchResult(spec, tmp_path / "run", 0.0), make_plan(spec, "aggregator").first("train").options)
    assert report["metric"] == "r2" and set(report["parties"]) == {"client-1", "client-2", "client-3"}
    assert report["federated"] > 0.95 and report["delta"] < 0.01, report
    assert not (tmp_path / "run" / "aggregator" / "metrics.json").exists()  # no data, nothing to evaluate


def test_clients_whose_columns_differ_in_order_stop_the_job_before_training_saying_how_to_align_them(tmp_path):
    """It said only "other columns ... first difference at position 0", though the client's `features` list
    reorders its columns without touching its file."""
    files = make_horizontal_data(tmp_path / "data", clients=2)
    swapped = pd.read_csv(files[1][0])
    columns = list(swapped.columns)
    columns[2], columns[3] = columns[3], columns[2]
    swapped[columns].to_csv(files[1][0], index=False)
    job = horizontal_job(tmp_path, files, train={"rounds": 2}, name="mismatch")
    with pytest.raises(AssertionError, match=f"client 'client-2' has the columns of 'client-1' in another order "
                                             f"\\(at position 0: '{columns[2]}' where 'client-1' has '{columns[3]}'\\); "
                                             "list them in the order of 'client-1' in the data 'features' of 'client-2'"):
        run_in_process(load_job(job), tmp_path / "run")
    assert not any((tmp_path / "run").glob("*/model.json"))

    raw = yaml.safe_load(job.read_text())
    raw["parties"]["client-2"]["data"]["features"] = list(pd.read_csv(files[0][0], nrows=0).columns.drop(["id", "y"]))
    run_in_process(parse_job(raw, base_dir=tmp_path), tmp_path / "run2")
    assert model(tmp_path / "run2", "client-2")["features"] == model(tmp_path / "run2", "client-1")["features"]


def test_a_test_file_lacking_a_training_column_fails_before_the_client_trains(tmp_path):
    """It trained through every round and failed at `evaluate` ("the table lacks the model's columns")."""
    files = make_horizontal_data(tmp_path / "data", clients=2)
    test_file = pd.read_csv(files[0][1])
    test_file.drop(columns=[test_file.columns[3]]).to_csv(files[0][1], index=False)
    spec = load_job(horizontal_job(tmp_path, files, train={"rounds": 2}, name="short-test"))
    hub = LocalHub(spec.parties)
    with pytest.raises(DataError, match=f"party 'client-1': its test file .* lacks 1 of the columns it trains on: "
                                        f"'{test_file.columns[3]}'"):
        run_party(spec, "client-1", hub.channel("client-1", spec.name), tmp_path / "run" / "client-1")
    with pytest.raises(PeerTimeoutError):  # it never told the aggregator its columns
        hub.channel("aggregator", spec.name).recv("client-1", "homo-linear/features", timeout=0.1)


def test_other_columns_are_named():
    with pytest.raises(DataError, match=r"client 'b' has other columns than 'a' \(3 against 3\); it lacks 1 of those "
                                        r"of 'a' \('x2'\); it has others \('z'\)"):
        check_same_columns("a", ["x0", "x1", "x2"], "b", ["x0", "x1", "z"])
    with pytest.raises(DataError, match=r"client 'b' has other columns than 'a' \(2 against 3\); it lacks 1"):
        check_same_columns("a", ["x0", "x1", "x2"], "b", ["x0", "x1"])
    with pytest.raises(DataError, match=r"\(3 against 3\)$"):  # a hostile client repeating a name
        check_same_columns("a", ["x0", "x1", "x1"], "b", ["x0", "x0", "x1"])
    check_same_columns("a", ["x0", "x1"], "b", ["x0", "x1"])


def test_client_data_may_name_a_test_file_relative_to_the_job(tmp_path):
    raw = {"job": "j", "parties": {"client-1": {"address": "127.0.0.1:1", "data": {"path": "a.csv", "id": "id",
                                                                                   "label": "y", "test": "t.csv"}}},
           "steps": ["train"]}
    spec = parse_job(raw, base_dir=tmp_path)
    assert spec.party("client-1").data.test == tmp_path / "t.csv"
    written = yaml.safe_load(yaml.safe_dump(spec.to_dict()))
    assert written["parties"]["client-1"]["data"]["test"] == str(tmp_path / "t.csv")


@pytest.mark.parametrize("options, message", [
    ({"rounds": 0}, "rounds"),
    ({"epochs": 3}, "unknown option 'epochs'"),
    ({"strategy": "fedmagic"}, "fedmagic"),
    ({"dp": {"clip_norm": 1.0}}, "noise_multiplier"),
    ({"dropout_tolerance": 1.5}, "dropout_tolerance"),
    ({"fail_after_round": {"client-1": "soon"}}, "fail_after_round"),
])
def test_bad_horizontal_options_are_refused_clearly(options, message):
    from isthmus.algorithms.registry import algorithm

    with pytest.raises(ConfigError, match=message):
        algorithm("homo_lr").Options.parse(options, where="train")


def test_strategy_options_the_strategy_does_not_take_are_refused_when_the_job_loads():
    from isthmus.algorithms.registry import algorithm

    with pytest.raises(ConfigError, match="strategy_options"):
        algorithm("homo_lr").Options.parse({"strategy_options": {"eta": 0.1}}, where="train")


def test_secure_aggregation_needs_the_certificate_folder_and_trusts_only_the_clients_keys(tmp_path):
    from isthmus.horizontal.keyring import keyring_from_folder

    files = make_horizontal_data(tmp_path / "data", clients=2)
    spec = load_job(horizontal_job(tmp_path, files, train={"rounds": 1}, name="keys"))
    hub = LocalHub(spec.parties)
    with pytest.raises(AssertionError, match="secure aggregation needs the party's key folder"):
        # the clients alone: they fail before sending anything, and a client's failure is not an abort
        # (the aggregator outlives crashed clients), so an aggregator here would wait out its timeout
        run_parties({p: (lambda p=p: run_party(spec, p, hub.channel(p, spec.name), tmp_path / "run" / p))
                     for p in spec.with_role("client")}, timeout=60)
    certs = tmp_path / "certs"
    create_federation(certs, sorted(spec.parties))
    clients = spec.with_role("client")
    at_aggregator = keyring_from_folder(certs, "aggregator", clients)
    at_client = keyring_from_folder(certs, "client-1", clients)
    assert set(at_aggregator.pinned) == set(at_client.pinned) == {"client-1", "client-2"}  # not the aggregator
    assert at_aggregator.signing_key is None and at_client.signing_key is not None
