"""A client of homo_lr / homo_linr: trains the global model on its own rows each round, keeps the final one.

It tells the aggregator its column names (so that all clients agree on what each weight means) and
holds the aggregator to its own job file's settings (:class:`~isthmus.horizontal.participant.ClientTerms`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from isthmus.algorithms.base import Party
from isthmus.algorithms.homo_linear.options import HorizontalOptions, LinearModelOptions
from isthmus.data.table import PartyTable
from isthmus.errors import DataError, IsthmusError
from isthmus.horizontal import Client, LinearClient, LinearModel, run_client
from isthmus.horizontal.keyring import keyring_from_folder
from isthmus.horizontal.participant import ClientTerms, reply_tag
from isthmus.horizontal.secure_sum import SecAggTerms
from isthmus.transport.channel import Channel, RelayChannel

FEATURES_TAG = "homo-linear/features"


def train_client(party: Party, options: LinearModelOptions, model: LinearModel) -> tuple[list[np.ndarray], int]:
    """Serve the aggregator until it stops; returns the final parameters and the rounds this client fitted."""
    table = party.labelled_rows()
    check_labels(party.name, table, model.task)
    seed = options.seed + party.roster.with_role("client").index(party.name)
    return serve(party, options, LinearClient(model, table.features, table.label, seed=seed), table)


def serve(party: Party, options: HorizontalOptions, client: Client, table: PartyTable,
          announce: dict[str, Any] | None = None) -> tuple[list[np.ndarray], int]:
    """Any horizontal model's client side: tell the aggregator the columns (and what ``announce`` holds,
    tag -> message), then train each round it asks for; returns the final parameters and rounds fitted."""
    clients, aggregator = party.roster.with_role("client"), party.roster.aggregator
    terms = client_terms(party, options, clients)  # the keys are there before anything is sent
    party.channel.send(aggregator, FEATURES_TAG, table.feature_names)
    for tag, message in (announce or {}).items():
        party.channel.send(aggregator, tag, message)
    channel = party.channel
    if party.name in options.fail_after_round:
        channel = _crash_injector(party, options)
    party.progress(status="serving", aggregator=aggregator, rows=table.n_rows)
    outcome = run_client(channel, aggregator, client, terms=terms,
                         on_fit=lambda server_round: party.progress(epoch=server_round, epochs=options.rounds))
    if outcome.parameters is None:
        raise IsthmusError(f"aggregator {aggregator!r} ended the job without a model: {outcome.reason}")
    return outcome.parameters, outcome.rounds_fitted


def client_terms(party: Party, options: HorizontalOptions, clients: list[str]) -> ClientTerms:
    """What this client holds the aggregator to: the job's settings, and the quorum they give every sum."""
    dp = options.dp.config() if options.dp else None
    if not options.secure_aggregation:
        return ClientTerms(secure=False, dp=dp)  # in the clear the aggregator clips (it sees the updates)
    committee = options.make_strategy(None).sample_size(len(clients))
    terms = SecAggTerms(keyring_from_folder(party.keys_dir, party.name, clients), options.secagg,
                        options.secagg.quorum(committee, options.min_clients), party.channel.job)
    return ClientTerms(secure=True, secagg=terms, dp=dp, update_clip=options.update_clip)


def check_labels(party: str, table: PartyTable, task: str) -> None:
    if task == "binary" and not np.isin(table.label, (0.0, 1.0)).all():
        raise DataError(f"party {party!r}: a binary model needs labels 0 and 1, found "
                        f"{np.unique(table.label)[:5].tolist()}")


def _crash_injector(party: Party, options: HorizontalOptions) -> Channel:
    """Fault injection: die in round ``fail_after_round`` once this client's share of the masking is out.

    Under secure aggregation that is right after sending its key shares (so the aggregator must rebuild
    the masks it shares with others without it); in the clear, right after sending its update.
    """
    first = options.fail_after_round[party.name]
    stage = "share_keys" if options.secure_aggregation else "fit"
    tags = {reply_tag(stage, r) for r in range(first, options.rounds + 1)}
    return _CrashAfterSending(party.channel, tags, lambda: party.progress(
        status="dropped out", reason=f"fault injection: fail_after_round {first}"))


class _CrashAfterSending(RelayChannel):
    """Fault injection: the process ends right after sending under one of ``tags``, without telling anyone.

    It exits with status 0 because the crash is what the job asked for (so `isthmus launch` does not
    report it as a failure); the party's events say it dropped out on purpose.
    """

    def __init__(self, inner: Channel, tags: set[str], announce: Callable[[], None]):
        super().__init__(inner)
        self.tags = tags
        self.announce = announce

    def send(self, to: str, tag: str, obj: Any) -> None:
        self.inner.send(to, tag, obj)
        if tag in self.tags:
            self.announce()
            os._exit(0)
