"""The `train` options of homo_nn: the network (a layer list or a factory) and its local training.

The layer list is parsed into typed layers and its shapes are walked (without PyTorch) when the job
loads, so a misspelt activation or a convolution that shrinks an 8x8 image to nothing is an error
naming the layer's position before any party opens a port.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self

from pydantic import Field, model_validator

from isthmus.algorithms.homo_linear.options import HorizontalOptions
from isthmus.options import Options

ACTIVATIONS = ("relu", "tanh", "sigmoid")
_WORDS = (*ACTIVATIONS, "flatten", "maxpool", "dropout", "conv2d")
FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
MAX_WIDTH = 1 << 16


@dataclass(frozen=True)
class Layer:
    """One parsed layer: ``kind`` in dense, activation, dropout, conv2d, maxpool, flatten."""

    kind: str
    size: int = 0  # dense: units; conv2d: output channels; maxpool: window
    name: str = ""  # activation: relu / tanh / sigmoid
    rate: float = 0.0  # dropout
    kernel: int = 3  # conv2d
    padding: int = 0  # conv2d


def parse_layer(raw: Any, where: str) -> Layer:
    """``64`` (dense), ``relu`` / ``tanh`` / ``sigmoid``, ``flatten``, ``maxpool``, ``{dropout: 0.2}``,
    ``{maxpool: 2}`` or ``{conv2d: 8, kernel: 3, padding: 1}``; a ValueError naming ``where`` otherwise."""
    if isinstance(raw, bool):
        raise ValueError(f"{where}: {raw!r} is not a layer")
    if isinstance(raw, int):
        if not 0 < raw <= MAX_WIDTH:
            raise ValueError(f"{where}: a dense layer needs 1 to {MAX_WIDTH} units, got {raw}")
        return Layer("dense", size=raw)
    if isinstance(raw, str):
        if raw in ACTIVATIONS:
            return Layer("activation", name=raw)
        if raw == "flatten":
            return Layer("flatten")
        if raw == "maxpool":
            return Layer("maxpool", size=2)
        if raw == "dropout":
            return Layer("dropout", rate=0.5)
        close = difflib.get_close_matches(raw, _WORDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; layers: a width, {', '.join(_WORDS)}"
        raise ValueError(f"{where}: unknown layer {raw!r}{hint}")
    if isinstance(raw, dict) and raw:
        kind = next((word for word in ("conv2d", "dropout", "maxpool") if word in raw), None)
        if kind == "dropout" and set(raw) == {"dropout"}:
            rate = raw["dropout"]
            if not isinstance(rate, float | int) or isinstance(rate, bool) or not 0 <= rate < 1:
                raise ValueError(f"{where}: dropout takes a rate in [0, 1), got {rate!r}")
            return Layer("dropout", rate=float(rate))
        if kind == "maxpool" and set(raw) == {"maxpool"}:
            return Layer("maxpool", size=_count(raw["maxpool"], f"{where}: maxpool", 1))
        if kind == "conv2d" and set(raw) <= {"conv2d", "kernel", "padding"}:
            return Layer("conv2d", size=_count(raw["conv2d"], f"{where}: conv2d channels", 1),
                         kernel=_count(raw.get("kernel", 3), f"{where}: kernel", 1),
                         padding=_count(raw.get("padding", 0), f"{where}: padding", 0))
    raise ValueError(f"{where}: {raw!r:.60} is not a layer; mappings are {{dropout: RATE}}, {{maxpool: SIZE}} "
                     "or {conv2d: CHANNELS, kernel: K, padding: P}")


def _count(value: Any, what: str, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= MAX_WIDTH:
        raise ValueError(f"{what} must be an integer from {low} to {MAX_WIDTH}, got {value!r}")
    return value


def output_shapes(layers: tuple[Layer, ...], input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Each layer's output shape (without the batch), or a ValueError naming the first layer that cannot
    take its input: convolutions and pooling need an image ``[channels, height, width]`` and come
    before any dense layer; a dense layer flattens an image itself."""
    shape, shapes = tuple(input_shape), []
    for i, layer in enumerate(layers):
        where = f"network.layers[{i}] ({layer.kind})"
        if layer.kind in ("conv2d", "maxpool"):
            if len(shape) != 3:
                raise ValueError(f"{where} needs an image-shaped input [channels, height, width] (set "
                                 f"network.input_shape, and put it before any dense layer or flatten); its input has "
                                 f"shape {list(shape)}")
            channels, height, width = shape
            if layer.kind == "conv2d":
                reach = layer.kernel - 1 - 2 * layer.padding
                shape = (layer.size, height - reach, width - reach)
            else:
                shape = (channels, height // layer.size, width // layer.size)
            if min(shape[1:]) < 1:
                raise ValueError(f"{where} turns a {height}x{width} input into {shape[1]}x{shape[2]}: nothing left")
        elif layer.kind == "dense":
            shape = (layer.size,)
        elif layer.kind == "flatten":
            shape = (math.prod(shape),)
        shapes.append(shape)
    return shapes


Layers = Annotated[list[int | str | dict[str, float | int]], Field(max_length=256)]


class NetworkOptions(Options):
    """The network: ``layers`` (the output layer is added for the task) or a ``factory`` each party imports.

    A factory ``"package.module:build"`` is called as ``build(input_shape=(...), outputs=K)`` and returns
    a ``torch.nn.Module`` mapping a batch of inputs to ``K`` raw outputs (logits). Each party installs
    the package itself: code never travels over the wire.
    """

    layers: Layers | None = None
    factory: str | None = None
    input_shape: Annotated[list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]], Field(min_length=1, max_length=3)] | None = None

    @model_validator(mode="after")
    def _one_way_to_build(self) -> Self:
        if (self.layers is None) == (self.factory is None):
            raise ValueError("network takes either 'layers' (a list) or 'factory' ('package.module:function')")
        if self.factory is not None and not FACTORY.match(self.factory):
            raise ValueError(f"network.factory must look like 'package.module:function', got {self.factory!r}")
        parsed = self.parsed_layers()
        if self.input_shape is not None:
            output_shapes(parsed, tuple(self.input_shape))
        elif any(layer.kind in ("conv2d", "maxpool") for layer in parsed):
            raise ValueError("conv2d and maxpool need network.input_shape, e.g. [1, 8, 8] for 8x8 grey images")
        return self

    def parsed_layers(self) -> tuple[Layer, ...]:
        return tuple(parse_layer(raw, f"network.layers[{i}]") for i, raw in enumerate(self.layers or []))


