"""The aggregator of homo_nn: agrees the clients' columns and network, runs the linear models' rounds.

Before round 1 every client says which parameter shapes its network has; one that differs from the
aggregator's own build (another layer list, another factory version) stops the job, named, before
any update moves. With its own labelled rows the aggregator evaluates the global network every round.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from isthmus.algorithms.base import Party
from isthmus.algorithms.homo_linear.aggregator import agreed_features, run_rounds
from isthmus.algorithms.homo_nn import data, network
from isthmus.algorithms.homo_nn.client import SHAPES_TAG
from isthmus.algorithms.homo_nn.options import NNOptions
from isthmus.errors import DataError
from isthmus.horizontal import TrainingResult
from isthmus.horizontal.updates import RoundUpdates
from isthmus.ml.metrics import PRIMARY_METRIC, evaluate
from isthmus.protocols.inspect import Inspect

MAX_TENSORS = 4096


def agreed_shapes(channel: Any, clients: list[str], own: list[list[int]]) -> None:
    """Every client's parameter shapes must be the aggregator's; the first client that differs is named."""
    for client in clients:
        check = Inspect(client, SHAPES_TAG)
        shapes = check.sequence(channel.recv(client, SHAPES_TAG), what="parameter shapes")
        if len(shapes) > MAX_TENSORS or not all(
                isinstance(s, list) and len(s) <= 8 and all(type(d) is int and 0 <= d < 1 << 31 for d in s)
                for s in shapes):
            check.fail("expected a list of parameter shapes (lists of sizes)")
        if shapes != own:
            where = next((i for i, (a, b) in enumerate(zip(shapes, own, strict=False)) if a != b),
                         min(len(shapes), len(own)))
            theirs = shapes[where] if where < len(shapes) else "none"
            mine = own[where] if where < len(own) else "none"
            raise DataError(f"client {client!r} built another network: {len(shapes)} parameter tensors vs "
                            f"{len(own)} here; tensor {where} has shape {theirs} vs {mine}")


def train_aggregator(party: Party, options: NNOptions
                     ) -> tuple[tuple[int, ...], list[str], TrainingResult, list[RoundUpdates]]:
    """Run the rounds; returns the input shape, the agreed columns, the result and (if kept) each round's updates."""
    features, clients = agreed_features(party, options)
    shape = network.input_shape(options.network, len(features), party.name)
    module = network.build(options, shape)
    initial = network.initial_parameters(module)
    agreed_shapes(party.channel, clients, network.describe_shapes(initial))
    result, rounds = run_rounds(party, options, clients, initial, _evaluator(party, options, features, shape, module))
    return shape, features, result, rounds


def _evaluator(party: Party, options: NNOptions, features: list[str], shape: tuple[int, ...], module: Any):
    """The global network's primary metric on the aggregator's own labelled rows, if it has any."""
    if party.table is None:
        return None
    rows = party.labelled_rows().columns(features)
    data.check_targets(party.name, rows.label, options.task, options.classes)
    inputs, metric = data.inputs(rows.features, shape), PRIMARY_METRIC[options.task]

    def metrics(parameters: list[np.ndarray]) -> dict[str, float]:
        scores = network.scores(network.with_parameters(module, parameters), options.task, inputs)
        return evaluate(options.task, rows.label, scores, metrics=[metric])

    return metrics
