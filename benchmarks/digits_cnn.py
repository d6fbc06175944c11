"""The digits-CNN case of benchmarks/vs_flower.py, shared by both sides so that they train the same thing.

homo_nn's demo CNN (built by homo_nn's own network code) on scikit-learn's 8x8 digits, the images
after the first 300 dealt to ``clients`` clients with Dirichlet(0.5) label skew, 300 held-out images
for accuracy. Each client is a :class:`~isthmus.horizontal.torch_model.TorchClient` seeded by its
index, so isthmus and Flower run identical local SGD and differ only in what carries the rounds.
Imported by Flower's venv too (which has torch, pydantic and scikit-learn), hence no other imports.
"""

from __future__ import annotations

import functools

import numpy as np

SHAPE = (1, 8, 8)
HELD_OUT = 300


@functools.lru_cache(maxsize=1)
def options():
    from isthmus.algorithms.homo_nn.options import NNOptions
    from isthmus.demos.nn_horizontal import TRAIN

    # about 15 images a client: small batches and several local epochs, or 10 rounds barely move the model
    return NNOptions(**{**{k: v for k, v in TRAIN.items() if k != "model"}, "batch_size": 8, "local_epochs": 5,
                        "learning_rate": 0.1})


@functools.lru_cache(maxsize=4)
def split(clients: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Pixels in [0, 1], labels, and each client's row indices (the held-out rows are the first 300)."""
    from sklearn.datasets import load_digits

    from isthmus.horizontal.partition import dirichlet_label_skew

    digits = load_digits()
    X, y = digits.data / 16.0, digits.target
    shards = dirichlet_label_skew(y[HELD_OUT:], clients, 0.5, seed=0, min_rows=2)
    return X, y, [HELD_OUT + rows for rows in shards]


def client(clients: int, index: int):
    """Client ``index`` of ``clients``: the CNN over its shard, trained as homo_nn trains it."""
    from isthmus.algorithms.homo_nn import data, network
    from isthmus.horizontal.torch_model import TorchClient

    X, y, shards = split(clients)
    rows, opts = shards[index], options()
    return TorchClient(network.build(opts, SHAPE), network.loss_function("multiclass"), network.optimizer_factory(opts),
                       train=data.dataset(X[rows], y[rows], SHAPE, "multiclass"), epochs=opts.local_epochs,
                       batch_size=opts.batch_size, seed=index)


def initial_parameters() -> list[np.ndarray]:
    from isthmus.algorithms.homo_nn import network

    return network.initial_parameters(network.build(options(), SHAPE))


def accuracy(parameters: list[np.ndarray]) -> float:
    """Accuracy of ``parameters`` on the 300 held-out images."""
    from isthmus.algorithms.homo_nn import data, network

    X, y, _ = split(2)
    module = network.with_parameters(network.build(options(), SHAPE), parameters)
    scores = network.scores(module, "multiclass", data.inputs(X[:HELD_OUT], SHAPE))
    return float((scores.argmax(1) == y[:HELD_OUT]).mean())
