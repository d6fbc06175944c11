"""Horizontal SecureBoost over the in-process hub: bins agreed from secure sums, the trees a booster
grows on the pooled rows, every client with the whole model, and clients dropping out."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_parties
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.metrics import roc_auc_score

from isthmus.crypto.secagg import SecAggError
from isthmus.errors import IsthmusError, ProtocolError
from isthmus.horizontal.participant import REQUEST_TAG
from isthmus.horizontal.secure_sum import Keyring, SecAggConfig, SecAggServer, SecAggTerms
from isthmus.transport.local import LocalChannel, LocalHub
from isthmus.tree.booster import train
from isthmus.algorithms.homo_secureboost.aggregator import HomoSecureBoostAggregator
from isthmus.algorithms.homo_secureboost.binning import (
    COARSE_EDGES,
    PARTS,
    REFINEMENTS,
    GridSketch,
    coarse_counts,
    refined_counts,
)
from isthmus.algorithms.homo_secureboost.client import HomoSecureBoostClient
from isthmus.algorithms.homo_secureboost.model import HomoTreeModel, Split, replay
from isthmus.tree.params import BoostParams
from isthmus.tree.party import LocalParty, LocalRouter
from tests.payload_helpers import SentBytes


class Crash(Exception):
    """Raised inside a client thread to make it vanish without a word, like a killed process."""


class CrashingChannel(LocalChannel):
    """A client's channel that dies when the ``at``-th request of ``op`` arrives."""

    def __init__(self, hub: LocalHub, party: str, op: str, at: int):
        super().__init__(hub, party, "job")
        self.op, self.left = op, at

    def recv(self, frm, tag, timeout=None):
        request = super().recv(frm, tag, timeout)
        if tag == REQUEST_TAG and request.get("op") == self.op:
            self.left -= 1
            if self.left == 0:
                raise Crash(f"{self.party} crashed at {self.op} of round {request['round']}")
        return request


def client_terms(names, secagg=None, min_clients=2):
    """Each client's own terms for the job's secure sums (keys made in memory), and the aggregator's keyring."""
    secagg = secagg or SecAggConfig()
    keyrings = Keyring.generate(names)
    quorum = secagg.quorum(len(names), min_clients)
    terms = {name: SecAggTerms(keyrings[name], secagg, quorum, "isthmus") for name in names}
    return terms, keyrings[names[0]].public()


def federate(parts, params, *, bins=16, secagg=None, min_clients=2, crash=None, round_timeout=20.0, audit=None,
             settle=False):
    """Train over ``parts`` ({client: (X, y)}); ``crash=(client, op, n)`` kills that client at its n-th ``op``.
    Returns the aggregator and each party's model; with ``settle``, the isthmus error a party ended with instead
    of raising the first one."""
    names = list(parts)
    hub = LocalHub([*names, "aggregator"], audit_dir=audit, keep_payloads=audit is not None)
    terms, keyring = client_terms(names, secagg, min_clients)
    aggregator = HomoSecureBoostAggregator(params, bins=bins, secagg=secagg, min_clients=min_clients,
                                           round_timeout=round_timeout, keyring=keyring)

    def outcome(role):
        try:
            return role()
        except Crash as exc:
            return str(exc)
        except IsthmusError as exc:
            if settle:
                return exc
            raise

    def client_role(name):
        X, y = parts[name]
        channel = CrashingChannel(hub, name, *crash[1:]) if crash and crash[0] == name else hub.channel(name)
        return HomoSecureBoostClient(X, y, terms=terms[name], timeout=60).serve(channel, "aggregator")

    roles = {"aggregator": lambda: outcome(lambda: aggregator.fit(hub.channel("aggregator"), names))}
    for name in names:
        roles[name] = lambda name=name: outcome(lambda: client_role(name))
    return aggregator, run_parties(roles)


def split_rows(X, y, n, seed=0):
    order = np.random.default_rng(seed).permutation(len(y))
    return {f"client-{i + 1}": (X[rows], y[rows]) for i, rows in enumerate(np.array_split(order, n))}


def pooled_reference(parts, params, binner):
    X = np.vstack([X for X, _ in parts.values()])
    y = np.concatenate([y for _, y in parts.values()])
    party = LocalParty("pooled", X, binner=binner)
    ensemble = train(params, y, [party])
    return X, y, ensemble.predict_raw([LocalRouter(party.splits, X)], len(X)), ensemble


@pytest.fixture(scope="module")
def breast_with_gaps():
    X, y = load_breast_cancer(return_X_y=True)
    X = X.copy()
    X[np.random.default_rng(1).random(X.shape) < 0.05] = np.nan  # missing values go their learned way
    return X, y


