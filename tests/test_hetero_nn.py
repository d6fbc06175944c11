"""hetero_nn over the in-process channel: the protected interactive layer trains the same network as
PyTorch on the pooled columns, with any number of hosts, for every task; parts save as JSON and serve."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.metrics import r2_score, roc_auc_score

pytest.importorskip("torch")

from conftest import run_parties  # noqa: E402
from isthmus.algorithms.base import Party, Roster  # noqa: E402
from isthmus.algorithms.hetero_nn.algorithm import HeteroNN  # noqa: E402
from isthmus.algorithms.hetero_nn.options import NNOptions  # noqa: E402
from isthmus.data.table import PartyTable  # noqa: E402
from isthmus.errors import ConfigError  # noqa: E402
from isthmus.transport.local import LocalHub  # noqa: E402

NN = HeteroNN()


def split(X: np.ndarray, y: np.ndarray, parties: int) -> dict[str, PartyTable]:
    """The columns dealt out: guest first, then host-1, host-2, ...; every party holds every row."""
    names = ["guest"] + [f"host-{i}" for i in range(1, parties)]
    blocks = np.array_split(np.arange(X.shape[1]), parties)
    ids = np.array([f"r{i}" for i in range(len(X))])
    return {name: PartyTable(name, ids, X[:, cols].astype(np.float64), [f"x{c}" for c in cols],
                             y.astype(np.float64) if name == "guest" else None)
            for name, cols in zip(names, blocks)}


def train(tables: dict[str, PartyTable], options: NNOptions, tmp_path, hub: LocalHub | None = None):
    """Every party's fit as a thread, then a joint prediction of the held-out rows; the parts saved."""
    roster = Roster({name: "guest" if name == "guest" else "host" for name in tables})
    hub = hub or LocalHub(list(tables))

    def role(name):
        def run():
            party = Party(name, roster, hub.channel(name), tables[name], tmp_path)
            part = NN.fit(party, options)
            if name == "guest":
                scores = part.predict(party.channel, tables[name].features, part.evaluation_rows)
                part.finish(party.channel)
                return part, scores
            part.serve(party.channel, tables[name].features)
            return part
        return run

    return run_parties({name: role(name) for name in tables}, timeout=300)


def pooled(tables, options, task, evaluation):
    """The reference on the same rows: trained on the others, scored on the held-out ones."""
    X = np.hstack([t.features for t in tables.values()])
    owners = [name for name, t in tables.items() for _ in t.feature_names]
    y = tables["guest"].label
    train_rows = np.setdiff1d(np.arange(len(y)), evaluation)
    roster = Roster({name: "guest" if name == "guest" else "host" for name in tables})
    return NN.reference_by_party(options, task, X[train_rows], y[train_rows], X[evaluation], owners, roster).scores


SMALL = dict(bottom={"guest": [4], "host": [4]}, interactive_units=4, top=[4, "relu"], key_bits=1024,
             validation_fraction=0.3, batch_size=64, learning_rate=0.02)


