"""Horizontal FL: strategies, the numpy models, partitions, simulation, checkpoints and differential privacy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from isthmus.crypto.secagg import SecAggError
from isthmus.errors import ConfigError
from isthmus.horizontal import (
    DPConfig,
    FedAdam,
    FedAvg,
    FedProx,
    FedYogi,
    LinearClient,
    LinearModel,
    SecAggConfig,
    TooFewClientsError,
    simulate,
)
from isthmus.horizontal.dp import clip_l2
from isthmus.horizontal.partition import dirichlet_label_skew, iid, quantity_skew
from isthmus.horizontal.updates import Aggregate, aggregate_from_sum, contribution, flatten


def _aggregate(update):
    return Aggregate([np.asarray(u, dtype=float) for u in update], 10.0, 2, {})


@pytest.fixture(scope="module")
def blobs():
    X, y = make_classification(2400, 8, n_informative=5, random_state=3)
    return X, y.astype(float)


def _clients(X, y, n, seed=0, **model_args):
    model = LinearModel(X.shape[1], learning_rate=0.1, batch_size=32, **model_args)
    return {f"c{i}": LinearClient(model, X[rows], y[rows], seed=i) for i, rows in enumerate(iid(len(y), n, seed))}


def test_contributions_sum_to_a_sample_weighted_mean():
    like = [np.zeros(2), np.zeros(1)]
    a = contribution(np.array([1.0, 2.0, 3.0]), 1, {"loss": 0.5}, ["loss"])
    b = contribution(np.array([4.0, 5.0, 6.0]), 3, {"loss": 0.1}, ["loss"])
    aggregate = aggregate_from_sum(a + b, like, ["loss"], 2)
    assert np.allclose(flatten(aggregate.mean_update), [13 / 4, 17 / 4, 21 / 4])
    assert aggregate.total_weight == 4 and aggregate.metrics["loss"] == pytest.approx(0.2)


def test_fedavg_and_fedprox_move_to_the_mean_and_fedprox_asks_for_mu():
    params = [np.ones(3), np.zeros(1)]
    new = FedAvg().aggregate_fit(1, params, _aggregate([[1, -1, 0], [2]]))
    assert np.allclose(new[0], [2, 0, 1]) and np.allclose(new[1], [2])
    chosen, config = FedProx(proximal_mu=0.3).configure_fit(4, params, ["a", "b", "c"])
    assert chosen == ["a", "b", "c"] and config == {"round": 4, "proximal_mu": 0.3}


@pytest.mark.parametrize("strategy_cls", [FedAdam, FedYogi])
def test_server_optimisers_step_along_the_mean_update_and_checkpoint_their_state(strategy_cls):
    strategy = strategy_cls(eta=0.1)
    params = [np.zeros(2)]
    params = strategy.aggregate_fit(1, params, _aggregate([[1.0, -1.0]]))
    assert params[0][0] > 0 > params[0][1]
    twin = strategy_cls(eta=0.1)
    twin.load_state(strategy.state())
    again = [
        strategy.aggregate_fit(2, params, _aggregate([[0.5, 0.5]]))[0],
        twin.aggregate_fit(2, params, _aggregate([[0.5, 0.5]]))[0],
    ]
    assert np.array_equal(again[0], again[1])


def test_sampling_is_a_fraction_and_reproducible_per_round():
    clients = [f"c{i}" for i in range(20)]
    strategy = FedAvg(fraction_fit=0.25, min_fit_clients=2, seed=9)
    first, _ = strategy.configure_fit(3, [], clients)
    assert len(first) == 5 and first == FedAvg(fraction_fit=0.25, seed=9).configure_fit(3, [], clients)[0]
    assert first != strategy.configure_fit(4, [], clients)[0]


def test_partitions_cover_every_row_once_and_skew_as_asked():
    labels = np.repeat([0, 1, 2, 3], 250)
    for parts in (iid(1000, 7), dirichlet_label_skew(labels, 10, alpha=0.1), quantity_skew(1000, 10, alpha=0.5)):
        assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(1000))
    skewed = dirichlet_label_skew(labels, 10, alpha=0.1, seed=1)
    even = dirichlet_label_skew(labels, 10, alpha=1000.0, seed=1)
    dominant = lambda parts: np.mean([np.bincount(labels[p], minlength=4).max() / len(p) for p in parts])
    assert dominant(skewed) > 0.6
    assert dominant(even) < 0.35
    sizes = [len(p) for p in quantity_skew(1000, 10, alpha=0.3, seed=2)]
    assert max(sizes) > 3 * min(sizes)
    with pytest.raises(ConfigError):
        iid(3, 5)


def test_local_sgd_learns_and_fedprox_pulls_towards_the_global_model(blobs):
    X, y = blobs
    model = LinearModel(X.shape[1], learning_rate=0.1, epochs=5)
    trained = model.train(model.initial_parameters(), X, y, np.random.default_rng(0))
    reference = LogisticRegression(C=1e6).fit(X, y).score(X, y)
    assert model.metrics(trained, X, y)["accuracy"] > reference - 0.01
    start = model.initial_parameters()
    free = model.train(start, X, y, np.random.default_rng(0), epochs=1)
    held = model.train(start, X, y, np.random.default_rng(0), epochs=1, proximal_mu=5.0)
    assert np.linalg.norm(flatten(held)) < 0.7 * np.linalg.norm(flatten(free))


def test_secure_and_plain_simulation_reach_the_same_model(blobs):
    X, y = blobs
    plain = simulate(_clients(X, y, 5), FedAvg(), 3, secure=False)
    secure = simulate(_clients(X, y, 5), FedAvg(), 3)
    assert np.allclose(flatten(plain.parameters), flatten(secure.parameters), atol=1e-6)
    assert plain.history[-1].total_weight == secure.history[-1].total_weight == len(y)
    assert secure.history[-1].fit_metrics["loss"] == pytest.approx(plain.history[-1].fit_metrics["loss"], abs=1e-6)


def test_fedavg_over_clients_matches_central_training_quality(blobs):
    X, y = blobs
    fed = simulate(_clients(X, y, 4), FedAvg(), 5)
    model = LinearModel(X.shape[1], learning_rate=0.1, epochs=5)
    central = model.train(model.initial_parameters(), X, y, np.random.default_rng(0))
    assert abs(model.metrics(fed.parameters, X, y)["auc"] - model.metrics(central, X, y)["auc"]) < 0.005


def test_dropouts_after_masking_leave_the_round_standing_with_the_survivors(blobs):
    X, y = blobs
    clients = _clients(X, y, 10)
    dropped = {"c2", "c7"}
    faults = lambda r, stage, name: r == 2 and stage == "masked_input" and name in dropped
    result = simulate(clients, FedAvg(), 3, faults=faults)
    second = result.history[1]
    assert set(second.left_out) == dropped and len(second.clients) == 8
    assert second.total_weight == sum(len(clients[c].y) for c in second.clients)
    assert result.history[2].total_weight == len(y)


def test_too_many_dropouts_fail_the_round_with_a_clear_error(blobs):
    X, y = blobs
    faults = lambda r, stage, name: stage == "masked_input" and name in {"c0", "c1", "c2", "c3"}
    with pytest.raises(SecAggError, match="round 1: only 6 clients sent masked input, 7 needed"):
        simulate(_clients(X, y, 10), FedAvg(), 2, faults=faults, secagg=SecAggConfig(dropout_tolerance=0.3))
    with pytest.raises(TooFewClientsError, match="only 1 clients"):
        simulate(_clients(X, y, 3), FedAvg(), 1, secure=False, faults=lambda r, s, n: n != "c0")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_client_whose_model_diverges_is_left_out_not_averaged(blobs):
    X, y = blobs
    clients = _clients(X, y, 4)
    clients["c1"].X = clients["c1"].X * 1e300  # overflows to inf/NaN parameters during training
    for secure in (False, True):
        result = simulate(clients, FedAvg(), 1, secure=secure)
        assert "c1" in result.history[0].left_out and "NaN" in result.history[0].left_out["c1"]
        assert np.isfinite(flatten(result.parameters)).all()


def test_resume_continues_from_the_last_checkpoint(blobs, tmp_path):
    X, y = blobs
    straight = simulate(_clients(X, y, 3), FedAdam(eta=0.05), 4, secure=False)
    simulate(_clients(X, y, 3), FedAdam(eta=0.05), 2, secure=False, checkpoint_dir=tmp_path)
    index = json.loads((tmp_path / "checkpoint.json").read_text())
    assert index["round"] == 2 and index["strategy"] == "fedadam" and len(index["history"]) == 2
    resumed = simulate(_clients(X, y, 3), FedAdam(eta=0.05), 4, secure=False, checkpoint_dir=tmp_path, resume=True)
    assert [h.round for h in resumed.history] == [1, 2, 3, 4]
    assert np.allclose(flatten(resumed.parameters), flatten(straight.parameters), atol=1e-12)
    with pytest.raises(ConfigError, match="strategy"):
        simulate(_clients(X, y, 3), FedAvg(), 5, secure=False, checkpoint_dir=tmp_path, resume=True)
    latest = json.loads((tmp_path / "checkpoint.json").read_text())
    assert latest["round"] == 4
    (tmp_path / latest["arrays"]).write_bytes(b"tampered")
    with pytest.raises(ConfigError, match="SHA-256"):
        simulate(_clients(X, y, 3), FedAdam(), 5, secure=False, checkpoint_dir=tmp_path, resume=True)


def test_clipping_bounds_an_update_and_dp_reports_epsilon(blobs):
    pytest.importorskip("dp_accounting")
    assert np.linalg.norm(clip_l2(np.full(100, 3.0), 1.0)) == pytest.approx(1.0)
    X, y = blobs
    dp = DPConfig(clip_norm=0.5, noise_multiplier=1.0, delta=1e-5)
    result = simulate(_clients(X, y, 20), FedAvg(), 3, dp=dp)
    assert 0 < result.epsilon < 50 and result.history[-1].total_weight == 20  # one vote per client
    more = simulate(_clients(X, y, 20), FedAvg(), 6, dp=dp, secure=False)
    assert more.epsilon > result.epsilon


def test_many_lightweight_clients_in_one_process():
    X, y = make_classification(20_000, 10, random_state=0)
    model = LinearModel(10, learning_rate=0.1)
    clients = [LinearClient(model, X[rows], y[rows], seed=i) for i, rows in enumerate(iid(len(y), 1000))]
    result = simulate(clients, FedAvg(), 2, secagg=SecAggConfig(neighbours=12))
    assert len(result.history[-1].clients) == 1000
    assert model.metrics(result.parameters, X, y)["accuracy"] > 0.75