def test_same_trees_as_the_booster_on_the_pooled_rows(breast_with_gaps):
    parts = split_rows(*breast_with_gaps, 3)
    params = BoostParams(n_trees=4, max_depth=3, learning_rate=0.3)
    _, models = federate(parts, params)
    model = models["aggregator"]
    X, y, raw, ensemble = pooled_reference(parts, params, model.binner)
    assert np.array_equal(model.decision_function(X), raw)  # lossless: the same integers, the same trees
    assert [t.left for t in model.trees] == [t.left for t in ensemble.trees]
    for client in parts:  # every client holds the whole model
        assert models[client].to_dict() == model.to_dict()
    assert roc_auc_score(y, model.scores(X)) > 0.98
    importance = model.to_dict()["feature_importance"]
    assert sum(f["split_count"] for f in importance.values()) == sum(t.n_nodes // 2 for t in model.trees)


def test_multiclass_and_regression_match_the_pooled_booster():
    X, y = load_iris(return_X_y=True)
    params = BoostParams(n_trees=3, max_depth=2, objective="multiclass", n_classes=3)
    parts = split_rows(X, y.astype(float), 2)
    _, models = federate(parts, params, bins=8)
    X_all, _, raw, _ = pooled_reference(parts, params, models["aggregator"].binner)
    assert np.array_equal(models["aggregator"].decision_function(X_all), raw)
    assert models["client-1"].scores(X_all).shape == (150, 3)

    target = X[:, 0] * 3 - X[:, 2]
    params = BoostParams(n_trees=3, max_depth=2, objective="regression")
    parts = split_rows(X[:, 1:], target, 2)
    _, models = federate(parts, params, bins=8)
    X_all, _, raw, _ = pooled_reference(parts, params, models["aggregator"].binner)
    # the mean label crosses the secure sum in fixed point: equal up to its rounding
    assert np.abs(models["aggregator"].decision_function(X_all) - raw).max() < 1e-6


def test_a_client_dropping_out_of_the_first_sum_is_left_out_and_the_others_finish(breast_with_gaps):
    X, y = breast_with_gaps
    parts = split_rows(X, y, 4)
    aggregator, models = federate(parts, BoostParams(n_trees=2, max_depth=3), crash=("client-2", "init", 1),
                                  round_timeout=2.0)
    assert models["client-2"].startswith("client-2 crashed at init")
    assert set(aggregator.history_["left"]) == {"client-2"}
    assert aggregator.history_["finished_with"] == ["client-1", "client-3", "client-4"]
    model = models["aggregator"]
    for client in ("client-1", "client-3", "client-4"):
        assert models[client].to_dict() == model.to_dict()
    others = {name: part for name, part in parts.items() if name != "client-2"}
    X_others, _, raw, _ = pooled_reference(others, BoostParams(n_trees=2, max_depth=3), model.binner)
    assert np.array_equal(model.decision_function(X_others), raw)  # the others' pooled rows, nothing of client-2's


def test_a_client_dropping_out_after_the_first_sum_ends_the_job_naming_it(breast_with_gaps, monkeypatch):
    """The level was summed again without it, and the parents' sums (with its rows) minus the children's
    (without) gave the aggregator the dropped client's histograms: with every sum over the same clients
    it never holds two sums that differ by one of them."""
    recovered = []
    finish = SecAggServer.finish

    def recording(server, replies):
        recovered.append(server.survivors)
        return finish(server, replies)

    monkeypatch.setattr(SecAggServer, "finish", recording)
    # secure sums: init, 3 refinements, gradients, root level; the 7th masked input is the first
    # children's level, after client-2 has handed out its key shares
    aggregator, outcomes = federate(split_rows(*breast_with_gaps, 4), BoostParams(n_trees=3, max_depth=3),
                                    crash=("client-2", "masked_input", 7), round_timeout=2.0, settle=True)
    assert outcomes["client-2"].startswith("client-2 crashed at masked_input")
    error = outcomes["aggregator"]
    assert isinstance(error, SecAggError) and "level (round 8): client-2 left the job" in str(error), error
    for client in ("client-1", "client-3", "client-4"):  # told, not left waiting
        assert "ended the job without a model" in str(outcomes[client])
    assert len(recovered) == 6 and all(s == ["client-1", "client-2", "client-3", "client-4"] for s in recovered)


def test_too_many_dropouts_end_the_job_with_a_clear_error(breast_with_gaps):
    _, outcomes = federate(split_rows(*breast_with_gaps, 3), BoostParams(n_trees=2), min_clients=3,
                           crash=("client-3", "init", 1), round_timeout=1.0, settle=True)
    assert outcomes["client-3"].startswith("client-3 crashed")
    assert isinstance(outcomes["aggregator"], SecAggError)
    assert "only 2 clients advertised keys, 3 needed" in str(outcomes["aggregator"])
    assert str(outcomes["aggregator"]).endswith("; not client-3")  # who, not only how many
    for survivor in ("client-1", "client-2"):  # told, not left waiting
        assert "ended the job without a model" in str(outcomes[survivor])


def test_no_client_value_or_plain_count_leaves_a_client(tmp_path, breast_with_gaps):
    X, y = breast_with_gaps
    parts = split_rows(X, y, 2)
    federate(parts, BoostParams(n_trees=2, max_depth=2), audit=tmp_path)
    payloads = SentBytes(b"".join(p.read_bytes() for p in (tmp_path / "client-1").glob("audit-payloads/*.bin")))
    assert len(payloads) > 10_000
    X1, y1 = parts["client-1"]
    for value in X1[:50][~np.isnan(X1[:50])].ravel():
        if value not in (0.0, 1.0):
            assert np.float64(value).tobytes() not in payloads
    counts = coarse_counts(X1)
    for row in counts:  # the client's own count vector of a column, as it would go out unmasked
        assert row.tobytes() not in payloads
    assert y1[:64].astype(np.float64).tobytes() not in payloads


def test_agreed_split_points_sit_at_the_quantiles():
    """Offset values (years), heavy tails and few distinct values all get quantile bins."""
    rng = np.random.default_rng(3)
    columns = [rng.integers(1950, 2020, 5000).astype(float), rng.lognormal(8, 2, 5000),
               -rng.exponential(3, 5000), rng.integers(0, 4, 5000).astype(float)]
    bins = 10
    for column in columns:
        sketch = GridSketch(coarse_counts(column[:, None])[0])
        for _ in range(REFINEMENTS):
            cells = sketch.cells_to_refine(bins)
            sketch.refine(refined_counts([np.sort(column)], [cells]))
        points = sketch.split_points(bins)
        ranks = np.searchsorted(np.sort(column), points, side="right") / len(column)
        distinct = np.unique(column)
        if distinct.size <= bins:
            assert len(points) == distinct.size - 1  # one bin per value
        else:
            assert len(points) >= bins - 2
            nearest = np.abs(ranks[:, None] - np.arange(1, bins)[None, :] / bins).min(axis=1)
            assert nearest.max() < 0.02, (column[:5], points, ranks)


def test_refined_counts_must_add_up():
    sketch = GridSketch(coarse_counts(np.arange(1.0, 101.0)[:, None])[0])
    cells = sketch.cells_to_refine(4)
    assert cells.shape[1] == 2 and (cells[:, 0] < cells[:, 1]).all()
    with pytest.raises(ValueError, match="add up"):
        sketch.refine(np.ones(len(cells) * PARTS, dtype=np.int64))
    assert len(COARSE_EDGES) == 195


def test_a_client_refuses_splits_that_name_no_leaf_or_threshold(breast_with_gaps):
    X, y = breast_with_gaps
    _, models = federate(split_rows(X, y, 2), BoostParams(n_trees=1, max_depth=2))
    model = models["aggregator"]
    records = model.records()
    assert replay(model, records, peer="aggregator", tag="stop").to_dict() == model.to_dict()
    saved = HomoTreeModel.from_dict(json.loads(json.dumps(model.to_dict())))  # what model.json holds
    assert np.array_equal(saved.decision_function(X), model.decision_function(X))
    bad = [dict(records[0], splits=[[0, 0, 99, True, 1.0]])]  # bin past the feature's thresholds
    with pytest.raises(ProtocolError, match="names no leaf"):
        replay(model, bad, peer="aggregator", tag="stop")
    twice = [dict(records[0], splits=[records[0]["splits"][0], records[0]["splits"][0]])]  # node 0 split twice
    with pytest.raises(ProtocolError, match="names no leaf"):
        replay(model, twice, peer="aggregator", tag="stop")
    fresh = HomoTreeModel(model.feature_names, model.binner, model.objective, model.init_score)
    fresh.start_tree(0)
    assert fresh.split(Split(0, 0, 0, True, 1.0)) == (1, 2)


def test_options_that_cannot_work_are_refused():
    with pytest.raises(IsthmusError, match="early stopping"):
        HomoSecureBoostAggregator(BoostParams(early_stopping_rounds=2, validation_fraction=0.2))
    with pytest.raises(IsthmusError, match="n_classes"):
        HomoSecureBoostAggregator(BoostParams(objective="multiclass"))
    with pytest.raises(IsthmusError, match="min_clients"):
        HomoSecureBoostAggregator(BoostParams(), min_clients=1, secagg=SecAggConfig())
