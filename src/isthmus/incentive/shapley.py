"""Shapley values of a cooperative game: exact over every coalition for a few players, sampled beyond.

A player's Shapley value is its marginal contribution ``v(S + i) - v(S)`` averaged over every order in
which the players could join. It is the one split of ``v(N) - v(empty)`` that is efficient (the
values add up to it), symmetric (interchangeable players get the same), gives nothing to a player
that never changes ``v`` and is additive over games. Here ``v`` is costly (in vertical jobs a
federated training per coalition), so every coalition is valued at most once, and the sampler stops
as soon as each estimate is precise enough.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from isthmus.errors import ConfigError

Coalition = frozenset[str]
Value = Callable[[Coalition], float]

EXACT_UP_TO = 6  # 2^6 = 64 coalitions: beyond this, permutation sampling


@dataclass(frozen=True)
class ShapleyResult:
    values: dict[str, float]
    std_errors: dict[str, float]  # of each sampled estimate; 0 when exact
    method: str  # "exact" or "sampled"
    permutations: int  # orders sampled (0 when exact)
    coalition_values: dict[Coalition, float]  # every coalition that was valued

    @property
    def empty_value(self) -> float:
        return self.coalition_values[frozenset()]

    @property
    def grand_value(self) -> float:
        return self.coalition_values[frozenset(self.values)]


class _CachedGame:
    """``value`` called at most once per coalition, in the order coalitions are first needed."""

    def __init__(self, players: Sequence[str], value: Value):
        if len(set(players)) != len(players) or not players:
            raise ConfigError(f"players must be distinct and at least one, got {list(players)}")
        self.players = list(players)
        self.value = value
        self.known: dict[Coalition, float] = {}

    def __call__(self, coalition: Iterable[str]) -> float:
        coalition = frozenset(coalition)
        if coalition not in self.known:
            self.known[coalition] = float(self.value(coalition))
        return self.known[coalition]


def exact_shapley(players: Sequence[str], value: Value) -> ShapleyResult:
    """Every coalition valued once (smallest first), each marginal weighted by |S|! (n - |S| - 1)! / n!."""
    game = _CachedGame(players, value)
    n = len(players)
    for size in range(n + 1):
        for coalition in itertools.combinations(players, size):
            game(coalition)
    values = {}
    for player in players:
        others = [p for p in players if p != player]
        total = 0.0
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for coalition in itertools.combinations(others, size):
                total += weight * (game((*coalition, player)) - game(coalition))
        values[player] = total
    return ShapleyResult(values, dict.fromkeys(players, 0.0), "exact", 0, dict(game.known))


def sampled_shapley(
    players: Sequence[str],
    value: Value,
    *,
    tolerance: float = 0.01,
    max_permutations: int = 200,
    truncation: float = 0.0,
    seed: int = 0,
    scale: float | None = None,
) -> ShapleyResult:
    """Monte Carlo over join orders (Castro et al. 2009), with a stopping rule and optional truncation.

    The first ``n`` orders start with each player in turn (GTG-Shapley's guided sampling); later
    ones are uniformly random. Sampling stops once every player's standard error is at most
    ``tolerance * scale`` (after at least ``n`` orders, and at most ``max_permutations``); ``scale``
    defaults to ``|v(N) - v(empty)|``. With ``truncation`` > 0, an order stops being valued once its
    coalition is within ``truncation * scale`` of ``v(N)``: the players still to come get 0 there.
    Without truncation every order's marginals add up to ``v(N) - v(empty)``, so the estimates are
    efficient exactly.
    """
    if tolerance <= 0 or max_permutations < 1 or truncation < 0:
        raise ConfigError("tolerance must be > 0, max_permutations >= 1 and truncation >= 0")
    game = _CachedGame(players, value)
    n = len(players)
    empty, grand = game(()), game(players)
    scale = scale or abs(grand - empty) or 1.0  # absolute when the coalitions gain nothing together
    rng = np.random.default_rng(seed)
    marginals = np.zeros((max_permutations, n))
    index = {player: i for i, player in enumerate(players)}
    done = 0
    for done in range(1, max_permutations + 1):
        order = list(rng.permutation(players))
        if done <= n:  # guided: each player first once
            order.remove(players[done - 1])
            order.insert(0, players[done - 1])
        joined, previous = [], empty
        for player in order:
            joined.append(player)
            if truncation and abs(grand - previous) <= truncation * scale:
                continue  # the rest of this order adds (almost) nothing: marginal 0
            current = game(joined)
            marginals[done - 1, index[player]] = current - previous
            previous = current
        if done >= max(n, 2) and _max_std_error(marginals[:done]) <= tolerance * scale:
            break
    sample = marginals[:done]
    errors = sample.std(axis=0, ddof=1) / math.sqrt(done) if done > 1 else np.full(n, np.inf)
    return ShapleyResult(
        {p: float(sample[:, index[p]].mean()) for p in players},
        {p: float(errors[index[p]]) for p in players},
        "sampled",
        done,
        dict(game.known),
    )


def _max_std_error(sample: np.ndarray) -> float:
    return float((sample.std(axis=0, ddof=1) / math.sqrt(len(sample))).max())


def shapley(players: Sequence[str], value: Value, *, exact_up_to: int = EXACT_UP_TO, **sampling) -> ShapleyResult:
    """Exact for at most ``exact_up_to`` players, else :func:`sampled_shapley` with ``sampling`` options."""
    if len(players) <= exact_up_to:
        return exact_shapley(players, value)
    return sampled_shapley(players, value, **sampling)


def leave_one_out(players: Sequence[str], value: Value) -> dict[str, float]:
    """``v(N) - v(N - i)`` per player: a quick check on the Shapley ranking (it ignores redundancy)."""
    game = _CachedGame(players, value)
    grand = game(players)
    return {p: grand - game(q for q in players if q != p) for p in players}
