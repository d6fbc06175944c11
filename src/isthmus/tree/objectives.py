"""Losses of boosted trees: what the guest turns its labels and current scores into (g, h) with.

Second-order formulas as in XGBoost (``binary:logistic``, ``multi:softprob``, ``reg:squarederror``),
so a federated model can be compared with XGBoost on equal terms.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from scipy.special import expit, log_softmax, softmax

from isthmus.errors import ConfigError, DataError

#: Hessians are kept strictly positive, as XGBoost does, so no child has zero weight by rounding.
MIN_HESSIAN = 1e-16


class Objective(ABC):
    name: str
    #: Raw scores per row: 1, or the number of classes for softmax.
    n_outputs: int = 1

    @abstractmethod
    def init_score(self, y: np.ndarray) -> np.ndarray:
        """Starting raw score per output, from the training labels."""

    @abstractmethod
    def gradients(self, raw: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(g, h), each shaped like ``raw`` (rows, outputs)."""

    @abstractmethod
    def loss(self, raw: np.ndarray, y: np.ndarray) -> float:
        """Mean loss, lower is better: what early stopping watches."""

    @abstractmethod
    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Raw scores (rows, outputs) to predictions: P(y=1), class probabilities or values."""

    def to_dict(self) -> dict:
        return {"name": self.name, "n_outputs": self.n_outputs}


class BinaryLogloss(Objective):
    name = "binary"

    def check(self, y: np.ndarray) -> None:
        if not np.isin(y, (0, 1)).all():
            raise DataError("the binary objective needs labels 0 and 1")

    def init_score(self, y: np.ndarray) -> np.ndarray:
        rate = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
        return np.array([np.log(rate / (1 - rate))])

    def gradients(self, raw: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = expit(raw[:, 0])
        return (p - y)[:, None], np.maximum(p * (1 - p), MIN_HESSIAN)[:, None]

    def loss(self, raw: np.ndarray, y: np.ndarray) -> float:
        z = raw[:, 0]
        return float(np.mean(np.logaddexp(0, z) - y * z))

    def transform(self, raw: np.ndarray) -> np.ndarray:
        return expit(raw[:, 0])


class Softmax(Objective):
    name = "multiclass"

    def __init__(self, n_classes: int):
        self.n_outputs = n_classes

    def check(self, y: np.ndarray) -> None:
        if not (np.equal(np.mod(y, 1), 0).all() and y.min() >= 0 and y.max() < self.n_outputs):
            raise DataError(f"the multiclass objective needs labels 0..{self.n_outputs - 1}")

    def init_score(self, y: np.ndarray) -> np.ndarray:
        return np.zeros(self.n_outputs)

    def gradients(self, raw: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = softmax(raw, axis=1)
        onehot = np.eye(self.n_outputs)[y.astype(np.int64)]
        return p - onehot, np.maximum(2 * p * (1 - p), MIN_HESSIAN)

    def loss(self, raw: np.ndarray, y: np.ndarray) -> float:
        return float(-np.mean(log_softmax(raw, axis=1)[np.arange(len(y)), y.astype(np.int64)]))

    def transform(self, raw: np.ndarray) -> np.ndarray:
        return softmax(raw, axis=1)


class SquaredError(Objective):
    name = "regression"

    def check(self, y: np.ndarray) -> None:
        if not np.isfinite(y).all():
            raise DataError("regression labels must be finite")

    def init_score(self, y: np.ndarray) -> np.ndarray:
        return np.array([float(y.mean())])

    def gradients(self, raw: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return raw - y[:, None], np.ones_like(raw)

    def loss(self, raw: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((raw[:, 0] - y) ** 2))

    def transform(self, raw: np.ndarray) -> np.ndarray:
        return raw[:, 0]


def make_objective(name: str, y: np.ndarray, n_classes: int | None = None) -> Objective:
    """The objective for labels ``y``; multiclass takes its class count from ``n_classes`` or the labels."""
    y = np.asarray(y, dtype=np.float64)
    if name == "binary":
        objective: Objective = BinaryLogloss()
    elif name == "multiclass":
        objective = Softmax(n_classes or int(y.max()) + 1)
    elif name == "regression":
        objective = SquaredError()
    else:
        raise ConfigError(f"unknown objective {name!r}; use binary, multiclass or regression")
    objective.check(y)
    return objective


def objective_from_dict(d: dict) -> Objective:
    if d["name"] == "multiclass":
        return Softmax(int(d["n_outputs"]))
    return {"binary": BinaryLogloss, "regression": SquaredError}[d["name"]]()
