"""PyTorch modules from the job's layer lists, and their weights as JSON-able lists (never pickle).

torch is imported inside these functions so that isthmus installs and loads without it; only a
party that trains or serves a hetero_nn model needs the ``torch`` extra.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from isthmus.errors import ConfigError, DataError


def torch():
    """The torch module, or a ConfigError saying how to get it."""
    try:
        import torch as module
    except ImportError:
        raise ConfigError("hetero_nn needs PyTorch: pip install 'isthmus[torch]'") from None
    return module


_seeding = threading.Lock()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Modules built inside draw their initial weights from ``seed`` alone. torch's generator is one
    per process, so parties that share a process (tests, contribution's coalitions) would otherwise
    draw from it in whatever order their threads run."""
    t = torch()
    with _seeding, t.random.fork_rng(devices=[]):
        t.manual_seed(seed)
        yield


def width(layers: list, inputs: int) -> int:
    """Output width of ``layers`` applied to ``inputs`` columns."""
    widths = [layer for layer in layers if isinstance(layer, int)]
    return widths[-1] if widths else inputs


def sequential(layers: list, inputs: int):
    """``nn.Sequential`` of Linear layers (the widths) and activations (the names)."""
    nn = torch().nn
    modules, current = [], inputs
    for layer in layers:
        if isinstance(layer, int):
            modules.append(nn.Linear(current, layer))
            current = layer
        else:
            modules.append({"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[layer]())
    return nn.Sequential(*modules)


def optimizer(name: str, parameters, learning_rate: float):
    optim = torch().optim
    parameters = list(parameters)
    if not parameters:
        return None
    return (optim.Adam if name == "adam" else optim.SGD)(parameters, lr=learning_rate)


def state_lists(module) -> dict[str, Any]:
    """A module's weights as nested lists, for model.json."""
    return {name: tensor.detach().cpu().numpy().tolist() for name, tensor in module.state_dict().items()}


def load_state(module, state: dict[str, Any], where: str) -> None:
    """Weights from :func:`state_lists` into ``module``; shapes must match the layer list exactly."""
    t = torch()
    own = module.state_dict()
    if not isinstance(state, dict) or set(state) != set(own):
        raise DataError(f"{where}: the saved weights name {sorted(state)[:6]}, the layers need {sorted(own)[:6]}")
    tensors = {}
    for name, value in state.items():
        array = np.asarray(value, dtype=np.float32)
        if array.shape != tuple(own[name].shape) or not np.isfinite(array).all():
            raise DataError(f"{where}: weights {name!r} have shape {array.shape}, expected {tuple(own[name].shape)}")
        tensors[name] = t.from_numpy(array)
    module.load_state_dict(tensors)


def as_tensor(array: np.ndarray):
    return torch().from_numpy(np.ascontiguousarray(array, dtype=np.float32))