class NNOptions(HorizontalOptions):
    network: NetworkOptions
    task: Literal["binary", "multiclass", "regression"] = "binary"
    #: Multiclass: labels are the class indices 0 .. classes-1.
    classes: int | None = Field(None, ge=2, le=MAX_WIDTH)
    optimizer: Literal["sgd", "adam"] = "sgd"
    learning_rate: float = Field(0.05, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)  # sgd only
    weight_decay: float = Field(0.0, ge=0)
    local_epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    #: Where local training runs: cuda when present (auto), else the CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: PyTorch's CPU threads in this party's process: small networks train fastest on one, and parties
    #: sharing a machine otherwise fight over its cores (six processes on two cores ran 6x slower).
    cpu_threads: int = Field(1, ge=1, le=1024)
    #: A client of your own, ``"package.module:function"``: each client party imports it and calls it with
    #: its :class:`~isthmus.horizontal.client.ClientContext` (its table included) for the
    #: :class:`~isthmus.horizontal.client.Client` that trains ``network`` (same parameter shapes, checked).
    client_fn: str | None = None

    @model_validator(mode="after")
    def _classes_for_multiclass(self) -> Self:
        if (self.task == "multiclass") != (self.classes is not None):
            raise ValueError("'classes' (the number of classes) is needed for task multiclass, and only there")
        if self.client_fn is not None and not FACTORY.match(self.client_fn):
            raise ValueError(f"client_fn must look like 'package.module:function', got {self.client_fn!r}")
        return self

    @property
    def outputs(self) -> int:
        return self.classes if self.task == "multiclass" else 1
