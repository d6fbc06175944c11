"""The aggregator and client roles over in-process channels, one thread per party."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import run_parties
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from isthmus.horizontal import FedAvg, LinearClient, LinearModel, run_aggregator, run_client
from isthmus.horizontal.participant import REQUEST_TAG, ClientProtocol, reply_tag
from isthmus.horizontal.partition import iid
from isthmus.horizontal.simulation import in_memory_terms
from isthmus.transport.local import LocalHub


def _hub(names, **kwargs):
    return LocalHub(["aggregator", *names], **kwargs)


def _client_roles(hub, clients, terms, idle_timeout=30.0):
    return {
        name: (lambda n=name, c=client: run_client(hub.channel(n), "aggregator", c, terms=terms[n],
                                                   idle_timeout=idle_timeout))
        for name, client in clients.items()
    }


def _read(path):
    table = pd.read_csv(path)
    return table.drop(columns=["id", "y"]).to_numpy(float), table["y"].to_numpy(float)


def test_breast_homo_fedavg_over_channels_matches_central_training(fate_data, tmp_path):
    parts = {name: _read(fate_data / f"breast_homo_{name}.csv") for name in ("guest", "host")}
    X_test, y_test = _read(fate_data / "breast_homo_test.csv")
    model = LinearModel(X_test.shape[1], learning_rate=0.05, batch_size=16, l2=1e-3)
    clients = {
        name: LinearClient(model, X, y, X_test=X_test, y_test=y_test, seed=i)
        for i, (name, (X, y)) in enumerate(parts.items())
    }
    hub = _hub(clients, audit_dir=tmp_path, keep_payloads=True)
    strategy = FedAvg(fraction_evaluate=1.0)
    terms, keyring = in_memory_terms(list(clients), len(clients))
    roles = _client_roles(hub, clients, terms)
    roles["aggregator"] = lambda: run_aggregator(
        hub.channel("aggregator"), list(clients), strategy, 10, keyring=keyring, round_timeout=30
    )
    results = run_parties(roles)

    fed = results["aggregator"]
    X_all = np.vstack([X for X, _ in parts.values()])
    y_all = np.concatenate([y for _, y in parts.values()])
    central = model.train(model.initial_parameters(), X_all, y_all, np.random.default_rng(0), epochs=10)
    fed_auc = roc_auc_score(y_test, model.predict(fed.parameters, X_test))
    assert abs(fed_auc - roc_auc_score(y_test, model.predict(central, X_test))) <= 0.005
    assert (
        fed_auc
        >= roc_auc_score(y_test, LogisticRegression(max_iter=1000).fit(X_all, y_all).decision_function(X_test)) - 0.01
    )
    assert fed.history[-1].evaluate_metrics["auc"] == pytest.approx(fed_auc)
    for name in clients:  # every client keeps its own copy of the final model
        assert all(np.array_equal(a, b) for a, b in zip(results[name].parameters, fed.parameters))
    sent = b"".join(hub.audits["guest"].sent_payloads())
    assert parts["guest"][0][:3].tobytes() not in sent and len(sent) > 0  # rows never leave the client


def test_a_client_that_stops_answering_mid_round_does_not_stop_training():
    X, y = make_classification(900, 5, random_state=1)
    model = LinearModel(5)
    names = [f"c{i}" for i in range(5)]
    clients = {
        name: LinearClient(model, X[rows], y[rows], seed=i) for i, (name, rows) in enumerate(zip(names, iid(len(y), 5)))
    }
    hub = _hub(names)
    terms, keyring = in_memory_terms(names, len(names))

    def crashes_after_sending_masked_input_in_round_2():
        channel, protocol = hub.channel("c4"), ClientProtocol("c4", clients["c4"], terms["c4"], "aggregator")
        while True:
            request = channel.recv("aggregator", REQUEST_TAG, timeout=30)
            channel.send("aggregator", reply_tag(request["op"], request["round"]), protocol.handle(request))
            if (request["op"], request["round"]) == ("masked_input", 2):
                return "crashed"

    roles = _client_roles(hub, {n: c for n, c in clients.items() if n != "c4"}, terms)
    roles["c4"] = crashes_after_sending_masked_input_in_round_2
    roles["aggregator"] = lambda: run_aggregator(hub.channel("aggregator"), names, FedAvg(), 3, keyring=keyring,
                                                 round_timeout=1.0)
    result = run_parties(roles)["aggregator"]

    assert [len(h.clients) for h in result.history] == [5, 5, 4]  # its round-2 input still counts
    assert "no reply within 1 s" in result.history[2].left_out["c4"]
    assert result.history[2].total_weight == len(y) - len(clients["c4"].y)


@pytest.mark.parametrize("secure", [False, True])
def test_malformed_updates_are_rejected_with_a_reason(secure):
    X, y = make_classification(600, 4, random_state=2)
    model = LinearModel(4)
    names = ["a", "b", "c", "evil"]
    clients = {
        name: LinearClient(model, X[rows], y[rows], seed=i) for i, (name, rows) in enumerate(zip(names, iid(len(y), 4)))
    }
    hub = _hub(names)
    terms, keyring = in_memory_terms(names, len(names), secure=secure)

    def evil():
        channel, protocol = hub.channel("evil"), ClientProtocol("evil", clients["evil"], terms["evil"], "aggregator")
        while True:
            request = channel.recv("aggregator", REQUEST_TAG, timeout=30)
            if request["op"] == "stop":
                return
            reply = protocol.handle(request)
            if request["op"] == "fit" and not secure:
                reply["parameters"][0] = np.ones(7)  # wrong shape
            if request["op"] == "masked_input":
                reply["masked"] = reply["masked"][:-1]  # wrong length
            if reply is not None:
                channel.send("aggregator", reply_tag(request["op"], request["round"]), reply)

    roles = _client_roles(hub, {n: c for n, c in clients.items() if n != "evil"}, terms)
    roles["evil"] = evil
    roles["aggregator"] = lambda: run_aggregator(
        hub.channel("aggregator"), names, FedAvg(), 2, secure=secure, keyring=keyring, round_timeout=10
    )
    result = run_parties(roles)["aggregator"]
    for record in result.history:
        assert record.clients == ["a", "b", "c"]
        assert "shape" in record.left_out["evil"]
    assert np.isfinite(result.parameters[0]).all()
