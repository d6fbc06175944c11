"""Any PyTorch module as a horizontal client (optional extra)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification

from isthmus.horizontal import FedProx, simulate
from isthmus.horizontal.partition import iid

torch = pytest.importorskip("torch")
from isthmus.horizontal.torch_model import TorchClient


def _accuracy(outputs, targets):
    return {"accuracy": float(((outputs.squeeze(1) > 0) == (targets > 0.5)).float().mean())}


def test_a_torch_mlp_trains_federated_under_secure_aggregation():
    torch.manual_seed(0)
    X, y = make_classification(1500, 10, n_informative=6, random_state=4)
    X, y = X.astype(np.float32), y.astype(np.float32)
    test = slice(1200, None)

    def client(rows, seed):
        torch.manual_seed(0)  # same initial weights everywhere
        module = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        loss = lambda out, target: torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), target)
        return TorchClient(
            module,
            loss,
            lambda params: torch.optim.SGD(params, lr=0.1),
            X[rows],
            y[rows],
            X_test=X[test],
            y_test=y[test],
            metrics_fn=_accuracy,
            seed=seed,
        )

    clients = [client(rows, i) for i, rows in enumerate(iid(1200, 3))]
    before = clients[0].evaluate(clients[0].get_parameters(), {}).metrics["accuracy"]
    result = simulate(clients, FedProx(proximal_mu=0.01, fraction_evaluate=1.0), 5)
    assert all(p.dtype == np.float32 for p in result.parameters)
    assert result.history[-1].evaluate_metrics["accuracy"] > max(0.8, before + 0.2)
    assert result.history[-1].fit_metrics["loss"] < result.history[0].fit_metrics["loss"]
