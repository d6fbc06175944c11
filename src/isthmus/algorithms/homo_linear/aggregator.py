"""The aggregator of homo_lr / homo_linr: agrees the clients' columns, runs the rounds, keeps the final model.

With its own labelled rows (its `data`) it evaluates the global model after every round; with
``keep_round_updates`` (set by the plan when the job measures contributions, which needs secure
aggregation off) it keeps each round's start model and every client's update for GTG-Shapley.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from isthmus.algorithms.base import Party
from isthmus.algorithms.homo_linear.client import FEATURES_TAG, check_labels
from isthmus.algorithms.homo_linear.options import HorizontalOptions, LinearModelOptions
from isthmus.data.table import PartyTable
from isthmus.errors import DataError, PeerTimeoutError, ProtocolError
from isthmus.horizontal import LinearModel, RoundRecord, TrainingResult, run_aggregator
from isthmus.horizontal.columns import check_same_columns
from isthmus.horizontal.dp import epsilon
from isthmus.horizontal.fleet import ChannelFleet
from isthmus.horizontal.keyring import keyring_from_folder
from isthmus.horizontal.updates import RoundUpdates
from isthmus.protocols.inspect import MAX_NAME, Inspect
from isthmus.transport.channel import Channel

CHECKPOINTS = "checkpoints"
#: After this long without a client's columns, the aggregator says whom it waits for, and why it may be.
SLOW_COLUMNS_S = 10.0
RESUMED_WITHOUT_CLIENTS = ("a client still running from before this aggregator stopped does not send them again: "
                           "stop it and start it again (isthmus run ... --force)")
MAX_FEATURES = 1 << 20


def agreed_features(party: Party, options: HorizontalOptions) -> tuple[list[str], list[str]]:
    """The clients' column names, which must agree in order too (the order gives each weight its meaning), and
    the clients that sent theirs within the job's round_timeout, in roster order. A client that never started
    is left out of the job, as one that drops out of a round is, while min_clients remain: waiting for it
    with the job's message timeout held every other party for ten minutes, then failed."""
    clients, timeout = party.roster.with_role("client"), options.round_timeout
    fewest = fewest_clients(options, len(clients))
    sent: dict[str, list[str]] = {}
    refused: dict[str, str] = {}  # client -> why its message was refused (it runs another job, say)
    waiting, started = set(clients), time.monotonic()
    _collect_columns(party.channel, waiting, sent, refused, min(SLOW_COLUMNS_S, timeout), fewest)
    if waiting and len(sent) + len(waiting) >= fewest:
        party.progress(waiting_for=sorted(waiting), why=_columns_not_sent(party, options))
        _collect_columns(party.channel, waiting, sent, refused, timeout - (time.monotonic() - started), fewest)
    if len(sent) < fewest:
        needs = (f"every sum needs {fewest} (min_clients {options.min_clients}"
                 + (f"; under secure aggregation each client's update goes only into sums of {fewest} of the job's "
                    f"{len(clients)}: dropout_tolerance {options.secagg.dropout_tolerance}"
                    if options.secure_aggregation else "") + ")")
        if len(clients) - len(refused) < fewest:  # no reason to wait any longer
            heard, missing = (f"with {', '.join(sorted(refused))} left out, {len(clients) - len(refused)} of the "
                              f"{len(clients)} clients remain"), ""
        else:
            heard = f"{len(sent)} of the {len(clients)} clients sent their columns within {timeout:g} s (round_timeout)"
            missing = f"; not heard from: {', '.join(sorted(waiting))}" if waiting else ""
        raise DataError(f"{heard}, and {needs}{missing}"
                        + "".join(f"; {client} left out: {why}" for client, why in sorted(refused.items()))
                        + (f"; {RESUMED_WITHOUT_CLIENTS}" if party.resume else ""))
    present = [client for client in clients if client in sent]
    first = present[0]
    for client in present[1:]:
        check_same_columns(first, sent[first], client, sent[client])
    if waiting:
        party.progress(left_out=sorted(waiting), why=_no_columns_in_time(options))
    for client, why in sorted(refused.items()):
        party.progress(left_out=[client], why=why)
    return sent[first], present


def _collect_columns(channel: Channel, waiting: set[str], sent: dict[str, list[str]], refused: dict[str, str],
                     seconds: float, fewest: int) -> None:
    """The column names of the clients in ``waiting`` that send them within ``seconds``; a client whose message
    was refused (one running another job) is left out at once, and once ``fewest`` can no longer be reached,
    nothing more is waited for."""
    deadline = time.monotonic() + seconds
    while waiting and len(sent) + len(waiting) >= fewest and (left := deadline - time.monotonic()) > 0:
        try:
            client, names = channel.recv_any(sorted(waiting), FEATURES_TAG, timeout=left)
        except PeerTimeoutError:
            return
        except ProtocolError as exc:
            if exc.peer not in waiting:
                raise
            waiting.discard(exc.peer)
            refused[exc.peer] = str(exc)
            continue
        waiting.discard(client)
        sent[client] = _column_names(client, names)


