"""A job's contribution report: each party's value, its share, and its part of a reward budget.

Shares and rewards floor negative values at zero: a party whose data made the model worse gets no
reward, but it is not charged either, and it does not shrink the others' shares. The budget is split
among the parties with a positive value in proportion to it; when no party has one, nothing is paid.
The report travels from the party that measured it to every other party and into the ledger, so
:meth:`ContributionReport.from_dict` checks a peer's copy field by field.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from isthmus.incentive.shapley import ShapleyResult, exact_shapley

METHODS = ("exact shapley", "sampled shapley", "gtg-shapley")
MAX_PLAYERS = 4096
_NAME = re.compile(r"[a-z0-9][a-z0-9.\-]{0,62}")
_COALITION_SEPARATOR = "+"


def split_rewards(values: dict[str, float], budget: float) -> tuple[dict[str, float], dict[str, float]]:
    """``(shares, rewards)``: positive values' proportions of their sum, and those proportions of ``budget``."""
    floored = {party: max(value, 0.0) for party, value in values.items()}
    total = sum(floored.values())
    shares = {party: (value / total if total > 0 else 0.0) for party, value in floored.items()}
    return shares, {party: budget * share for party, share in shares.items()}


def coalition_key(coalition: frozenset[str]) -> str:
    """``"guest+host-1"``: a coalition as text, members sorted (``""`` is the empty coalition)."""
    return _COALITION_SEPARATOR.join(sorted(coalition))


@dataclass(frozen=True)
class ContributionReport:
    method: str
    metric: str
    values: dict[str, float]  # per player; they add up to grand_value - empty_value (efficiency)
    shares: dict[str, float]
    rewards: dict[str, float]
    budget: float
    empty_value: float  # the metric of the model no party's data went into
    grand_value: float  # the metric of the job's model
    std_errors: dict[str, float]  # of sampled estimates (0 when exact)
    leave_one_out: dict[str, float] | None  # v(N) - v(N - i), when measured
    coalitions: dict[str, float] | None  # every coalition valued (vertical jobs): anyone can redo the arithmetic
    permutations: int

    @classmethod
    def measured(cls, *, method: str, metric: str, values: dict[str, float], budget: float, empty_value: float,
                 grand_value: float, std_errors: dict[str, float], leave_one_out: dict[str, float] | None = None,
                 coalitions: dict[str, float] | None = None, permutations: int = 0) -> ContributionReport:
        """The report of measured values, with the shares and rewards they give."""
        shares, rewards = split_rewards(values, budget)
        return cls(method=method, metric=metric, values=dict(values), shares=shares, rewards=rewards,
                   budget=float(budget), empty_value=float(empty_value), grand_value=float(grand_value),
                   std_errors=dict(std_errors), leave_one_out=leave_one_out, coalitions=coalitions,
                   permutations=permutations)

    @classmethod
    def from_shapley(cls, result: ShapleyResult, *, metric: str, budget: float,
                     leave_one_out: dict[str, float] | None = None) -> ContributionReport:
        """A report that keeps every coalition's value, so that anyone can redo the arithmetic."""
        return cls.measured(method=f"{result.method} shapley", metric=metric, values=result.values, budget=budget,
                            empty_value=result.empty_value, grand_value=result.grand_value,
                            std_errors=result.std_errors, leave_one_out=leave_one_out,
                            coalitions={coalition_key(c): v for c, v in result.coalition_values.items()},
                            permutations=result.permutations)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> ContributionReport:
        """A peer's report, checked; raises ``ValueError`` saying what is wrong.

        An exact report carries every coalition's value, so the values, shares and rewards must be
        what those coalitions give: the parties can check the arithmetic, if not the measurements.
        """
        fields = set(cls.__dataclass_fields__)
        if not isinstance(raw, dict) or set(raw) != fields:
            raise ValueError(f"a contribution report has exactly the fields {sorted(fields)}")
        if raw["method"] not in METHODS or not isinstance(raw["metric"], str) or not 0 < len(raw["metric"]) <= 32:
            raise ValueError("unknown method or bad metric name")
        players = _players(raw["values"])
        for name in ("shares", "rewards", "std_errors"):
            _per_player(raw[name], players, name)
        if raw["leave_one_out"] is not None:
            _per_player(raw["leave_one_out"], players, "leave_one_out")
        for name in ("budget", "empty_value", "grand_value"):
            _number(raw[name], name)
        if raw["budget"] < 0:
            raise ValueError("the budget cannot be negative")
        if type(raw["permutations"]) is not int or not 0 <= raw["permutations"] <= 1 << 30:
            raise ValueError("permutations must be a non-negative integer")
        report = cls(**raw)
        report._check_arithmetic(players)
        return report

    def _check_arithmetic(self, players: list[str]) -> None:
        shares, rewards = split_rewards(self.values, self.budget)
        if not _close(shares, self.shares) or not _close(rewards, self.rewards):
            raise ValueError("shares or rewards do not follow from the values and the budget")
        if self.coalitions is None:
            return
        table = _coalition_table(self.coalitions, players)
        if self.method == "exact shapley":
            if len(table) != 2 ** len(players):
                raise ValueError("an exact report needs the value of every coalition")
            if not _close(exact_shapley(players, table.__getitem__).values, self.values):
                raise ValueError("values are not the Shapley values of the reported coalitions")
        full, empty = frozenset(players), frozenset()
        if full not in table or empty not in table or not _close(
                {"grand": table[full], "empty": table[empty]}, {"grand": self.grand_value, "empty": self.empty_value}):
            raise ValueError("grand and empty values must match the reported coalitions")


def _players(values: Any) -> list[str]:
    if not isinstance(values, dict) or not 0 < len(values) <= MAX_PLAYERS:
        raise ValueError("values must map 1 or more players to numbers")
    if not all(isinstance(p, str) and _NAME.fullmatch(p) for p in values):
        raise ValueError("player names must be party names")
    _per_player(values, list(values), "values")
    return sorted(values)


def _per_player(raw: Any, players: list[str], name: str) -> None:
    if not isinstance(raw, dict) or sorted(raw) != sorted(players):
        raise ValueError(f"{name} must have one entry per player")
    for value in raw.values():
        _number(value, name)


def _number(value: Any, name: str) -> None:
    if type(value) is not float or not math.isfinite(value):
        raise ValueError(f"{name} must hold finite floats")


def _coalition_table(raw: Any, players: list[str]) -> dict[frozenset[str], float]:
    if not isinstance(raw, dict) or len(raw) > 2 ** min(len(players), 20):
        raise ValueError("coalitions must map coalitions to values")
    table = {}
    for key, value in raw.items():
        members = frozenset(key.split(_COALITION_SEPARATOR)) if isinstance(key, str) and key else frozenset()
        if key != coalition_key(members) or not members <= set(players):
            raise ValueError(f"bad coalition {key!r:.80}")
        _number(value, "coalitions")
        table[members] = value
    return table


def _close(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12) for k in a)
