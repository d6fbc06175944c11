"""Each party's own small network x -> u (PyTorch, imported only when the model runs), and its
weights as plain lists for ``model.json`` (never a pickle)."""

from __future__ import annotations

from typing import Any

import numpy as np


def build(inputs: int, hidden: int, representation: int, seed: int) -> Any:
    """A one-hidden-layer MLP with a tanh (a linear map when ``hidden`` is 0).

    Initialised from its own numpy generator (PyTorch's default uniform bounds), not torch's global
    one: parties may run as threads of one process, and runs must repeat exactly.
    """
    import torch

    if hidden == 0:
        net = torch.nn.Linear(inputs, representation, dtype=torch.float64)
    else:
        net = torch.nn.Sequential(torch.nn.Linear(inputs, hidden, dtype=torch.float64), torch.nn.Tanh(),
                                  torch.nn.Linear(hidden, representation, dtype=torch.float64))
    rng = np.random.default_rng(seed)
    layers = [net] if hidden == 0 else [net[0], net[2]]
    return restore(net, [values for layer in layers for values in _uniform(rng, layer.in_features, layer.out_features)])


def _uniform(rng: np.random.Generator, fan_in: int, fan_out: int) -> list[np.ndarray]:
    bound = 1.0 / np.sqrt(fan_in)
    return [rng.uniform(-bound, bound, (fan_out, fan_in)), rng.uniform(-bound, bound, fan_out)]


def weights(net: Any) -> list[list]:
    return [p.detach().numpy().tolist() for p in net.parameters()]


def restore(net: Any, values: list[list]) -> Any:
    import torch

    params = list(net.parameters())
    if len(values) != len(params):
        raise ValueError(f"expected {len(params)} weight arrays, got {len(values)}")
    with torch.no_grad():
        for param, value in zip(params, values):
            array = np.asarray(value, dtype=np.float64)
            if array.shape != tuple(param.shape):
                raise ValueError(f"weight shape {array.shape}, expected {tuple(param.shape)}")
            param.copy_(torch.from_numpy(array))
    return net


def represent(net: Any, X: np.ndarray) -> np.ndarray:
    """u = Net(x) for rows X, without gradients (for scoring)."""
    import torch

    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64))).numpy()


def l2_penalty(net: Any) -> Any:
    return sum((p * p).sum() for p in net.parameters())
