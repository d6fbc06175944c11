"""Each party's own small network x -> u (PyTorch, imported only when the model runs), and its
weights as plain lists for ``model.json`` (never a pickle)."""

from __future__ import annotations

from typing import Any

import numpy as np


def build(inputs: int, hidden: int, representation: int, seed: int) -> Any:
    """A one-hidden-layer MLP with a tanh (a linear map when ``hidden`` is 0).

    Initialised from its own numpy generator (PyTorch's default uniform bounds), not torch's global
    one: parties may run as threads of one process, and runs must repeat exactly. Sets PyTorch to one
    CPU thread in this process (as ``homo_nn``'s default): these networks have hundreds of weights, and
    on a loaded machine two threads made the guest's 300 pretraining steps take 94 s instead of 3 s.
    """
    import torch

    torch.set_num_threads(1)

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


def flat_parameters(net: Any) -> int:
    return sum(p.numel() for p in net.parameters())


def outputs_and_jacobian(net: Any, outputs: Any) -> tuple[np.ndarray, np.ndarray]:
    """``outputs(params)`` flattened, and its Jacobian w.r.t. the net's parameters, (outputs, parameters).

    ``outputs`` maps a name -> tensor dict (for ``torch.func.functional_call``) to a tensor.
    """
    import torch
    from torch.func import jacrev

    params = {name: p.detach() for name, p in net.named_parameters()}
    values = outputs(params).detach().reshape(-1)
    blocks = jacrev(outputs)(params)
    return values.numpy(), torch.cat([blocks[name].reshape(len(values), -1) for name in params], dim=1).numpy()


def apply_gradient(net: Any, optimizer: Any, gradient: np.ndarray, l2: float) -> None:
    """One optimiser step from a flat gradient of the federated loss (plus this party's own L2 term)."""
    import torch

    optimizer.zero_grad()
    start = 0
    for param in net.parameters():
        size = param.numel()
        part = torch.from_numpy(np.ascontiguousarray(gradient[start:start + size])).reshape(param.shape)
        param.grad = part + l2 * param.detach()
        start += size
    optimizer.step()