def _columns_not_sent(party: Party, options: HorizontalOptions) -> str:
    """Why a client may not have sent its columns yet: a resumed aggregator's still-running clients never will
    (each sent them once, to the aggregator that stopped), and nothing else told its operator so."""
    wait = f"waiting up to round_timeout ({options.round_timeout:g} s) for their columns"
    return wait + (f"; {RESUMED_WITHOUT_CLIENTS}" if party.resume else " (a client sends them once it has read its "
                                                                       "table)")


def fewest_clients(options: HorizontalOptions, clients: int) -> int:
    """The fewest clients a round can go on with: min_clients, and under secure aggregation the quorum each
    client insists on, which it works out from the job's number of clients, not from the aggregator's word."""
    if not options.secure_aggregation:
        return options.min_clients
    committee = options.make_strategy(None).sample_size(clients)
    return options.secagg.quorum(committee, options.min_clients).minimum


def _no_columns_in_time(options: HorizontalOptions) -> str:
    return f"no columns within {options.round_timeout:g} s (round_timeout)"


def _column_names(client: str, names: object) -> list[str]:
    check = Inspect(client, FEATURES_TAG)
    names = check.sequence(names, what="column names")
    if not 0 < len(names) <= MAX_FEATURES or not all(isinstance(n, str) and 0 < len(n) <= MAX_NAME for n in names):
        check.fail("expected a non-empty list of column names")
    return list(names)


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
    features, clients = agreed_features(party, options)
    model = LinearModel(len(features), task=task, learning_rate=options.learning_rate, batch_size=options.batch_size,
                        epochs=options.local_epochs, l2=options.alpha)
    held_out = evaluation_rows(party, features, task)
    evaluate_fn = (lambda p: model.metrics(p, held_out.features, held_out.label)) if held_out is not None else None
    result, rounds = run_rounds(party, options, clients, model.initial_parameters(), evaluate_fn)
    return model, features, result, rounds


def run_rounds(party: Party, options: HorizontalOptions, clients: list[str], initial_parameters: list[np.ndarray],
               evaluate_fn: Callable[[list[np.ndarray]], dict[str, float]] | None
               ) -> tuple[TrainingResult, list[RoundUpdates]]:
    """Any horizontal model's rounds with ``clients`` as the job's options say; returns the result and (if kept)
    each round's updates."""
    dp = options.dp.config() if options.dp else None
    if dp:  # without the accountant this fails now, not after training
        epsilon(dp, 0, contributors=1, dimension=1, fractional_bits=options.secagg.fractional_bits)
    keyring = keyring_from_folder(party.keys_dir, party.name, clients) if options.secure_aggregation else None
    rounds: list[RoundUpdates] = []
    latecomers = Latecomers(party, options, clients)

    def after_round(record: RoundRecord) -> None:
        party.progress(**_round_event(options.rounds, record))
        latecomers.tell()

    result = run_aggregator(
        party.channel, clients, options.make_strategy(evaluate_fn), options.rounds,
        secure=options.secure_aggregation, secagg=options.secagg, keyring=keyring, job=party.channel.job, dp=dp,
        initial_parameters=initial_parameters, min_clients=options.min_clients,
        round_timeout=options.round_timeout, checkpoint_dir=party.workdir / CHECKPOINTS, resume=party.resume,
        progress=after_round,
        observe=rounds.append if options.keep_round_updates else None,
        robust=options.robust, trim_fraction=options.trim_fraction, update_clip=options.update_clip,
    )
    latecomers.tell()
    return result, rounds


class Latecomers:
    """Clients left out for sending no columns within round_timeout, told so once their columns come after
    all: they would wait for rounds that never come, for their message timeout (ten minutes by default).
    One that has not started is not told: reaching it would cost the job a connect timeout."""

    def __init__(self, party: Party, options: HorizontalOptions, present: list[str]):
        self.party = party
        self.waiting = [client for client in party.roster.with_role("client") if client not in present]
        self.reason = f"left out: {_no_columns_in_time(options)}"

    def tell(self) -> None:
        for client in list(self.waiting):
            try:
                self.party.channel.recv(client, FEATURES_TAG, timeout=0)
            except PeerTimeoutError:
                continue
            except ProtocolError:
                pass  # not column names, but it is up all the same
            self.waiting.remove(client)
            ChannelFleet(self.party.channel).notify([client], {"op": "stop", "round": 0, "parameters": None,
                                                               "reason": self.reason})
            self.party.progress(told_left_out=client)


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