def test_protected_training_with_two_hosts_matches_pytorch_on_pooled_columns(tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    rows = np.random.default_rng(0).choice(len(y), 300, replace=False)
    tables = split(X[rows], y[rows], 3)
    options = NNOptions(epochs=4, **SMALL)
    results = train(tables, options, tmp_path)
    guest, scores = results["guest"]
    evaluation = guest.evaluation_rows
    federated = roc_auc_score(tables["guest"].label[evaluation], scores)
    centralised = roc_auc_score(tables["guest"].label[evaluation], pooled(tables, options, "binary", evaluation))
    assert federated > 0.95 and abs(federated - centralised) < 0.02, (federated, centralised)
    # each part is plain JSON and holds one share of W_h only
    saved = json.loads(guest.save(tmp_path).read_text())
    host = json.loads(results["host-1"].save(tmp_path).read_text())
    assert np.shape(saved["interactive"]["host-1"]) == np.shape(host["noise_share"]) == (4, 4)
    w_guest = np.array(saved["interactive"]["host-1"])
    assert not np.allclose(w_guest, 0) and np.abs(np.array(host["noise_share"])).max() > 0.1
    assert len(guest.trained.history) == 4 and all(r["seconds"] > 0 for r in guest.trained.history)


def test_multiclass_and_regression_match_the_pooled_reference(tmp_path):
    """Split learning (plain) and PyTorch on pooled columns train the same network for the other tasks."""
    X, y = load_wine(return_X_y=True)
    tables = split(X, y, 2)
    options = NNOptions(epochs=30, protection="plain", **{**SMALL, "bottom": {"guest": [8], "host": [8]}})
    guest, scores = train(tables, options, tmp_path)["guest"]
    evaluation, labels = guest.evaluation_rows, tables["guest"].label[guest.evaluation_rows]
    assert guest.task == "multiclass" and scores.shape == (len(evaluation), 3)
    federated = np.mean(guest.classes[scores.argmax(1)] == labels)
    centralised = np.mean(np.unique(y)[pooled(tables, options, "multiclass", evaluation).argmax(1)] == labels)
    assert federated > 0.9 and abs(federated - centralised) <= 0.04, (federated, centralised)

    X, y = load_diabetes(return_X_y=True)
    tables = split(X, (y - y.mean()) / y.std(), 3)
    options = NNOptions(task="regression", epochs=30, protection="plain", **SMALL)
    guest, scores = train(tables, options, tmp_path)["guest"]
    evaluation = guest.evaluation_rows
    federated = r2_score(tables["guest"].label[evaluation], scores)
    centralised = r2_score(tables["guest"].label[evaluation], pooled(tables, options, "regression", evaluation))
    assert federated > 0.3 and abs(federated - centralised) < 0.05, (federated, centralised)


def test_saved_parts_load_and_score_jointly_with_a_fresh_host_key(tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    tables = split(X[:120], y[:120], 2)
    options = NNOptions(epochs=1, **SMALL)
    results = train(tables, options, tmp_path)
    (guest, scores), host = results["guest"], results["host-1"]
    (tmp_path / "g").mkdir(), (tmp_path / "h").mkdir()
    loaded_guest = NN.load("guest", json.loads(guest.save(tmp_path / "g").read_text()))
    loaded_host = NN.load("host", json.loads(host.save(tmp_path / "h").read_text()))
    hub = LocalHub(["guest", "host-1"])

    def score():
        channel = hub.channel("guest")
        again = loaded_guest.predict(channel, tables["guest"].features, guest.evaluation_rows)
        loaded_guest.finish(channel)
        return again

    again = run_parties({"guest": score, "host-1": lambda: loaded_host.serve(hub.channel("host-1"),
                                                                              tables["host-1"].features)})["guest"]
    assert loaded_host.trained.link.keys[0] != host.trained.link.keys[0]  # no private key is ever saved
    np.testing.assert_allclose(again, scores, atol=1e-4)  # fixed-point rounding only


@pytest.mark.parametrize("options, error", [
    (dict(protection="plain"), "benchmark_only_plaintext: true"),
    (dict(bottom={"guest": [4]}), "bottom names no layers for party 'host-1'"),
])
def test_jobs_the_model_cannot_run_safely_are_refused_at_load(options, error):
    with pytest.raises(ConfigError, match=error):
        NN.check(Roster({"guest": "guest", "host-1": "host"}), NNOptions(**options), allow_plaintext=False)


@pytest.mark.parametrize("bottom, error", [
    ({"guest": [0]}, "width 0 must be an integer"),
    ({"guest": ["relu", "tanh"]}, "two activations in a row"),
    ({"guest": ["softmax"]}, "relu"),
])
def test_layer_spec_errors_are_named(bottom, error):
    with pytest.raises(ConfigError, match=error):
        NNOptions(bottom=bottom)
