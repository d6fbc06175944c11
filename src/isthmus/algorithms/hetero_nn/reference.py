"""The centralised twin for ``isthmus parity``: the same networks trained in one PyTorch process.

Each party's bottom model sees its own block of the pooled columns, each host's interactive weights
W_h are one plain parameter (initialised like the federated share plus noise) trained by SGD at the
interactive learning rate, everything else by the job's optimiser: same batches, epochs and seed.
No early stopping (the reference does not get the labels of the held-out rows).
"""

from __future__ import annotations

import numpy as np

from isthmus.algorithms.base import Roster, Task
from isthmus.algorithms.hetero_nn.interactive import initial_noise, initial_share
from isthmus.algorithms.hetero_nn.layers import as_tensor, optimizer, sequential, torch, width
from isthmus.algorithms.hetero_nn.network import encode_labels, guest_network, loss_function, outputs, scores, target_tensor
from isthmus.algorithms.hetero_nn.options import NNOptions
from isthmus.ml.scaling import Standardizer


def pooled_reference(options: NNOptions, task: Task, X_train: np.ndarray, y_train: np.ndarray, X_eval: np.ndarray,
                     owners: list[str], roster: Roster) -> np.ndarray:
    t = torch()
    if options.scale:  # each party standardises its columns over all aligned rows
        scaler = Standardizer.fit(np.vstack([X_train, X_eval]))
        X_train, X_eval = scaler.transform(X_train), scaler.transform(X_eval)
    guest = roster.one("guest")
    owners = np.asarray(owners)
    columns = {name: np.flatnonzero(owners == name) for name in [guest, *roster.with_role("host")]}
    target, classes = encode_labels(task, y_train)
    t.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    network = guest_network(options, options.bottom_of(guest, "guest"), len(columns[guest]),
                            outputs(task, len(classes) if classes is not None else 0))
    bottoms, interactive = [], []
    for host in roster.with_role("host"):
        layers = options.bottom_of(host, "host")
        bottoms.append(sequential(layers, len(columns[host])))
        d = width(layers, len(columns[host]))
        weights = initial_share(rng, d, options.interactive_units) + initial_noise(rng, options, d)
        interactive.append(t.nn.Parameter(as_tensor(weights)))
    trained = list(network.parameters()) + [p for bottom in bottoms for p in bottom.parameters()]
    opt = optimizer(options.optimizer, trained, options.learning_rate)
    sgd = t.optim.SGD(interactive, lr=options.interactive_learning_rate)
    loss_fn = loss_function(task)

    def forward(X: np.ndarray):
        z_hosts = sum(bottom(as_tensor(X[:, columns[host]])) @ w
                      for host, bottom, w in zip(roster.with_role("host"), bottoms, interactive))
        return network(as_tensor(X[:, columns[guest]]), z_hosts)

    order_rng = np.random.default_rng(options.seed)
    for _ in range(options.epochs):
        order = order_rng.permutation(len(X_train))
        for start in range(0, len(order), options.batch_size):
            rows = np.sort(order[start:start + options.batch_size])
            loss = loss_fn(forward(X_train[rows]), target_tensor(task, target[rows]))
            opt.zero_grad()
            sgd.zero_grad()
            loss.backward()
            opt.step()
            sgd.step()
    network.eval()
    for bottom in bottoms:
        bottom.eval()
    with t.no_grad():
        return scores(task, forward(X_eval))
