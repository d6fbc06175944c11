"""The guest (source domain): labelled rows, all of which shape Phi; it never sees the host's new rows."""

from __future__ import annotations

import numpy as np

from isthmus.algorithms.base import Party
from isthmus.algorithms.hetero_ftl import nets, terms
from isthmus.algorithms.hetero_ftl.exchange import Link
from isthmus.algorithms.hetero_ftl.options import FtlOptions
from isthmus.algorithms.hetero_ftl.training import LABEL_CHUNK, batches, shared_rows, step
from isthmus.errors import DataError
from isthmus.ml.scaling import Standardizer
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

    table, host = party.labelled_rows(), party.roster.one("host")
    overlap, y = shared_rows(party, options), signed_labels(table.label, party.name)
    scaler = Standardizer.fit(table.features)
    X = torch.from_numpy(scaler.transform(table.features))
    link = Link(party.channel, host, options.protection == "encrypted", options.key_bits)
    net = nets.build(X.shape[1], options.hidden, options.representation, options.seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=options.learning_rate)
    y_t, d = torch.from_numpy(y), options.representation
    for epoch in range(options.epochs):
        losses = []
        for batch in batches(len(overlap), options, epoch):
            rows, n = overlap[batch], len(batch)
            for local in range(options.local_rounds):
                u = net(X)
                phi, u_a = (y_t[:, None] * u).mean(0), u[rows]
                phi_np, u_a_np = phi.detach().numpy(), u_a.detach().numpy()
                if local == 0:
                    theirs = link.swap_terms(terms.guest_terms(phi_np, u_a_np, y[rows]), terms.host_shapes(n, d))
                mine = terms.guest_gradients(theirs, phi_np, u_a_np, y[rows], options.gamma)
                grads = link.decrypt_both(mine, terms.host_gradient_shapes(n, d))
                step(optimizer, net, {phi: grads["phi"], u_a: grads["u_a"]}, options.l2)
                if local == 0:
                    losses.append(float(grads["loss"][0]))
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
