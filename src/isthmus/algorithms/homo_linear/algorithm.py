"""homo_lr and homo_linr under the algorithm contract: clients with the same columns, one aggregator.

Each round the clients train the global model locally and the aggregator learns only the sum of
their updates (secure aggregation, on by default); a client that crashes or stops answering is left
out while ``min_clients`` remain. Every party keeps its copy of the final model and scores its own
rows with it: nothing is scored jointly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isthmus.algorithms.base import Algorithm, LocalPart, Party, Reference, Roster, Task
from isthmus.algorithms.homo_linear.aggregator import history, train_aggregator
from isthmus.algorithms.homo_linear.client import train_client
from isthmus.algorithms.homo_linear.options import LinearModelOptions
from isthmus.algorithms.registry import register
from isthmus.horizontal import LinearModel
from isthmus.horizontal.updates import RoundUpdates


@dataclass
class LinearLocalPart(LocalPart):
    model_name: str
    role: str
    model: LinearModel
    parameters: list[np.ndarray]
    feature_names: list[str]
    facts: dict[str, Any] = field(default_factory=dict)  # what the role adds to model.json (history, epsilon)
    #: At the aggregator, with ``keep_round_updates``: each round's start model and the clients' updates.
    rounds: list[RoundUpdates] = field(default_factory=list)

    @property
    def task(self) -> Task:
        return self.model.task

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_with(self.parameters, X)

    def predict_with(self, parameters: list[np.ndarray], X: np.ndarray) -> np.ndarray:
        """Scores of another model of the same shape (contribution values each coalition's model)."""
        return self.model.predict(parameters, X)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model_name, "role": self.role, "task": self.task, "features": self.feature_names,
                "coef": self.parameters[0], "intercept": float(self.parameters[1][0]),
                "training": {"learning_rate": self.model.learning_rate, "batch_size": self.model.batch_size,
                             "epochs": self.model.epochs, "l2": self.model.l2}, **self.facts}


class _HomoLinear(Algorithm):
    family = "horizontal"
    roles = {"client": (2, None), "aggregator": (0, 1), "arbiter": (0, 1)}
    contribution = "rounds"
    Options = LinearModelOptions
    task: Task

    def check(self, roster: Roster, options: LinearModelOptions, *, allow_plaintext: bool) -> None:
        super().check(roster, options, allow_plaintext=allow_plaintext)
        roster.aggregator  # exactly one aggregator (or arbiter)
        options.check_roster(roster.with_role("client"))

    def fit(self, party: Party, options: LinearModelOptions) -> LinearLocalPart:
        if party.name != party.roster.aggregator:
            n_features = len(party.rows().feature_names)
            model = self._model(n_features, options)
            parameters, fitted = train_client(party, options, model)
            return LinearLocalPart(self.name, party.role, model, parameters, party.rows().feature_names,
                                   {"rounds_fitted": fitted})
        model, features, result, rounds = train_aggregator(party, options, self.task)
        facts = {"strategy": options.strategy, "secure_aggregation": options.secure_aggregation,
                 "epsilon": result.epsilon, "history": history(result)}
        return LinearLocalPart(self.name, party.role, model, result.parameters, features, facts, rounds)

    def load(self, role: str, model: dict[str, Any]) -> LinearLocalPart:
        training = model["training"]
        linear = LinearModel(len(model["features"]), task=model["task"], learning_rate=training["learning_rate"],
                             batch_size=training["batch_size"], epochs=training["epochs"], l2=training["l2"])
        parameters = [np.asarray(model["coef"], dtype=np.float64), np.array([model["intercept"]], dtype=np.float64)]
        return LinearLocalPart(self.name, role, linear, parameters, model["features"])

    def reference(self, options: LinearModelOptions, task: Task, X_train: np.ndarray, y_train: np.ndarray,
                  X_eval: np.ndarray) -> Reference:
        """The clients' local SGD run over the pooled rows for ``rounds * local_epochs`` epochs."""
        model = self._model(X_train.shape[1], options)
        central = model.train(model.initial_parameters(), X_train, y_train, np.random.default_rng(options.seed),
                              epochs=options.rounds * options.local_epochs)
        return Reference(model.predict(central, X_eval), "the same model trained centrally")

    def _model(self, n_features: int, options: LinearModelOptions) -> LinearModel:
        return LinearModel(n_features, task=self.task, learning_rate=options.learning_rate,
                           batch_size=options.batch_size, epochs=options.local_epochs, l2=options.alpha)


class HomoLR(_HomoLinear):
    name = "homo_lr"
    task = "binary"


class HomoLinR(_HomoLinear):
    name = "homo_linr"
    task = "regression"


register(HomoLR())
register(HomoLinR())
