"""The guest's own supervised term: its network and Phi learn from ALL its labelled rows.

The paper's loss sees the guest's labels only through the few shared rows (and Phi). But the guest
holds many more labelled rows than it shares, and what they know reaches the host only through the
guest's representation u_A, which the host learns to reproduce on the shared rows (the alignment
term). So the guest also minimises, on all its rows, the exact logistic loss of the same predictor
the host will use, ``z = Phi . u``:

    L_local = (1/N_A) sum_i log(1 + exp(-y_i Phi . u_A,i)),   Phi = (1/N_A) sum_i y_i u_A,i

first alone (``guest_pretrain_epochs``: u_A is already predictive when the host starts aligning to
it) and then weighted into every federated step (``guest_local_weight``). It is computed by the
guest on its own rows: no message, nothing more for the host to see than before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from isthmus.algorithms.hetero_ftl import nets


def local_loss(net: Any, X: Any, y: Any) -> Any:
    """L_local as a PyTorch scalar (y in {-1, +1})."""
    import torch

    u = net(X)
    phi = (y[:, None] * u).mean(0)
    return torch.nn.functional.softplus(-y * (u @ phi)).mean()


def local_gradient(net: Any, X: Any, y: Any) -> np.ndarray:
    """dL_local/dtheta, flat in the order of ``net.parameters()`` (as the federated gradient)."""
    import torch

    grads = torch.autograd.grad(local_loss(net, X, y), list(net.parameters()))
    return torch.cat([g.reshape(-1) for g in grads]).numpy()


def pretrain(net: Any, optimizer: Any, X: Any, y: Any, epochs: int, l2: float) -> None:
    """Full-batch steps on L_local alone, before any message (all rows: Phi is a mean over all of them)."""
    for _ in range(epochs):
        nets.apply_gradient(net, optimizer, local_gradient(net, X, y), l2)
