"""Aggregator-side strategies: who trains each round, with what config, and how the global model moves.

A strategy sees only the :class:`~isthmus.horizontal.updates.Aggregate` of a round (the weighted
mean update), never one client's update: that is what lets secure aggregation be on by default. So
every strategy here is a rule for moving the global parameters given the mean update, and a new
strategy is one class overriding :meth:`Strategy.aggregate_fit` (and :meth:`Strategy.configure_fit`
if the clients need something in their config).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from isthmus.errors import ConfigError
from isthmus.horizontal.updates import Aggregate

Parameters = list[np.ndarray]
EvaluateFn = Callable[[Parameters], dict[str, float]]


class Strategy(ABC):
    """Sampling and configuration shared by all strategies; subclasses decide how parameters move.

    ``fraction_fit`` of the clients (at least ``min_fit_clients``) train each round, sampled afresh per
    round from ``seed`` so a resumed run samples as the original would. ``fraction_evaluate`` of them
    evaluate the new global model on their own data. ``evaluate_fn`` evaluates it on the aggregator's
    data, if it has any.
    """

    name: ClassVar[str] = "strategy"

    def __init__(
        self,
        *,
        fraction_fit: float = 1.0,
        min_fit_clients: int = 2,
        fraction_evaluate: float = 0.0,
        fit_config: dict[str, Any] | None = None,
        evaluate_fn: EvaluateFn | None = None,
        seed: int = 0,
    ):
        if not 0 < fraction_fit <= 1 or not 0 <= fraction_evaluate <= 1:
            raise ConfigError("fraction_fit must be in (0, 1] and fraction_evaluate in [0, 1]")
        self.fraction_fit = fraction_fit
        self.min_fit_clients = min_fit_clients
        self.fraction_evaluate = fraction_evaluate
        self.fit_config = dict(fit_config or {})
        self.evaluate_fn = evaluate_fn
        self.seed = seed

    def configure_fit(self, server_round: int, parameters: Parameters, clients: list[str]) -> tuple[list[str], dict]:
        """The clients that train in ``server_round`` and the config they all receive."""
        return self._sample(server_round, clients, self.fraction_fit, "fit"), {"round": server_round, **self.fit_config}

    @abstractmethod
    def aggregate_fit(self, server_round: int, parameters: Parameters, aggregate: Aggregate) -> Parameters:
        """The new global parameters."""

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, clients: list[str]
    ) -> tuple[list[str], dict]:
        if self.fraction_evaluate == 0:
            return [], {}
        return self._sample(server_round, clients, self.fraction_evaluate, "evaluate"), {"round": server_round}

    def evaluate(self, server_round: int, parameters: Parameters) -> dict[str, float]:
        """Metrics of ``parameters`` on the aggregator's own data (empty without ``evaluate_fn``)."""
        return dict(self.evaluate_fn(parameters)) if self.evaluate_fn else {}

    def state(self) -> dict[str, np.ndarray]:
        """Arrays the strategy carries between rounds, for checkpoints."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned."""

    def sample_size(self, clients: int) -> int:
        """How many of ``clients`` train in a round: what every secure sum's quorum is computed from."""
        return min(clients, max(self.min_fit_clients, round(self.fraction_fit * clients)))

    def _sample(self, server_round: int, clients: list[str], fraction: float, purpose: str) -> list[str]:
        wanted = min(len(clients), max(self.min_fit_clients, round(fraction * len(clients))))
        if wanted == len(clients):
            return list(clients)
        rng = random.Random(f"{self.seed}/{purpose}/{server_round}")
        return sorted(rng.sample(sorted(clients), wanted))


class FedAvg(Strategy):
    """Sample-weighted federated averaging (McMahan et al. 2017): the new model is the weighted mean."""

    name = "fedavg"

    def aggregate_fit(self, server_round: int, parameters: Parameters, aggregate: Aggregate) -> Parameters:
        return [(p + d).astype(p.dtype) for p, d in zip(parameters, aggregate.mean_update)]


class FedProx(FedAvg):
    """FedAvg whose clients add ``mu/2 * ||w - w_global||^2`` to their loss (Li et al. 2020)."""

    name = "fedprox"

    def __init__(self, *, proximal_mu: float = 0.01, **kwargs: Any):
        super().__init__(**kwargs)
        self.proximal_mu = proximal_mu

    def configure_fit(self, server_round: int, parameters: Parameters, clients: list[str]) -> tuple[list[str], dict]:
        chosen, config = super().configure_fit(server_round, parameters, clients)
        return chosen, {**config, "proximal_mu": self.proximal_mu}


class FedAdam(Strategy):
    """Adam on the server (Reddi et al. 2021): the mean update is a pseudo-gradient step."""

    name = "fedadam"

    def __init__(
        self, *, eta: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.99, tau: float = 1e-3, **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.eta, self.beta_1, self.beta_2, self.tau = eta, beta_1, beta_2, tau
        self._m: list[np.ndarray] = []
        self._v: list[np.ndarray] = []

    def aggregate_fit(self, server_round: int, parameters: Parameters, aggregate: Aggregate) -> Parameters:
        if not self._m:
            self._m = [np.zeros(p.shape) for p in parameters]
            self._v = [np.full(p.shape, self.tau**2) for p in parameters]
        new = []
        for i, (p, delta) in enumerate(zip(parameters, aggregate.mean_update)):
            self._m[i] = self.beta_1 * self._m[i] + (1 - self.beta_1) * delta
            self._v[i] = self._second_moment(self._v[i], np.square(delta))
            new.append((p + self.eta * self._m[i] / (np.sqrt(self._v[i]) + self.tau)).astype(p.dtype))
        return new

    def _second_moment(self, v: np.ndarray, delta_squared: np.ndarray) -> np.ndarray:
        return self.beta_2 * v + (1 - self.beta_2) * delta_squared

    def state(self) -> dict[str, np.ndarray]:
        return {**{f"m{i}": m for i, m in enumerate(self._m)}, **{f"v{i}": v for i, v in enumerate(self._v)}}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        count = sum(1 for key in state if key.startswith("m"))
        self._m = [state[f"m{i}"] for i in range(count)]
        self._v = [state[f"v{i}"] for i in range(count)]


class FedYogi(FedAdam):
    """FedAdam with Yogi's additive second moment, which grows more cautiously (Reddi et al. 2021)."""

    name = "fedyogi"

    def _second_moment(self, v: np.ndarray, delta_squared: np.ndarray) -> np.ndarray:
        return v - (1 - self.beta_2) * delta_squared * np.sign(v - delta_squared)


STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (FedAvg, FedProx, FedAdam, FedYogi)}
