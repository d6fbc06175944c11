"""The aggregator of homo_lr / homo_linr: agrees the clients' columns, runs the rounds, keeps the final model.

With its own labelled rows (its `data`) it evaluates the global model after every round; with
``keep_round_updates`` (set by the plan when the job measures contributions, which needs secure
aggregation off) it keeps each round's start model and every client's update for GTG-Shapley.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from isthmus.algorithms.base import Party
from isthmus.algorithms.homo_linear.client import FEATURES_TAG, check_labels
from isthmus.algorithms.homo_linear.options import HorizontalOptions, LinearModelOptions
from isthmus.data.table import PartyTable
from isthmus.errors import DataError
from isthmus.horizontal import LinearModel, RoundRecord, TrainingResult, run_aggregator
from isthmus.horizontal.dp import epsilon
from isthmus.horizontal.keyring import keyring_from_folder
from isthmus.horizontal.updates import RoundUpdates
from isthmus.protocols.inspect import MAX_NAME, Inspect
from isthmus.transport.channel import Channel

CHECKPOINTS = "checkpoints"
MAX_FEATURES = 1 << 20


def agreed_features(channel: Channel, clients: list[str]) -> list[str]:
    """The clients' column names, which must agree in order too: the order gives each weight its meaning."""
    agreed, first = None, None
    for client in clients:
        check = Inspect(client, FEATURES_TAG)
        names = check.sequence(channel.recv(client, FEATURES_TAG), what="column names")
        if not 0 < len(names) <= MAX_FEATURES or not all(isinstance(n, str) and 0 < len(n) <= MAX_NAME for n in names):
            check.fail("expected a non-empty list of column names")
        if agreed is None:
            agreed, first = names, client
        elif names != agreed:
            where = next((i for i, (a, b) in enumerate(zip(names, agreed, strict=False)) if a != b),
                         min(len(names), len(agreed)))
            raise DataError(f"client {client!r} has other columns than {first!r}: {len(names)} vs {len(agreed)}, "
                            f"first difference at position {where}")
    return agreed


def evaluation_rows(party: Party, features: list[str], task: str) -> PartyTable | None:
    """The aggregator's own labelled rows in the agreed column order, if it has any."""
    if party.table is None:
        return None
    rows = party.labelled_rows().columns(features)
    check_labels(party.name, rows, task)
    return rows


def train_aggregator(party: Party, options: LinearModelOptions, task: str
                     ) -> tuple[LinearModel, list[str], TrainingResult, list[RoundUpdates]]:
    """Run the rounds; returns the model, the agreed columns, the result and (if kept) each round's updates."""
    features = agreed_features(party.channel, party.roster.with_role("client"))
    model = LinearModel(len(features), task=task, learning_rate=options.learning_rate, batch_size=options.batch_size,
                        epochs=options.local_epochs, l2=options.alpha)
    held_out = evaluation_rows(party, features, task)
    evaluate_fn = (lambda p: model.metrics(p, held_out.features, held_out.label)) if held_out is not None else None
    result, rounds = run_rounds(party, options, model.initial_parameters(), evaluate_fn)
    return model, features, result, rounds


def run_rounds(party: Party, options: HorizontalOptions, initial_parameters: list[np.ndarray],
               evaluate_fn: Callable[[list[np.ndarray]], dict[str, float]] | None
               ) -> tuple[TrainingResult, list[RoundUpdates]]:
    """Any horizontal model's rounds as the job's options say; returns the result and (if kept) each round's updates."""
    dp = options.dp.config() if options.dp else None
    if dp:  # without the accountant this fails now, not after training
        epsilon(dp, 0, contributors=1, dimension=1, fractional_bits=options.secagg.fractional_bits)
    clients = party.roster.with_role("client")
    keyring = keyring_from_folder(party.keys_dir, party.name, clients) if options.secure_aggregation else None
    rounds: list[RoundUpdates] = []
    result = run_aggregator(
        party.channel, clients, options.make_strategy(evaluate_fn), options.rounds,
        secure=options.secure_aggregation, secagg=options.secagg, keyring=keyring, job=party.channel.job, dp=dp,
        initial_parameters=initial_parameters, min_clients=options.min_clients,
        round_timeout=options.round_timeout, checkpoint_dir=party.workdir / CHECKPOINTS, resume=party.resume,
        progress=lambda record: party.progress(**_round_event(options.rounds, record)),
        observe=rounds.append if options.keep_round_updates else None,
        robust=options.robust, trim_fraction=options.trim_fraction, update_clip=options.update_clip,
    )
    return result, rounds


def history(result: TrainingResult) -> list[dict[str, Any]]:
    return [asdict(record) for record in result.history]


def _round_event(rounds: int, record: RoundRecord) -> dict[str, Any]:
    event: dict[str, Any] = {"epoch": record.round, "epochs": rounds, "clients": len(record.clients)}
    if "loss" in record.fit_metrics:
        event["loss"] = record.fit_metrics["loss"]
    if record.left_out:
        event["left_out"] = sorted(record.left_out)
    event.update({f"aggregator_{name}": value for name, value in record.central_metrics.items()})
    return event
