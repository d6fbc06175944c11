"""The guest's network (its bottom, its share of the interactive layer, the top model) and the loss.

The hosts' parts of the interactive layer enter as one summed input ``z_hosts`` (B x k), so the
same module trains federated (z_hosts from the links) and centrally (z_hosts from the hosts'
bottoms in the same process, see reference.py).
"""

from __future__ import annotations

import numpy as np

from isthmus.algorithms.base import Task
from isthmus.algorithms.hetero_nn.layers import sequential, torch, width
from isthmus.algorithms.hetero_nn.options import NNOptions


def outputs(task: Task, classes: int) -> int:
    return classes if task == "multiclass" else 1


def guest_network(options: NNOptions, layers: list, inputs: int, out: int):
    """bottom -> (+ z_hosts) interactive layer -> activation -> top -> output layer."""
    nn = torch().nn

    class GuestNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            self.bottom = sequential(layers, inputs)
            self.interactive = nn.Linear(width(layers, inputs), options.interactive_units)
            activation = options.interactive_activation
            self.top = sequential(([activation] if activation else []) + list(options.top), options.interactive_units)
            self.head = nn.Linear(width(options.top, options.interactive_units), out)

        def forward(self, x, z_hosts):
            return self.head(self.top(self.interactive(self.bottom(x)) + z_hosts))

    return GuestNetwork()


def loss_function(task: Task):
    nn = torch().nn
    return {"binary": nn.BCEWithLogitsLoss, "multiclass": nn.CrossEntropyLoss, "regression": nn.MSELoss}[task]()


def target_tensor(task: Task, target: np.ndarray):
    t = torch()
    if task == "multiclass":
        return t.from_numpy(target.astype(np.int64))
    return t.from_numpy(target.astype(np.float32)).reshape(-1, 1)


def scores(task: Task, logits) -> np.ndarray:
    """P(y=1), class probabilities, or values, from the output layer."""
    t = torch()
    with t.no_grad():
        if task == "binary":
            return t.sigmoid(logits).numpy()[:, 0].astype(np.float64)
        if task == "multiclass":
            return t.softmax(logits, dim=1).numpy().astype(np.float64)
        return logits.numpy()[:, 0].astype(np.float64)


def encode_labels(task: Task, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Targets (0/1, class index, or values) and the classes of a classifier."""
    if task == "regression":
        return np.asarray(y, dtype=np.float64), None
    classes = np.unique(y)
    return np.searchsorted(classes, y).astype(np.float64), classes
