"""Logistic and linear regression in numpy, trained by local minibatch SGD: the horizontal workhorses.

The model is stateless (parameters go in and come out) so one instance serves every simulated client
and a client is just its rows plus a seed: a thousand of them fit in memory.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from isthmus.errors import ConfigError, DataError
from isthmus.horizontal.client import Client, Config, EvaluateRes, FitRes, Parameters
from isthmus.ml.metrics import auc

Task = Literal["binary", "regression"]


class LinearModel:
    """``[coef, intercept]`` of a logistic (``task="binary"``) or least-squares linear model.

    Local training is minibatch SGD with L2 penalty ``l2`` on the coefficients and, when
    ``proximal_mu`` > 0, FedProx's pull ``mu * (w - w_start)`` towards the round's global model.
    """

    def __init__(
        self,
        n_features: int,
        *,
        task: Task = "binary",
        learning_rate: float = 0.1,
        batch_size: int = 32,
        epochs: int = 1,
        l2: float = 0.0,
    ):
        if task not in ("binary", "regression"):
            raise ConfigError(f"task must be 'binary' or 'regression', got {task!r}")
        self.n_features = n_features
        self.task = task
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.l2 = l2

    def initial_parameters(self) -> Parameters:
        return [np.zeros(self.n_features), np.zeros(1)]

    def predict(self, parameters: Parameters, X: np.ndarray) -> np.ndarray:
        """Probabilities of class 1 (binary) or predicted values (regression)."""
        z = X @ parameters[0] + parameters[1][0]
        return _sigmoid(z) if self.task == "binary" else z

    def loss(self, parameters: Parameters, X: np.ndarray, y: np.ndarray) -> float:
        p = self.predict(parameters, X)
        if self.task == "binary":
            p = np.clip(p, 1e-12, 1 - 1e-12)
            data_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
        else:
            data_loss = 0.5 * np.mean((p - y) ** 2)
        return float(data_loss + 0.5 * self.l2 * np.dot(parameters[0], parameters[0]))

    def train(
        self,
        parameters: Parameters,
        X: np.ndarray,
        y: np.ndarray,
        rng: np.random.Generator,
        *,
        epochs: int | None = None,
        learning_rate: float | None = None,
        batch_size: int | None = None,
        proximal_mu: float = 0.0,
    ) -> Parameters:
        """Parameters after local SGD epochs over ``(X, y)`` starting from ``parameters``."""
        epochs = self.epochs if epochs is None else epochs
        lr = self.learning_rate if learning_rate is None else learning_rate
        batch = self.batch_size if batch_size is None else batch_size
        w, b = parameters[0].astype(np.float64), float(parameters[1][0])
        w_start, b_start = w.copy(), b
        for _ in range(epochs):
            order = rng.permutation(len(y))
            for start in range(0, len(y), batch):
                rows = order[start : start + batch]
                Xb = X[rows]
                z = Xb @ w + b
                residual = (_sigmoid(z) if self.task == "binary" else z) - y[rows]
                grad_w = Xb.T @ residual / len(rows) + self.l2 * w
                grad_b = residual.mean()
                if proximal_mu:
                    grad_w += proximal_mu * (w - w_start)
                    grad_b += proximal_mu * (b - b_start)
                w -= lr * grad_w
                b -= lr * grad_b
        return [w, np.array([b])]

    def metrics(self, parameters: Parameters, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        p = self.predict(parameters, X)
        if self.task == "regression":
            return {"mse": float(np.mean((p - y) ** 2))}
        out = {"accuracy": float(np.mean((p >= 0.5) == (y == 1)))}
        if len(np.unique(y)) == 2:
            out["auc"] = auc(y, p)
        return out


class LinearClient(Client):
    """A party's rows and a :class:`LinearModel`; config keys ``epochs``, ``learning_rate``,
    ``batch_size`` and ``proximal_mu`` override the model's settings for one round."""

    def __init__(
        self,
        model: LinearModel,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_test: np.ndarray | None = None,
        y_test: np.ndarray | None = None,
        seed: int = 0,
    ):
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != model.n_features or len(X) != len(y) or len(y) == 0:
            raise DataError(
                f"expected a non-empty {model.n_features}-column table with one label per row, got {X.shape}"
            )
        if not (np.isfinite(X).all() and np.isfinite(y).all()):
            raise DataError("features or labels hold NaN or infinite values")
        self.model = model
        self.X, self.y = X, y
        self.X_test, self.y_test = X_test, y_test
        self.seed = seed
        self.parameters = model.initial_parameters()

    def get_parameters(self) -> Parameters:
        return self.parameters

    def fit(self, parameters: Parameters, config: Config) -> FitRes:
        rng = np.random.default_rng([self.seed, int(config.get("round", 0))])
        self.parameters = self.model.train(
            parameters,
            self.X,
            self.y,
            rng,
            epochs=config.get("epochs"),
            learning_rate=config.get("learning_rate"),
            batch_size=config.get("batch_size"),
            proximal_mu=float(config.get("proximal_mu", 0.0)),
        )
        return FitRes(self.parameters, len(self.y), {"loss": self.model.loss(self.parameters, self.X, self.y)})

    def evaluate(self, parameters: Parameters, config: Config) -> EvaluateRes | None:
        if self.X_test is None or self.y_test is None:
            return None
        loss = self.model.loss(parameters, self.X_test, self.y_test)
        return EvaluateRes(loss, len(self.y_test), self.model.metrics(parameters, self.X_test, self.y_test))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free form of 1 / (1 + exp(-z))
