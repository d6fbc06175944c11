"""Gradient-step optimisers a party runs on its own weights, with FATE's learning-rate decay.

In vertical linear models each party updates only its own weight vector from its own unmasked
gradient, so each party holds its own optimiser instance (state such as Adam's moments never
leaves the party). A horizontal server's optimiser (FedAdam, ...) is the same object applied to
the averaged update. These are a few lines of numpy each, and written here because the deep
learning libraries' optimisers need their tensor types.
"""

from __future__ import annotations

import math

import numpy as np

from isthmus.errors import ConfigError

PENALTIES = ("none", "l1", "l2")


class Optimizer:
    """Base: the learning-rate schedule and the step; subclasses choose the step direction.

    The learning rate at step t (t = 0, 1, ... counts calls to :meth:`step`) is, as in FATE,
    ``lr / sqrt(1 + decay * t)`` when ``decay_sqrt`` else ``lr / (1 + decay * t)``. FATE counts t
    in epochs; with full-batch training (one step per epoch) the two agree.
    """

    def __init__(self, learning_rate: float = 0.1, *, decay: float = 0.0, decay_sqrt: bool = True) -> None:
        _require(learning_rate > 0, f"learning_rate must be > 0, got {learning_rate}")
        _require(decay >= 0, f"decay must be >= 0, got {decay}")
        self.learning_rate = float(learning_rate)
        self.decay = float(decay)
        self.decay_sqrt = decay_sqrt
        self.steps = 0

    def learning_rate_at(self, t: int) -> float:
        """The decayed learning rate used by step number ``t`` (0-based)."""
        scale = 1.0 + self.decay * t
        return self.learning_rate / (math.sqrt(scale) if self.decay_sqrt else scale)

    def step(self, weights: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """New weights after one step down ``grad``; ``weights`` is left unchanged."""
        weights = np.asarray(weights, dtype=np.float64)
        grad = np.asarray(grad, dtype=np.float64)
        if weights.shape != grad.shape:
            raise ValueError(f"weights of shape {weights.shape} and gradient of shape {grad.shape} differ")
        learning_rate = self.learning_rate_at(self.steps)
        self.steps += 1
        return weights - learning_rate * self._direction(grad)

    def _direction(self, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class SGD(Optimizer):
    """Plain gradient descent: the step is the gradient itself."""

    def _direction(self, grad: np.ndarray) -> np.ndarray:
        return grad


class _MovingAverage:
    """An exponential moving average that starts at zero with the first value's shape."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.value: np.ndarray | None = None

    def update(self, x: np.ndarray) -> np.ndarray:
        if self.value is None:
            self.value = np.zeros_like(x)
        elif self.value.shape != x.shape:
            raise ValueError(f"optimiser state has shape {self.value.shape}, gradient has shape {x.shape}")
        self.value = self.rate * self.value + (1.0 - self.rate) * x
        return self.value


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias-corrected first and second moments.

    ``schedule`` takes the base class's ``decay`` and ``decay_sqrt``.
    """

    def __init__(self, learning_rate: float = 0.1, *, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-8, **schedule: float | bool) -> None:
        super().__init__(learning_rate, **schedule)
        _require(0 <= beta1 < 1 and 0 <= beta2 < 1, f"beta1 and beta2 must lie in [0, 1), got {beta1}, {beta2}")
        _require(epsilon > 0, f"epsilon must be > 0, got {epsilon}")
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self._mean = _MovingAverage(beta1)
        self._square = _MovingAverage(beta2)

    def _direction(self, grad: np.ndarray) -> np.ndarray:
        t = self.steps  # already counts this step: 1 on the first call, as the bias correction needs
        mean = self._mean.update(grad) / (1.0 - self.beta1**t)
        square = self._square.update(grad * grad) / (1.0 - self.beta2**t)
        return mean / (np.sqrt(square) + self.epsilon)


class RMSProp(Optimizer):
    """RMSProp (Hinton): the gradient divided by a running root mean square of past gradients.

    ``schedule`` takes the base class's ``decay`` and ``decay_sqrt``.
    """

    def __init__(self, learning_rate: float = 0.1, *, rho: float = 0.99, epsilon: float = 1e-8,
                 **schedule: float | bool) -> None:
        super().__init__(learning_rate, **schedule)
        _require(0 <= rho < 1, f"rho must lie in [0, 1), got {rho}")
        _require(epsilon > 0, f"epsilon must be > 0, got {epsilon}")
        self.rho, self.epsilon = rho, epsilon
        self._square = _MovingAverage(rho)

    def _direction(self, grad: np.ndarray) -> np.ndarray:
        return grad / (np.sqrt(self._square.update(grad * grad)) + self.epsilon)


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "rmsprop": RMSProp}


def make_optimizer(name: str, **options: float | bool) -> Optimizer:
    """The optimiser called ``name`` ("sgd", "adam", "rmsprop"), e.g. from a job file's options."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    try:
        return OPTIMIZERS[name](**options)
    except TypeError as exc:  # an option this optimiser does not take
        raise ConfigError(f"optimizer {name!r}: {exc}") from None


def apply_penalty(
    weights: np.ndarray,
    grad: np.ndarray,
    *,
    penalty: str | None,
    alpha: float,
    penalized: np.ndarray | None = None,
) -> np.ndarray:
    """The gradient of ``loss + alpha * R(w)`` from the loss gradient ``grad``.

    "l2": R(w) = ||w||^2 / 2, adding ``alpha * w``. "l1": R(w) = ||w||_1, adding the subgradient
    ``alpha * sign(w)`` (0 at w = 0). L1 is done by subgradient rather than a proximal
    (soft-thresholding) step so that the penalty composes with any optimiser, adaptive ones
    included; the price is that weights become small but seldom exactly zero. ``penalized`` is a
    boolean mask of the weights to penalise (e.g. all but the intercept); by default all are.
    """
    penalty = "none" if penalty is None else penalty
    _require(penalty in PENALTIES, f"unknown penalty {penalty!r}; valid: {', '.join(PENALTIES)}")
    _require(alpha >= 0, f"penalty alpha must be >= 0, got {alpha}")
    weights = np.asarray(weights, dtype=np.float64)
    grad = np.asarray(grad, dtype=np.float64)
    if weights.shape != grad.shape:
        raise ValueError(f"weights of shape {weights.shape} and gradient of shape {grad.shape} differ")
    if penalty == "none" or alpha == 0:
        return grad.copy()
    extra = alpha * (weights if penalty == "l2" else np.sign(weights))
    if penalized is not None:
        penalized = np.asarray(penalized)
        if penalized.dtype != np.bool_ or penalized.shape != weights.shape:
            raise ValueError(f"penalized must be a boolean mask of shape {weights.shape}")
        extra = np.where(penalized, extra, 0.0)
    return grad + extra


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
