"""Options of hetero_nn: the layer lists of each part, training, and the interactive layer's protection.

Layer lists are checked when the job loads (``[16, relu, 8]``: widths and activation names); the
guest decides batches, epochs and stopping and orders the hosts step by step, so a host never acts on
its own reading of ``epochs`` or ``batch_size``.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from isthmus.algorithms.base import KeyBits, Seed, Task
from isthmus.options import Options

ACTIVATIONS = ("relu", "tanh", "sigmoid")
OPTIMIZERS = ("sgd", "adam")
#: Widest layer a job may declare: more is a typo or a memory bomb.
MAX_WIDTH = 4096
Layer = int | Literal[ACTIVATIONS]  # type: ignore[valid-type]


def check_layers(layers: list, where: str) -> list:
    """Widths in [1, MAX_WIDTH] and known activation names, no two activations in a row."""
    for i, layer in enumerate(layers):
        if isinstance(layer, bool) or (isinstance(layer, int) and not 1 <= layer <= MAX_WIDTH):
            raise ValueError(f"{where}: layer {i} width {layer!r} must be an integer in [1, {MAX_WIDTH}]")
        if isinstance(layer, str) and i and isinstance(layers[i - 1], str):
            raise ValueError(f"{where}: two activations in a row at layer {i} ({layers[i - 1]}, {layer})")
    return layers


class NNOptions(Options):
    task: Task = "binary"  # binary turns multiclass when the labels have 3+ values
    #: Bottom layers per party name, or per role ("guest", "host": every host without its own entry).
    #: An empty list passes the party's standardised columns through unchanged.
    bottom: dict[str, list[Layer]] = Field(default_factory=lambda: {"guest": [16, "relu", 8], "host": [16, "relu", 8]})
    interactive_units: int = Field(8, ge=1, le=MAX_WIDTH)
    interactive_activation: Literal[ACTIVATIONS] | None = "relu"  # type: ignore[valid-type]
    top: list[Layer] = Field(default_factory=lambda: [8, "relu"])  # the output layer is added for the task
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=1)
    optimizer: Literal[OPTIMIZERS] = "adam"  # type: ignore[valid-type]  # bottom and top models
    learning_rate: float = Field(0.01, gt=0)
    #: The interactive layer's weights are split between guest and host, so they take plain SGD steps
    #: (an update linear in the gradient keeps the two shares consistent).
    interactive_learning_rate: float = Field(0.1, gt=0)
    early_stopping_rounds: int = Field(0, ge=0)  # 0: off; else epochs without validation improvement
    validation_fraction: float = Field(0.0, ge=0, lt=1)  # share of aligned rows the guest holds out
    scale: bool = True  # standardise each party's columns over the aligned rows
    protection: Literal["paillier", "plain"] = "paillier"  # plain: split learning, benchmarks only
    key_bits: KeyBits = 2048
    precision: int = Field(16, ge=8, le=32)  # fractional bits of plaintext multipliers under encryption
    #: Scale of the host's noise on its share of W_A (initial and per step): what hides W_A and the
    #: host's weight gradient from the guest.
    noise: float = Field(0.5, gt=0, le=1e3)
    #: Gaussian noise the guest adds to the gradient each host gets, as a multiple of the batch's gradient
    #: size (the root mean square of its rows); 0: none. Without it a host reads the labels off its per-row
    #: gradients (benchmarks/label_leakage.py nn --label-noise N measures what remains, and the model's AUC).
    label_noise: float = Field(0.0, ge=0, le=1e3)
    seed: Seed = 0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for party, layers in self.bottom.items():
            check_layers(layers, f"bottom of {party!r}")
        check_layers(self.top, "top")
        if self.early_stopping_rounds and not self.validation_fraction:
            raise ValueError("early_stopping_rounds needs a validation_fraction > 0")
        return self

    def bottom_of(self, party: str, role: str) -> list:
        """The layer list of ``party``: its own entry, else its role's."""
        if party in self.bottom:
            return self.bottom[party]
        if role in self.bottom:
            return self.bottom[role]
        raise ValueError(f"bottom names no layers for party {party!r} nor for its role {role!r}")
