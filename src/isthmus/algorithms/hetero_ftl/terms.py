"""The loss of secure FTL and its gradients, each party's side computed on the other's encrypted terms.

Over a batch of n shared rows with guest labels y in {-1, +1}, guest representations u_A, host
representations u_B and Phi = (1/N_A) sum_i y_i u_A,i over *all* the guest's labelled rows,

    L = (1/n) sum_i [ log 2 - y_i z_i / 2 + z_i^2 / 8 + gamma ||u_A,i - u_B,i||^2 ],   z_i = Phi . u_B,i

(the second-order Taylor expansion of the logistic loss, as in the paper), plus each party's own L2
penalty. Everything either side needs of the other is linear in the other's encrypted terms:

- the host's gradient dL/du_B,i = (-y_i Phi / 2 + Phi Phi^T u_B,i / 4 + 2 gamma (u_B,i - u_A,i)) / n
  from the guest's [[y_i Phi]], [[Phi Phi^T]], [[u_A,i]];
- the guest's dL/dPhi = (-sum_i y_i u_B,i / 2 + M Phi / 4) / n with M = sum_i u_B,i u_B,i^T, and
  dL/du_A,i = 2 gamma (u_A,i - u_B,i) / n, from the host's [[u_B,i]] and [[M]]; the guest also forms
  the batch loss, encrypted, from the same terms (so it learns the loss, not the z_i).

Neither party decrypts these per-row gradients: each multiplies them, still encrypted, by its own
network's Jacobian (``training.parameter_gradient``) and has the other decrypt only the gradient of
its weights, a sum over the batch (the paper's construction).
"""

from __future__ import annotations

import math

import numpy as np

from isthmus.algorithms.hetero_ftl.exchange import Encrypted, times


def guest_terms(phi: np.ndarray, u_a: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    return {"y_phi": y[:, None] * phi[None, :], "phi_phi": np.outer(phi, phi), "u_a": u_a}


def host_terms(u_b: np.ndarray) -> dict[str, np.ndarray]:
    return {"u_b": u_b, "m": u_b.T @ u_b}


def guest_shapes(n: int, d: int) -> dict[str, tuple[int, ...]]:
    return {"y_phi": (n, d), "phi_phi": (d, d), "u_a": (n, d)}


def host_shapes(n: int, d: int) -> dict[str, tuple[int, ...]]:
    return {"u_b": (n, d), "m": (d, d)}


def host_gradient(guest: dict[str, Encrypted], u_b: np.ndarray, gamma: float) -> Encrypted:
    """[[dL/du_B]] under the guest's key, from its encrypted terms and the host's own u_B."""
    n = len(u_b)
    grad = (guest["y_phi"] * (-0.5 / n) + times(u_b, guest["phi_phi"]) * (0.25 / n)
            + guest["u_a"] * (-2 * gamma / n) + u_b * (2 * gamma / n))
    return grad


def guest_gradients(host: dict[str, Encrypted], phi: np.ndarray, u_a: np.ndarray, y: np.ndarray,
                    gamma: float) -> dict[str, Encrypted]:
    """[[dL/dPhi]], [[dL/du_A]] and the batch loss [[L]] under the host's key."""
    n, d = u_a.shape
    u_b, m = host["u_b"], host["m"]
    y_u_b = times(y[None, :], u_b).reshape(d)  # sum_i y_i u_B,i
    m_phi = times(phi[None, :], m).reshape(d)  # (M Phi)^T = Phi^T M, M symmetric
    grad_phi = y_u_b * (-0.5 / n) + m_phi * (0.25 / n)
    grad_u_a = u_b * (-2 * gamma / n) + u_a * (2 * gamma / n)
    prediction = times(phi[None, :], y_u_b.reshape(d, 1)) * (-0.5) + times(phi[None, :], m_phi.reshape(d, 1)) * 0.125
    trace_m = m.reshape(d * d)[np.arange(d) * (d + 1)].sum()
    cross = (u_b * u_a).sum()
    alignment = (trace_m + cross * -2.0 + float((u_a * u_a).sum())) * gamma
    loss = (prediction.reshape(1) + alignment.reshape(1) + n * math.log(2)) * (1.0 / n)
    return {"phi": grad_phi, "u_a": grad_u_a, "loss": loss}
