"""What a client contributes to a round, as one flat vector, and what the sum of those vectors means.

The layout is ``[weight * delta, weight, weight * metric_1, ...]`` with ``delta`` = the client's new
parameters minus the global ones and ``weight`` = its example count. Summing these vectors (in the
clear or under secure aggregation) gives the aggregator ``sum(n_i * delta_i)`` and ``sum(n_i)``, so
sample-weighted averaging never needs one client's count or update. Under differential privacy the
weight is 1 and the delta is clipped (then noised on the fixed-point lattice by whoever adds the
noise, see :mod:`~isthmus.horizontal.dp`), so one client's influence is bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from isthmus.horizontal.dp import DPConfig

Parameters = list[np.ndarray]


@dataclass
class Aggregate:
    """What a strategy learns from one round: the weighted mean update and how much stands behind it."""

    mean_update: Parameters  # example-weighted mean of (client parameters - global parameters)
    total_weight: float  # sum of example counts (number of clients under differential privacy)
    num_clients: int
    metrics: dict[str, float]  # example-weighted means of the clients' fit metrics


def flatten(parameters: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parameters]) if parameters else np.zeros(0)


def unflatten(vector: np.ndarray, like: Sequence[np.ndarray]) -> Parameters:
    """``vector`` cut into arrays shaped and typed like ``like``."""
    out, start = [], 0
    for ref in like:
        out.append(vector[start : start + ref.size].reshape(ref.shape).astype(ref.dtype))
        start += ref.size
    return out


def vector_length(parameters: Sequence[np.ndarray], metric_keys: Sequence[str]) -> int:
    return sum(p.size for p in parameters) + 1 + len(metric_keys)


def contribution(
    delta: np.ndarray,
    num_examples: int,
    metrics: dict[str, float],
    metric_keys: Sequence[str],
    dp: DPConfig | None = None,
) -> np.ndarray:
    """One client's vector; under ``dp`` the delta is clipped and the weight is 1 (noise comes on the lattice)."""
    if dp is None:
        weight = float(num_examples)
        return np.concatenate([weight * delta, [weight], [weight * metrics[k] for k in metric_keys]])
    return np.concatenate([dp.clip(delta), [1.0], [metrics[k] for k in metric_keys]])


def aggregate_from_sum(
    total: np.ndarray, like: Sequence[np.ndarray], metric_keys: Sequence[str], num_clients: int
) -> Aggregate:
    """Turn the sum of contributions into means; the weight slot must be positive."""
    size = sum(p.size for p in like)
    weight = float(total[size])
    if not weight > 0:
        raise ValueError(f"aggregated weight {weight} is not positive")
    return Aggregate(
        mean_update=unflatten(total[:size] / weight, like),
        total_weight=weight,
        num_clients=num_clients,
        metrics={key: float(total[size + 1 + i] / weight) for i, key in enumerate(metric_keys)},
    )


@dataclass
class RoundUpdates:
    """One round as the aggregator saw it: the global model it started from and each client's result."""

    round: int
    start: Parameters
    updates: dict[str, tuple[Parameters, int]]  # client -> (its new parameters, its example count)

    def coalition_model(self, coalition: Iterable[str]) -> Parameters:
        """Federated averaging over ``coalition`` only (the start model for the empty coalition)."""
        members = sorted(coalition)
        if not members:
            return self.start
        start = flatten(self.start)
        weights = np.array([self.updates[c][1] for c in members], dtype=np.float64)
        deltas = np.stack([flatten(self.updates[c][0]) - start for c in members])
        return unflatten(start + weights @ deltas / weights.sum(), self.start)
