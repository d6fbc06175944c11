"""The guest's and the host's loops of hetero_lr_sshe: the guest picks every batch, the host follows.

Both end with the reveal, after which each holds only its own weights. Until then a failure aborts
the peer (it raises too), so no party returns weights from an unfinished protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from isthmus.algorithms.hetero_linear.abort import aborting_peers
from isthmus.algorithms.hetero_linear.batches import plan_batches
from isthmus.algorithms.sshe_lr import tags
from isthmus.algorithms.sshe_lr.options import SSHEOptions
from isthmus.algorithms.sshe_lr.protocol import Side, guest_residual, host_residual
from isthmus.errors import DataError
from isthmus.protocols.commands import STOP, serve_orders
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel


@dataclass
class Trained:
    """The guest's result: its weights (the intercept last), the label values, the epochs, and the rows
    to evaluate on (those held out, else all)."""

    weights: np.ndarray
    classes: np.ndarray
    history: list[dict]
    evaluation_rows: np.ndarray


def design(X: np.ndarray, fit_intercept: bool) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return np.hstack([X, np.ones((len(X), 1))]) if fit_intercept else X


def fit_guest(options: SSHEOptions, channel: Channel, X: np.ndarray, y: np.ndarray, *, host: str,
              progress: Callable[[dict], None] = lambda record: None) -> Trained:
    """Train with ``host`` on all rows but a held-out ``validation_fraction`` of them."""
    classes = np.unique(y)
    if len(classes) != 2:
        raise DataError(f"hetero_lr_sshe is binary: the guest's label has values {classes.tolist()[:10]}")
    target = (np.asarray(y) == classes[1]).astype(np.int64)
    Xd = design(X, options.fit_intercept)
    penalized = np.ones(Xd.shape[1], dtype=bool)
    if options.fit_intercept:
        penalized[-1] = False
    history = []
    with aborting_peers(channel, "guest"):
        side = Side(options, channel, host, Xd, first=True, penalized=penalized, peer_penalized_last=True)
        rng = np.random.default_rng(options.seed)
        order = rng.permutation(len(Xd))
        held_out = np.sort(order[:int(round(options.validation_fraction * len(order)))])
        train = np.sort(order[len(held_out):])
        edges = plan_batches(len(train), options.batch_size, 1, why="one row")
        for epoch in range(options.epochs):
            shuffled = rng.permutation(train)
            for start, stop in pairwise(edges):
                rows = np.sort(shuffled[start:stop])
                channel.send(host, tags.CONTROL, {"op": "batch", "rows": rows})
                z = side.scores(rows)
                side.step(rows, guest_residual(side, z, target[rows]), options.learning_rate)
            record = {"epoch": epoch + 1, "epochs": options.epochs, "batch_rows": edges[1] - edges[0]}
            history.append(record)
            progress(record)
        channel.send(host, tags.CONTROL, {"op": "reveal"})
        return Trained(side.reveal(), classes, history, held_out if len(held_out) else np.arange(len(Xd)))


def fit_host(options: SSHEOptions, channel: Channel, X: np.ndarray, *, guest: str) -> np.ndarray:
    """Follow the guest's batches; returns the host's weights once both parties revealed."""
    with aborting_peers(channel, "host"):
        side = Side(options, channel, guest, design(X, False), first=False,
                    penalized=np.ones(X.shape[1], dtype=bool), peer_penalized_last=not options.fit_intercept)
        weights = []

        def batch(order: dict, check: Inspect) -> None:
            check.mapping(order, {"op", "rows"}, exact=True)
            rows = check.indices(order["rows"], len(side.X), increasing=True)
            if not len(rows):
                check.fail("an empty batch")
            side.step(rows, host_residual(side, side.scores(rows)), options.learning_rate)

        def reveal(order: dict, check: Inspect) -> object:
            check.mapping(order, {"op"}, exact=True)
            weights.append(side.reveal())
            return STOP

        serve_orders(channel, guest, tags.CONTROL, {"batch": batch, "reveal": reveal})
        return weights[0]
