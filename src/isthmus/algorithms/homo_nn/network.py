"""The network of a homo_nn job in PyTorch: built from the layer list or the factory, its loss and scores.

Only this module and :mod:`~isthmus.algorithms.homo_nn.data` import PyTorch, and only when a job
trains or loads a homo_nn model, so isthmus installs and runs every other model without it.
Every party builds the network from the same options and seed, so all start from the same weights.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from isthmus.algorithms.homo_nn.options import Layer, NetworkOptions, NNOptions, output_shapes
from isthmus.errors import ConfigError
from isthmus.horizontal.torch_model import load_parameters, module_parameters

Parameters = list[np.ndarray]


def torch_module() -> Any:
    try:
        import torch
    except ImportError:
        raise ConfigError("homo_nn needs PyTorch at every party: pip install 'isthmus[torch]'") from None
    return torch


def input_shape(network: NetworkOptions, n_features: int, party: str) -> tuple[int, ...]:
    """The shape of one example: the job's ``input_shape`` (its size must match the table), else a vector."""
    if network.input_shape is None:
        return (n_features,)
    shape = tuple(network.input_shape)
    if math.prod(shape) != n_features:
        raise ConfigError(f"party {party!r}: network.input_shape {list(shape)} holds {math.prod(shape)} values but "
                          f"the table has {n_features} feature columns")
    return shape


def build(options: NNOptions, shape: tuple[int, ...]) -> Any:
    """The network for examples of ``shape``, its weights drawn from ``options.seed``; sets the party
    process's CPU threads (``cpu_threads``), since every party builds the network before it trains."""
    torch = torch_module()
    torch.set_num_threads(options.cpu_threads)
    torch.manual_seed(options.seed)
    if options.network.factory:
        module = imported(options.network.factory, "network.factory")(input_shape=shape, outputs=options.outputs)
        if not isinstance(module, torch.nn.Module):
            raise ConfigError(f"network.factory {options.network.factory!r} returned a {type(module).__name__}, "
                              "not a torch.nn.Module")
        return module
    layers = options.network.parsed_layers()
    shapes = output_shapes(layers, shape)
    modules, previous = [], shape
    for layer, out in zip(layers, shapes):
        modules.extend(_torch_layers(torch, layer, previous))
        previous = out
    if len(previous) > 1:
        modules.append(torch.nn.Flatten())
    modules.append(torch.nn.Linear(math.prod(previous), options.outputs))
    return torch.nn.Sequential(*modules)


def _torch_layers(torch: Any, layer: Layer, previous: tuple[int, ...]) -> list[Any]:
    nn = torch.nn
    if layer.kind == "dense":
        flatten = [nn.Flatten()] if len(previous) > 1 else []
        return [*flatten, nn.Linear(math.prod(previous), layer.size)]
    if layer.kind == "activation":
        return [{"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[layer.name]()]
    if layer.kind == "dropout":
        return [nn.Dropout(layer.rate)]
    if layer.kind == "flatten":
        return [nn.Flatten()]
    if layer.kind == "maxpool":
        return [nn.MaxPool2d(layer.size)]
    return [nn.Conv2d(previous[0], layer.size, layer.kernel, padding=layer.padding)]


def imported(path: str, option: str) -> Callable[..., Any]:
    """The function ``package.module:function`` named by ``option``, imported from this party's own installation."""
    module_name, _, function = path.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{option} {path!r} cannot be imported here (each party installs it itself): "
                          f"{exc}") from None
    if not callable(found):
        raise ConfigError(f"{option} {path!r} is not callable")
    return found


def loss_function(task: str) -> Callable[[Any, Any], Any]:
    """Raw outputs and targets -> mean loss: cross-entropy on logits for classes, squared error for values."""
    functional = torch_module().nn.functional
    if task == "binary":
        return lambda out, y: functional.binary_cross_entropy_with_logits(out.squeeze(1), y)
    if task == "multiclass":
        return lambda out, y: functional.cross_entropy(out, y)
    return lambda out, y: functional.mse_loss(out.squeeze(1), y)


def optimizer_factory(options: NNOptions) -> Callable[[Any], Any]:
    optim = torch_module().optim
    if options.optimizer == "adam":
        return lambda params: optim.Adam(params, lr=options.learning_rate, weight_decay=options.weight_decay)
    return lambda params: optim.SGD(params, lr=options.learning_rate, momentum=options.momentum,
                                    weight_decay=options.weight_decay)


def device(options: NNOptions) -> str:
    torch = torch_module()
    if options.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but PyTorch sees no CUDA device here")
    return "cuda" if options.device != "cpu" and torch.cuda.is_available() else "cpu"


def scores(module: Any, task: str, inputs: Any) -> np.ndarray:
    """P(y=1) (binary), class probabilities (multiclass) or values (regression) of a batch, as float64."""
    torch = torch_module()
    module.eval()
    with torch.no_grad():
        out = module(inputs)
        out = torch.sigmoid(out.squeeze(1)) if task == "binary" else torch.softmax(out, 1) if task == "multiclass" \
            else out.squeeze(1)
    return out.cpu().numpy().astype(np.float64)


def with_parameters(module: Any, parameters: Parameters) -> Any:
    load_parameters(module, parameters)
    return module


def initial_parameters(module: Any) -> Parameters:
    return module_parameters(module)


def describe_shapes(parameters: Parameters) -> list[list[int]]:
    return [list(p.shape) for p in parameters]
