"""A client of homo_nn: builds the job's network, announces its parameter shapes, trains it each round.

Everything after the build is the linear models' client loop (:func:`~isthmus.algorithms.homo_linear.client.serve`):
the same terms held against the aggregator, the same crash injection, with a
:class:`~isthmus.horizontal.torch_model.TorchClient` reading the rows through a DataLoader, or the
job's ``client_fn`` (the user's own fit/evaluate, the one a ``simulate`` run used) building the client.
"""

from __future__ import annotations

import numpy as np

from isthmus.algorithms.base import Party
from isthmus.algorithms.homo_linear.client import serve
from isthmus.algorithms.homo_nn import data, network
from isthmus.algorithms.homo_nn.options import NNOptions
from isthmus.errors import ConfigError
from isthmus.horizontal.client import Client, ClientContext
from isthmus.horizontal.torch_model import TorchClient

SHAPES_TAG = "homo-nn/shapes"


def train_client(party: Party, options: NNOptions) -> tuple[tuple[int, ...], list[np.ndarray], int]:
    """Serve the aggregator until it stops; returns the input shape, the final parameters and the rounds fitted."""
    table = party.labelled_rows()
    data.check_targets(party.name, table.label, options.task, options.classes)
    shape = network.input_shape(options.network, len(table.feature_names), party.name)
    clients = party.roster.with_role("client")
    if options.client_fn:
        client = user_client(options.client_fn, ClientContext(party.name, clients.index(party.name), len(clients),
                                                               table))
    else:
        client = TorchClient(network.build(options, shape), network.loss_function(options.task),
                             network.optimizer_factory(options),
                             train=data.dataset(table.features, table.label, shape, options.task),
                             epochs=options.local_epochs, batch_size=options.batch_size,
                             device=network.device(options), seed=options.seed + clients.index(party.name))
    shapes = network.describe_shapes(client.get_parameters())
    parameters, fitted = serve(party, options, client, table, announce={SHAPES_TAG: shapes})
    return shape, parameters, fitted


def user_client(client_fn: str, context: ClientContext) -> Client:
    """The client that the job's ``client_fn`` (imported from this party's installation) builds for ``context``."""
    client = network.imported(client_fn, "client_fn")(context)
    if not isinstance(client, Client):
        raise ConfigError(f"client_fn {client_fn!r} returned a {type(client).__name__}, not an "
                          "isthmus.horizontal.Client")
    return client
