"""The guest of hetero_nn: holds the labels and the top model, orders the hosts batch by batch.

Per batch the guest broadcasts the rows, takes every host's part of the interactive layer (links
run concurrently: each host computes while the guest serves the others), runs its network forward
and backward with PyTorch, and returns each host the gradient of its bottom output (plus noise with
`label_noise`: the hosts read the labels off it otherwise). After each epoch it scores its held-out
rows jointly for early stopping and tells the hosts when to keep a snapshot.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import numpy as np

from isthmus.algorithms.base import Task
from isthmus.algorithms.hetero_nn import tags
from isthmus.algorithms.hetero_nn.interactive import GuestLink
from isthmus.algorithms.hetero_nn.layers import as_tensor, optimizer, torch
from isthmus.algorithms.hetero_nn.network import loss_function, scores, target_tensor
from isthmus.algorithms.hetero_nn.options import NNOptions
from isthmus.transport.channel import Channel

#: Rows scored per request when predicting: bounds each message.
SCORE_ROWS = 1024


def with_label_noise(delta: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """``delta`` plus Gaussian noise whose rows are ``scale`` times the batch's gradient size (the root mean
    square of its rows) long on average: what the hosts get instead of the gradient. A binary loss's
    gradient is (p - y) times a direction that varies little between rows, so without noise the rows of each
    class point one way and a host reads the labels (AUC 0.94-1.00, median per batch on default_credit:
    benchmarks/label_leakage.py nn). Over E epochs
    a host averaging a row's gradients divides the noise by sqrt(E)."""
    if scale == 0:
        return delta
    size = np.sqrt((delta ** 2).sum(axis=1).mean())
    return delta + rng.normal(scale=scale * size / np.sqrt(delta.shape[1]), size=delta.shape)


class NNGuest:
    """The guest's network and links; ``fit`` trains them, ``predict`` scores rows jointly."""

    def __init__(self, options: NNOptions, task: Task, layers: list, network, links: list[GuestLink]):
        self.options, self.task, self.layers, self.network, self.links = options, task, layers, network, links
        self.history: list[dict] = []

    @property
    def hosts(self) -> list[str]:
        return [link.host for link in self.links]

    def fit(self, channel: Channel, X: np.ndarray, target: np.ndarray, train_rows: np.ndarray,
            validation_rows: np.ndarray, progress: Callable[..., None]) -> NNGuest:
        options = self.options
        self._use(channel)
        rng = np.random.default_rng(options.seed)
        noise_rng = np.random.default_rng()  # from the OS: a host knows the job's seed
        opt = optimizer(options.optimizer, self.network.parameters(), options.learning_rate)
        loss_fn, best, best_loss, stale = loss_function(self.task), None, np.inf, 0
        for epoch in range(options.epochs):
            started, total = time.perf_counter(), 0.0
            order = rng.permutation(train_rows)
            self.network.train()
            for start in range(0, len(order), options.batch_size):
                rows = np.sort(order[start:start + options.batch_size])
                z_hosts = as_tensor(self._hosts_part("batch", rows)).requires_grad_()
                loss = loss_fn(self.network(as_tensor(X[rows]), z_hosts), target_tensor(self.task, target[rows]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                delta = z_hosts.grad.numpy().astype(np.float64)
                to_hosts = with_label_noise(delta, options.label_noise, noise_rng)
                for link in self.links:
                    link.begin_backward(delta, to_hosts)
                for link in self.links:
                    link.end_backward()
                total += loss.item() * len(rows)
            record = {"epoch": epoch + 1, "epochs": options.epochs, "loss": total / len(order),
                      "seconds": round(time.perf_counter() - started, 3)}
            if len(validation_rows):
                record["validation_loss"] = self._loss(X, target, validation_rows, loss_fn)
                if record["validation_loss"] < best_loss - 1e-9:
                    best_loss, stale = record["validation_loss"], 0
                    best = self._snapshot()
                    channel.broadcast(self.hosts, tags.CONTROL, {"op": "keep-best"})
                else:
                    stale += 1
            self.history.append(record)
            progress(**record)
            if options.early_stopping_rounds and stale >= options.early_stopping_rounds:
                break
        if options.early_stopping_rounds and best is not None:
            self._restore(best)
        channel.broadcast(self.hosts, tags.CONTROL, {"op": "fit-done"})
        return self

    def predict(self, channel: Channel, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
        self._use(channel)
        parts = [self._logits(X, rows[i:i + SCORE_ROWS]) for i in range(0, len(rows), SCORE_ROWS)]
        return scores(self.task, torch().cat(parts)) if parts else np.zeros(0)

    def finish(self, channel: Channel) -> None:
        channel.broadcast(self.hosts, tags.CONTROL, {"op": "finish"})

    def _use(self, channel: Channel) -> None:
        self.channel = channel
        for link in self.links:
            link.channel = channel

    def _hosts_part(self, op: str, rows: np.ndarray) -> np.ndarray:
        """Sum over hosts of z_h for ``rows``: every host is ordered first, then served in turn."""
        self.channel.broadcast(self.hosts, tags.CONTROL, {"op": op, "rows": rows})
        for link in self.links:
            link.begin_forward(len(rows))
        return sum(link.end_forward() for link in self.links)

    def _logits(self, X: np.ndarray, rows: np.ndarray):
        z_hosts = as_tensor(self._hosts_part("score", rows))
        self.network.eval()
        with torch().no_grad():
            return self.network(as_tensor(X[rows]), z_hosts)

    def _loss(self, X: np.ndarray, target: np.ndarray, rows: np.ndarray, loss_fn) -> float:
        logits = torch().cat([self._logits(X, rows[i:i + SCORE_ROWS]) for i in range(0, len(rows), SCORE_ROWS)])
        return float(loss_fn(logits, target_tensor(self.task, target[rows])))

    def _snapshot(self) -> tuple:
        return copy.deepcopy(self.network.state_dict()), [link.weights.copy() for link in self.links]

    def _restore(self, snapshot: tuple) -> None:
        state, weights = snapshot
        self.network.load_state_dict(state)
        for link, w in zip(self.links, weights):
            link.weights = w
