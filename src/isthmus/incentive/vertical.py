"""Vertical contribution: the Shapley value of each party's feature set on the guest's validation metric.

The players are the parties holding features: the guest and the hosts. A coalition's value is the
metric, on the job's evaluation rows, of a model trained with the job's own protocol (hetero linear
or logistic regression with the arbiter) on just the coalition's columns, with the job's
hyper-parameters and seed, so the same rows are held out and values differ only by whose features
went in. The guest holds the labels, so it takes part in every run, with its intercept only when
its features are not in the coalition. Parties outside a coalition take no part in its run; each run
has its own tag scope (``contribution/<index>/...``), announced by the guest, so runs never mix.

Coalitions without a host need no other party: the guest runs the same protocol in-process, in
plaintext, beside a stand-in host holding no column, so that these values come from the very same
algorithm as the others. The job's own model is the grand coalition's: it is scored, not retrained.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from isthmus.errors import ProtocolError
from isthmus.incentive.scoped import ScopedChannel
from isthmus.incentive.shapley import Coalition, ShapleyResult, shapley
from isthmus.algorithms.hetero_linear import HeteroLinearArbiter, HeteroLinearGuest, HeteroLinearHost, LinearConfig
from isthmus.transport.channel import Channel
from isthmus.transport.local import LocalHub

ANNOUNCE = "contribution/coalition"

#: The job's model scoring the evaluation rows over the given channel (the hosts serve their parts).
GrandScores = Callable[[Channel], np.ndarray]
ServeTrained = Callable[[Channel], None]


@dataclass(frozen=True)
class Federation:
    """Who plays which part, as every party reads it from the job."""

    guest: str
    hosts: list[str]
    arbiter: str

    @property
    def players(self) -> list[str]:
        return [self.guest, *self.hosts]


@dataclass(frozen=True)
class GuestGame:
    """What the guest needs to value a coalition."""

    federation: Federation
    config: LinearConfig  # the job's training options
    features: np.ndarray  # the guest's aligned, scaled columns
    labels: np.ndarray
    rows: np.ndarray  # the evaluation rows: those the training holds out
    metric: Callable[[np.ndarray], float]  # scores of ``rows`` -> the value
    grand_scores: GrandScores


def measure(channel: Channel, game: GuestGame, *, progress: Callable[[Coalition, float], None] | None = None,
            **shapley_options) -> ShapleyResult:
    """The guest's side: value coalitions as the Shapley computation asks for them, then release the others.

    ``progress`` hears of each coalition's value as soon as it is known.
    """
    federation = game.federation
    counter = itertools.count(1)

    def value(coalition: Coalition) -> float:
        result = game.metric(scores_of(coalition))
        if progress:
            progress(coalition, result)
        return result

    def scores_of(coalition: Coalition) -> np.ndarray:
        """The evaluation rows' scores of the model trained on ``coalition``'s columns."""
        hosts = [h for h in federation.hosts if h in coalition]
        features = game.features if federation.guest in coalition else game.features[:, :0]
        if not hosts:
            return _alone(game.config, features, game.labels, game.rows)
        index = next(counter)
        channel.broadcast([*federation.hosts, federation.arbiter], ANNOUNCE,
                          {"index": index, "members": sorted(coalition)})
        scoped = ScopedChannel(channel, _scope(index), [federation.arbiter, *hosts])
        if len(coalition) == len(federation.players):
            return game.grand_scores(scoped)
        part = HeteroLinearGuest(game.config).fit(scoped, features, game.labels, hosts=hosts, arbiter=federation.arbiter)
        scores = part.predict_proba(scoped, features, hosts=hosts, rows=game.rows)
        part.finish(scoped, hosts=hosts)
        return scores

    result = shapley(federation.players, value, **shapley_options)
    channel.broadcast([*federation.hosts, federation.arbiter], ANNOUNCE, {"done": True})
    return result


def serve_host(channel: Channel, federation: Federation, *, config: LinearConfig, features: np.ndarray,
               serve_trained: ServeTrained) -> None:
    """A host's side: train and serve scores in every announced coalition it belongs to."""
    me = channel.party
    for index, members in _announcements(channel, federation):
        if me not in members:
            continue
        scoped = ScopedChannel(channel, _scope(index), [federation.guest, federation.arbiter])
        if len(members) == len(federation.players):
            serve_trained(scoped)
            continue
        part = HeteroLinearHost(config).fit(scoped, features, guest=federation.guest, arbiter=federation.arbiter)
        part.serve_scores(scoped, features, guest=federation.guest)


def serve_arbiter(channel: Channel, federation: Federation, *, config: LinearConfig) -> None:
    """The arbiter's side: a fresh key and decryptions for every coalition that is trained federatedly."""
    for index, members in _announcements(channel, federation):
        if len(members) == len(federation.players):
            continue  # the job's own model: scored, not trained
        hosts = [h for h in federation.hosts if h in members]
        scoped = ScopedChannel(channel, _scope(index), [federation.guest, *hosts])
        HeteroLinearArbiter(config).fit(scoped, guest=federation.guest, hosts=hosts)


def _announcements(channel: Channel, federation: Federation):
    """The guest's announced coalitions, numbered 1, 2, ... (a repeated or skipped number is refused)."""
    players, guest = federation.players, federation.guest
    for expected in itertools.count(1):
        order = channel.recv(guest, ANNOUNCE)
        if order == {"done": True}:
            return
        if not isinstance(order, dict) or set(order) != {"index", "members"} or order["index"] != expected:
            raise ProtocolError(f"expected coalition {expected} or done", peer=guest, tag=ANNOUNCE)
        members = order["members"]
        if not (isinstance(members, list) and all(isinstance(m, str) for m in members)
                and members == sorted(set(members)) and set(members) <= set(players)
                and set(members) & set(federation.hosts)):
            raise ProtocolError("a coalition is a sorted list of players with at least one host",
                                peer=guest, tag=ANNOUNCE)
        yield expected, frozenset(members)


def _scope(index: int) -> str:
    return f"contribution/{index}"


def _alone(config: LinearConfig, features: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Scores of ``rows`` from the job's protocol run in-process, in plaintext, beside a host with no column."""
    hub = LocalHub(["guest", "host", "arbiter"])
    plain = replace(config, encrypt=False)  # nothing leaves this process, so nothing needs encrypting
    empty = np.zeros((len(features), 0))

    def host() -> None:
        part = HeteroLinearHost(plain).fit(hub.channel("host"), empty, guest="guest", arbiter="arbiter")
        part.serve_scores(hub.channel("host"), empty, guest="guest")

    def arbiter() -> None:
        HeteroLinearArbiter(plain).fit(hub.channel("arbiter"), guest="guest", hosts=["host"])

    helpers = [_beside(fn, hub.channel(name)) for name, fn in (("host", host), ("arbiter", arbiter))]
    channel = hub.channel("guest")
    try:
        part = HeteroLinearGuest(plain).fit(channel, features, labels, hosts=["host"], arbiter="arbiter")
        scores = part.predict_proba(channel, features, hosts=["host"], rows=rows)
        part.finish(channel, hosts=["host"])
    except BaseException:
        channel.abort("the guest's local run failed")  # so the stand-ins stop waiting
        raise
    finally:
        for thread in helpers:
            thread.join()
    return scores


def _beside(fn: Callable[[], None], channel: Channel) -> threading.Thread:
    """Run a stand-in in a thread; if it fails, it aborts, so the guest's next receive fails too."""

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - whatever ends the stand-in must end the guest's wait
            channel.abort(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=target, daemon=True, name=f"contribution-{channel.party}")
    thread.start()
    return thread

