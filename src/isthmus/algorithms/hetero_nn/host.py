"""A host of hetero_nn: keeps its bottom model and its share of the interactive layer, follows orders.

It never learns the guest's model: for each batch it sends its bottom output (under its own Paillier
key when protected) and gets back only the gradient of that output, row by row, with which it trains
its bottom model locally. Those gradients point one way per class, so they reveal the training rows'
labels (docs/security.md, benchmarks/label_leakage.py), as in any split learning.
"""

from __future__ import annotations

import copy

import numpy as np

from isthmus.algorithms.hetero_nn import tags
from isthmus.algorithms.hetero_nn.interactive import HostLink
from isthmus.algorithms.hetero_nn.layers import as_tensor, optimizer, torch
from isthmus.algorithms.hetero_nn.options import NNOptions
from isthmus.protocols.commands import STOP, serve_orders, stop
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel


class NNHost:
    def __init__(self, options: NNOptions, layers: list, bottom, link: HostLink):
        self.options, self.layers, self.bottom, self.link = options, layers, bottom, link
        self._best = None

    def fit(self, channel: Channel, X: np.ndarray) -> NNHost:
        self._optimizer = optimizer(self.options.optimizer, self.bottom.parameters(), self.options.learning_rate)
        self._serve(channel, X, training=True)
        if self.options.early_stopping_rounds and self._best is not None:
            state, self.link.noise = self._best
            self.bottom.load_state_dict(state)
        return self

    def serve(self, channel: Channel, X: np.ndarray) -> None:
        self.link.channel = channel
        self._serve(channel, X, training=False)

    def _serve(self, channel: Channel, X: np.ndarray, *, training: bool) -> None:
        def score(order: dict, check: Inspect) -> None:
            rows = check.indices(order.get("rows"), len(X))
            self.bottom.eval()
            with torch().no_grad():
                alpha = self.bottom(as_tensor(X[rows])).numpy().astype(np.float64)
            self.link.forward(alpha, training=False)

        def batch(order: dict, check: Inspect) -> None:
            rows = check.indices(order.get("rows"), len(X))
            self.bottom.train()
            alpha = self.bottom(as_tensor(X[rows]))
            self.link.forward(alpha.detach().numpy().astype(np.float64), training=True)
            gradient = self.link.backward(len(rows))
            if self._optimizer is not None:
                self._optimizer.zero_grad()
                alpha.backward(as_tensor(gradient))
                self._optimizer.step()

        def keep_best(order: dict, check: Inspect) -> None:
            self._best = copy.deepcopy(self.bottom.state_dict()), self.link.noise.copy() \
                if self.link.noise is not None else None

        def fit_done(order: dict, check: Inspect) -> object:
            return STOP

        handlers = {"score": score, "finish": stop}
        if training:
            handlers.update({"batch": batch, "keep-best": keep_best, "fit-done": fit_done})
        serve_orders(channel, self.link.guest, tags.CONTROL, handlers)
