"""Horizontal contribution without retraining: GTG-Shapley over the updates of each round (Liu et al. 2022).

In round t the aggregator holds the global model w_t and each client's update d_i with its example
count n_i. The model a coalition S would have produced is w_t + sum_S n_i d_i / sum_S n_i (federated
averaging's rule), so ``v_t(S)`` = the aggregator's metric of that model on its held-out rows, with
``v_t(empty)`` = the metric of w_t. Each round's Shapley values (exact for a few clients, else
sampled, with GTG's guided orders and within-round truncation) add up over the rounds; with FedAvg
and every client in every round they add up to the metric's gain over the whole training.
Leave-one-out, ``v_t(N) - v_t(N - i)`` summed the same way, is reported beside it as a check.

What this reveals: the aggregator needs every client's update of every round in the clear, which is
exactly what secure aggregation hides. So measuring contributions is opt-in (``reveal_updates``) and
turns secure aggregation off for the job; the per-client values then go to every party.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from isthmus.horizontal.updates import RoundUpdates
from isthmus.incentive.contribution import ContributionReport
from isthmus.incentive.shapley import Coalition, leave_one_out, shapley

Parameters = list[np.ndarray]
Utility = Callable[[Parameters], float]


def gtg_report(rounds: list[RoundUpdates], utility: Utility, *, final: Parameters, metric: str, budget: float,
               players: list[str], seed: int = 0, **shapley_options) -> ContributionReport:
    """Per-round Shapley values (and leave-one-out) of ``players``, summed over the rounds.

    ``final`` is the trained model: its value is the report's grand value. ``shapley_options`` go to
    :func:`~isthmus.incentive.shapley.shapley` (``exact_up_to``, ``tolerance``, ``truncation``, ...).
    """
    if not rounds:
        raise ValueError("no round with a client update was recorded: nothing to measure")
    empty, grand = utility(rounds[0].start), utility(final)
    scale = abs(grand - empty)  # late rounds gain little: precision is relative to the whole training's gain
    values, variances, loo = (dict.fromkeys(players, 0.0) for _ in range(3))
    permutations = 0
    for record in rounds:
        clients = sorted(record.updates)
        known: dict[Coalition, float] = {}

        def value(coalition: Coalition, record: RoundUpdates = record, known: dict = known) -> float:
            if coalition not in known:
                known[coalition] = utility(record.coalition_model(coalition))
            return known[coalition]

        result = shapley(clients, value, seed=seed + record.round, scale=scale, **shapley_options)
        left_out = leave_one_out(clients, value)
        for client in clients:
            values[client] += result.values[client]
            variances[client] += result.std_errors[client] ** 2
            loo[client] += left_out[client]
        permutations += result.permutations
    return ContributionReport.measured(
        method="gtg-shapley", metric=metric, values=values, budget=budget,
        empty_value=empty, grand_value=grand,
        std_errors={c: math.sqrt(v) for c, v in variances.items()}, leave_one_out=loo, permutations=permutations)
