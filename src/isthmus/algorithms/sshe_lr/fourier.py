"""The sigmoid as a sine series on the circle R / PERIOD, so that two parties can evaluate it on additive shares.

Why a sine series: with z = a + b (mod PERIOD), sin(w (a + b)) = sin(w a) cos(w b) + cos(w a) sin(w b):
every term is a product of something the first party computes alone and something the second computes
alone, so one Paillier round evaluates the whole series (protocol.py). Polynomials would need a secure
multiplication per degree, and their values explode outside the fitted range.

The series approximates ``sigmoid(z) - 1/2`` on |z| <= FLAT and tapers smoothly (a C-infinity step) to 0 at
|z| = PERIOD / 2, where the odd periodic function must vanish; that smoothness is what makes the
coefficients decay fast. The range: scores of a logistic model with L2 penalty on standardised
features rarely exceed |z| = 30 (breast cancer's largest training score is 31 with alpha 0.01), and
sigmoid(40) = 1 - 4e-18, so the model is exact to ``MAX_ERROR`` wherever |z| <= FLAT. Between FLAT
and PERIOD / 2 the approximation falls back towards 1/2; beyond PERIOD / 2 it wraps (a score of 70
is read as -58). docs/security.md states the range as a limit of this model.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

#: The circle's circumference (a power of two, so that it divides the ring of the shares exactly).
PERIOD = 128
#: Largest |z| at which the series still follows the sigmoid.
FLAT = 40.0
#: Sine terms: 2 x TERMS ciphertexts per row and batch; 48 keep the error below MAX_ERROR.
TERMS = 48
#: Largest |series - sigmoid| on [-FLAT, FLAT], checked by the tests.
MAX_ERROR = 4e-4


def _target(z: np.ndarray) -> np.ndarray:
    """sigmoid(z) - 1/2 on |z| <= FLAT, tapered smoothly to 0 at PERIOD / 2."""
    u = np.clip((np.abs(z) - FLAT) / (PERIOD / 2 - FLAT), 0.0, 1.0)
    with np.errstate(divide="ignore", over="ignore"):
        rise, fall = np.exp(-1.0 / u), np.exp(-1.0 / (1.0 - u))
    taper = np.where(u <= 0, 1.0, np.where(u >= 1, 0.0, fall / (fall + rise)))
    return (expit(z) - 0.5) * taper


def _fit() -> np.ndarray:
    """Least-squares sine coefficients on a fine grid over the whole circle (deterministic)."""
    z = np.linspace(-PERIOD / 2, PERIOD / 2, 64 * PERIOD + 1)
    basis = np.sin(2 * np.pi * np.outer(z, np.arange(1, TERMS + 1)) / PERIOD)
    return np.linalg.lstsq(basis, _target(z), rcond=None)[0]


#: alpha_k of sigmoid(z) ~ 1/2 + sum_k alpha_k sin(2 pi k z / PERIOD), k = 1..TERMS.
COEFFICIENTS = _fit()


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The series itself, in plaintext (for tests and the plaintext reference of the protocol)."""
    k = np.arange(1, TERMS + 1)
    return 0.5 + np.sin(2 * np.pi * np.outer(np.asarray(z, dtype=np.float64), k) / PERIOD) @ COEFFICIENTS


def angles(shares: list[int], modulus: int) -> np.ndarray:
    """(rows, TERMS) fractions k * share / modulus mod 1 for k = 1..TERMS, exact in integers first: a
    share is a point on the circle of ``modulus`` integer steps, and float64 alone would lose its low bits."""
    k = range(1, TERMS + 1)
    return np.array([[(j * s % modulus) / modulus for j in k] for s in shares], dtype=np.float64).reshape(-1, TERMS)
