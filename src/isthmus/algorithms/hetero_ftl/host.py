"""The host (target domain): no labels; it learns from the shared rows and then labels the rest of
its rows itself. Their scores are decrypted behind masks, so only the host ever holds them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from isthmus.algorithms.base import Party
from isthmus.algorithms.hetero_ftl import nets, terms
from isthmus.algorithms.hetero_ftl.exchange import Link, times
from isthmus.algorithms.hetero_ftl.guest import COUNT
from isthmus.algorithms.hetero_ftl.options import FtlOptions
from isthmus.algorithms.hetero_ftl.training import (LABEL_CHUNK, batches, fit_inputs, parameter_gradient,
                                                    plan_batches, shared_rows)

PREDICTIONS = "predictions.csv"


def fit_host(party: Party, options: FtlOptions) -> dict:
    import torch
    from torch.func import functional_call

    table, guest = party.rows(), party.roster.one("guest")
    overlap = shared_rows(party, options)
    scaler = fit_inputs(table.features, options)
    X = scaler.transform(table.features)
    X_t = torch.from_numpy(X)
    net = nets.build(X.shape[1], options.hidden, options.representation, options.seed + 1)
    link = Link(party.channel, guest, options.protection == "encrypted", options.key_bits, nets.flat_parameters(net))
    parts = plan_batches(party, options, len(overlap), nets.flat_parameters(net), link.peer_parameters)
    optimizer = torch.optim.Adam(net.parameters(), lr=options.learning_rate)
    d = options.representation
    for epoch in range(options.epochs):
        for batch in batches(parts, options, epoch):
            rows, n = overlap[batch], len(batch)
            for local in range(options.local_rounds):
                u_b, jacobian = nets.outputs_and_jacobian(net, lambda params: functional_call(net, params, (X_t[rows],)))
                u_b = u_b.reshape(n, d)
                if local == 0:
                    theirs = link.swap_terms(terms.host_terms(u_b), terms.guest_shapes(n, d))
                mine = {"theta": parameter_gradient(jacobian, terms.host_gradient(theirs, u_b, options.gamma))}
                plain = link.decrypt_both(mine, {"theta": (link.peer_parameters,), "loss": (1,)})
                nets.apply_gradient(net, optimizer, plain["theta"], options.l2)
        party.progress(epoch=epoch + 1, epochs=options.epochs)
    new_rows = np.setdiff1d(np.arange(table.n_rows), overlap)
    scores = _label(link, nets.represent(net, X[new_rows]), d)
    pd.DataFrame({"id": table.ids[new_rows], "score": scores, "label": (scores >= options.threshold).astype(int)}
                 ).to_csv(party.workdir / PREDICTIONS, index=False)
    return {"weights": nets.weights(net), "scaler": scaler.to_dict(), "feature_names": table.feature_names,
            "inputs": X.shape[1], "labelled_rows": int(len(new_rows)), "predictions": PREDICTIONS}


def _label(link: Link, u_new: np.ndarray, d: int) -> np.ndarray:
    """sigmoid(Phi . u_B,j) for the host's rows the guest does not have: [[Phi]] from the guest, the
    scores masked before the guest decrypts them."""
    phi = link.swap_terms({}, {"phi": (d,)})["phi"]
    link.channel.send(link.peer, COUNT, len(u_new))
    z = [link.decrypt_both({"z": times(u_new[start:start + LABEL_CHUNK], phi.reshape(d, 1)).reshape(-1)}, {})["z"]
         for start in range(0, len(u_new), LABEL_CHUNK)]
    return 1.0 / (1.0 + np.exp(-np.concatenate(z))) if z else np.zeros(0)
