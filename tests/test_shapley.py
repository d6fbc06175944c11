"""Shapley values: the axioms on small exact games, the sampler's stopping rule, reward splits, GTG rounds."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.incentive.contribution import ContributionReport, split_rewards
from isthmus.incentive.horizontal import RoundUpdates, gtg_report
from isthmus.incentive.shapley import exact_shapley, leave_one_out, sampled_shapley, shapley

PLAYERS = ["a", "b", "c", "d"]


def game(coalition: frozenset[str]) -> float:
    """a and b interchangeable, c worth more and complementary with a, d a null player."""
    weights = {"a": 1.0, "b": 1.0, "c": 2.0, "d": 0.0}
    base = sum(weights[p] for p in coalition) ** 2
    return base + (3.0 if {"a", "c"} <= coalition or {"b", "c"} <= coalition else 0.0)


def test_efficiency_symmetry_and_null_player_on_an_exact_game():
    result = exact_shapley(PLAYERS, game)
    values = result.values
    assert math.isclose(sum(values.values()), game(frozenset(PLAYERS)) - game(frozenset()))
    assert math.isclose(values["a"], values["b"])
    assert values["d"] == pytest.approx(0.0, abs=1e-12)
    assert values["c"] > values["a"] > 0
    assert result.grand_value == 19.0 and result.empty_value == 0.0


def test_the_majority_game_splits_evenly_and_the_glove_game_favours_the_scarce_side():
    majority = exact_shapley(["x", "y", "z"], lambda s: float(len(s) >= 2)).values
    assert all(math.isclose(v, 1 / 3) for v in majority.values())
    # one left glove, two right gloves: a pair is worth 1
    glove = exact_shapley(["left", "right-1", "right-2"],
                          lambda s: float("left" in s and bool(s & {"right-1", "right-2"}))).values
    assert glove == pytest.approx({"left": 2 / 3, "right-1": 1 / 6, "right-2": 1 / 6})


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=16, max_size=16),
       st.lists(st.floats(-5, 5, allow_nan=False), min_size=16, max_size=16))
def test_shapley_values_are_additive_over_games(table_v, table_w):
    coalitions = [frozenset(c) for size in range(5) for c in itertools.combinations(PLAYERS, size)]
    v = dict(zip(coalitions, table_v))
    w = dict(zip(coalitions, table_w))
    separate_v, separate_w = exact_shapley(PLAYERS, v.__getitem__).values, exact_shapley(PLAYERS, w.__getitem__).values
    joint = exact_shapley(PLAYERS, lambda s: v[s] + w[s]).values
    assert joint == pytest.approx({p: separate_v[p] + separate_w[p] for p in PLAYERS}, abs=1e-9)
    assert sum(joint.values()) == pytest.approx(v[frozenset(PLAYERS)] + w[frozenset(PLAYERS)]
                                                - v[frozenset()] - w[frozenset()], abs=1e-9)


def test_every_coalition_is_valued_exactly_once():
    calls = []
    exact_shapley(PLAYERS, lambda s: calls.append(s) or game(s))
    assert len(calls) == 16 and len(set(calls)) == 16
    assert calls[0] == frozenset() and calls[-1] == frozenset(PLAYERS)  # smallest first


def test_sampling_is_efficient_and_close_to_the_exact_values():
    players = [f"p{i}" for i in range(8)]
    weights = dict(zip(players, [3.0, 1.0, 1.0, 0.5, 0.0, 2.0, 0.2, 1.3]))

    def v(s):
        return sum(weights[p] for p in s) ** 1.5

    exact = exact_shapley(players, v).values
    sampled = sampled_shapley(players, v, tolerance=0.005, max_permutations=2000, seed=3)
    assert sampled.method == "sampled" and sampled.permutations < 2000
    assert sum(sampled.values.values()) == pytest.approx(v(players) - v([]), rel=1e-12)
    for p in players:
        assert abs(sampled.values[p] - exact[p]) <= 4 * sampled.std_errors[p] + 1e-9


def test_the_stopping_rule_stops_as_soon_as_the_estimates_are_certain():
    players = [f"p{i}" for i in range(9)]
    additive = sampled_shapley(players, lambda s: float(len(s)), tolerance=0.01, max_permutations=500)
    assert additive.permutations == 9  # every marginal is 1: no variance once each player went first
    assert additive.values == pytest.approx(dict.fromkeys(players, 1.0))


def test_truncation_values_fewer_coalitions_and_gives_late_joiners_nothing():
    players = [f"p{i}" for i in range(8)]

    def saturating(s):
        return min(len(s), 2) + 0.001 * len(s)  # two players do almost everything

    full = sampled_shapley(players, saturating, max_permutations=40, tolerance=1e-9)
    truncated = sampled_shapley(players, saturating, max_permutations=40, tolerance=1e-9, truncation=0.01)
    assert len(truncated.coalition_values) < len(full.coalition_values)
    assert sum(truncated.values.values()) == pytest.approx(sum(full.values.values()), abs=0.01)


def test_exact_up_to_six_players_sampled_beyond():
    assert shapley([f"p{i}" for i in range(6)], len).method == "exact"
    assert shapley([f"p{i}" for i in range(7)], len, max_permutations=10).method == "sampled"


def test_leave_one_out_misses_redundancy_that_shapley_splits():
    def twins(s):  # a and b carry the same information
        return float(bool(s & {"a", "b"}))

    assert leave_one_out(["a", "b", "c"], twins) == {"a": 0.0, "b": 0.0, "c": 0.0}
    assert exact_shapley(["a", "b", "c"], twins).values == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0})


def test_rewards_floor_negative_values_and_split_the_budget_among_the_others():
    shares, rewards = split_rewards({"a": 0.3, "b": 0.1, "noise": -0.05}, budget=1000.0)
    assert shares == pytest.approx({"a": 0.75, "b": 0.25, "noise": 0.0})
    assert rewards == pytest.approx({"a": 750.0, "b": 250.0, "noise": 0.0})
    assert split_rewards({"a": -1.0, "b": 0.0}, 10.0) == ({"a": 0.0, "b": 0.0}, {"a": 0.0, "b": 0.0})


def test_a_report_from_a_peer_must_add_up():
    report = ContributionReport.from_shapley(exact_shapley(PLAYERS, game), metric="auc", budget=100.0)
    wire = report.to_dict()
    assert ContributionReport.from_dict(wire) == report
    inflated = {**wire, "values": {**wire["values"], "d": 1.0}}
    with pytest.raises(ValueError, match="Shapley values of the reported coalitions|shares or rewards"):
        ContributionReport.from_dict(inflated)
    greedy = {**wire, "rewards": {**wire["rewards"], "c": 99.0}}
    with pytest.raises(ValueError, match="shares or rewards"):
        ContributionReport.from_dict(greedy)
    with pytest.raises(ValueError, match="exactly the fields"):
        ContributionReport.from_dict({**wire, "extra": 1})


# --- GTG-Shapley over per-round updates ------------------------------------------------------------


def _round(number: int, start: np.ndarray, updates: dict[str, tuple[np.ndarray, int]]) -> RoundUpdates:
    return RoundUpdates(number, [start], {c: ([new], n) for c, (new, n) in updates.items()})


def test_a_coalition_model_is_the_example_weighted_average_of_its_members():
    record = _round(1, np.zeros(2), {"x": (np.array([1.0, 0.0]), 1), "y": (np.array([0.0, 3.0]), 3)})
    assert record.coalition_model([])[0] == pytest.approx([0.0, 0.0])
    assert record.coalition_model(["x", "y"])[0] == pytest.approx([0.25, 2.25])
    assert record.coalition_model(["y"])[0] == pytest.approx([0.0, 3.0])


def test_gtg_credits_helpful_updates_and_debits_harmful_ones():
    target = np.array([1.0, -1.0])

    def utility(parameters):
        return -float(np.sum((parameters[0] - target) ** 2))

    rounds, model = [], np.zeros(2)
    clients = {"good-1": 1.0, "good-2": 1.0, "idle": 0.0, "flipped": -1.0}
    for number in range(1, 4):
        step = target - model
        record = _round(number, model, {c: (model + 0.5 * sign * step, 10) for c, sign in clients.items()})
        rounds.append(record)
        model = record.coalition_model(clients)[0]
    report = gtg_report(rounds, utility, final=[model], metric="neg_mse", budget=1.0, players=sorted(clients))
    values = report.values
    assert values["good-1"] == pytest.approx(values["good-2"]) and values["good-1"] > 0
    assert values["flipped"] < values["idle"] < values["good-1"]
    assert sum(values.values()) == pytest.approx(utility([model]) - utility([np.zeros(2)]))  # FedAvg: efficient
    assert report.shares["flipped"] == 0.0 and report.leave_one_out["flipped"] < 0
