"""The guest (source domain): labelled rows, all of which shape Phi; it never sees the host's new rows."""

from __future__ import annotations

import numpy as np

from isthmus.algorithms.base import Party
from isthmus.algorithms.hetero_ftl import nets, supervised, terms
from isthmus.algorithms.hetero_ftl.exchange import Link
from isthmus.algorithms.hetero_ftl.options import FtlOptions
from isthmus.algorithms.hetero_ftl.training import (LABEL_CHUNK, batches, fit_inputs, joined, parameter_gradient,
                                                    plan_batches, shared_rows)
from isthmus.errors import DataError
from isthmus.protocols.inspect import Inspect

COUNT = "ftl/count"
MAX_HOST_ROWS = 100_000_000


def signed_labels(label: np.ndarray, party: str) -> np.ndarray:
    """Labels as -1/+1; binary labels 0/1 or -1/+1 only (FTL's loss is the binary logistic one)."""
    values = set(np.unique(label).tolist())
    if not values <= {0.0, 1.0} and not values <= {-1.0, 1.0}:
        raise DataError(f"party {party!r}: hetero_ftl needs binary labels (0/1 or -1/+1), found "
                        f"{sorted(values)[:5]}; multiclass and regression are not supported")
    if len(values) < 2:
        raise DataError(f"party {party!r}: hetero_ftl needs both classes among the labels, found only {values}")
    return np.where(label > 0, 1.0, -1.0)


def fit_guest(party: Party, options: FtlOptions) -> dict:
    import torch
    from torch.func import functional_call

    table, host = party.labelled_rows(), party.roster.one("host")
    overlap, y = shared_rows(party, options), signed_labels(table.label, party.name)
    scaler = fit_inputs(table.features, options)
    X = torch.from_numpy(scaler.transform(table.features))
    net = nets.build(X.shape[1], options.hidden, options.representation, options.seed)
    link = Link(party.channel, host, options.protection == "encrypted", options.key_bits, nets.flat_parameters(net))
    parts = plan_batches(party, options, len(overlap), nets.flat_parameters(net), link.peer_parameters)
    optimizer = torch.optim.Adam(net.parameters(), lr=options.learning_rate)
    y_t, d = torch.from_numpy(y), options.representation
    supervised.pretrain(net, optimizer, X, y_t, options.guest_pretrain_epochs, options.l2)
    for epoch in range(options.epochs):
        losses = []
        for batch in batches(parts, options, epoch):
            rows, n = overlap[batch], len(batch)
            for local in range(options.local_rounds):
                phi, phi_jacobian = nets.outputs_and_jacobian(
                    net, lambda params: (y_t[:, None] * functional_call(net, params, (X,))).mean(0))
                u_a, u_a_jacobian = nets.outputs_and_jacobian(net, lambda params: functional_call(net, params, (X[rows],)))
                u_a = u_a.reshape(n, d)
                if local == 0:
                    theirs = link.swap_terms(terms.guest_terms(phi, u_a, y[rows]), terms.host_shapes(n, d))
                grads = terms.guest_gradients(theirs, phi, u_a, y[rows], options.gamma)
                mine = {"theta": parameter_gradient(np.vstack([phi_jacobian, u_a_jacobian]),
                                                    joined([grads["phi"], grads["u_a"]])), "loss": grads["loss"]}
                plain = link.decrypt_both(mine, {"theta": (link.peer_parameters,)})
                local_term = options.guest_local_weight * supervised.local_gradient(net, X, y_t)
                nets.apply_gradient(net, optimizer, plain["theta"] + local_term, options.l2)
                if local == 0:
                    losses.append(float(plain["loss"][0]))
        party.progress(epoch=epoch + 1, epochs=options.epochs, loss=round(float(np.mean(losses)), 6))
    phi = (y[:, None] * nets.represent(net, X.numpy())).mean(0)
    _label_host_rows(link, phi)
    return {"weights": nets.weights(net), "scaler": scaler.to_dict(), "phi": phi.tolist(),
            "feature_names": table.feature_names, "inputs": X.shape[1]}


def _label_host_rows(link: Link, phi: np.ndarray) -> None:
    """Send [[Phi]] under the guest's key; decrypt the host's masked scores (uniform in Z_n to the guest)."""
    link.swap_terms({"phi": phi}, {})
    count = Inspect(link.peer, COUNT).integer(link.channel.recv(link.peer, COUNT), 0, MAX_HOST_ROWS, "rows")
    for start in range(0, count, LABEL_CHUNK):
        link.decrypt_both({}, {"z": (min(LABEL_CHUNK, count - start),)})
