"""Vertical contribution: the Shapley value of each party's feature set on the guest's validation metric.

The players are the parties holding features: the guest and the hosts. A coalition's value is the
metric, on the job's evaluation rows, of a model trained with the job's own algorithm and options on
just the coalition's columns, so the same rows are held out and values differ only by whose features
went in. The guest holds the labels, so it takes part in every run (with no columns of its own when
its features are not in the coalition). Hosts outside a coalition take no part in its run; the other
roles (an arbiter) serve every run. Each run has its own tag scope (``coalition-<index>/...``),
announced by the guest, so runs never mix.

Coalitions without a host need no other party: the guest runs the same algorithm in this process,
beside stand-ins for the other roles and a host holding no column, with the algorithm's options for
runs that never leave a process (no encryption). The job's own model is the grand coalition's: it is
scored, not retrained.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from isthmus.algorithms.base import Algorithm, GuestPart, HostPart, Party, Roster
from isthmus.data.table import PartyTable
from isthmus.incentive.shapley import Coalition, ShapleyResult, shapley
from isthmus.options import Options
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel
from isthmus.transport.local import LocalHub

ANNOUNCE = "contribution/coalition"

#: The job's model scoring the evaluation rows over the given channel (the hosts serve their parts).
GrandScores = Callable[[Channel], np.ndarray]
ServeTrained = Callable[[Channel], None]


@dataclass(frozen=True)
class Game:
    """Who plays, and with which algorithm: what every party reads from the job."""

    roster: Roster
    algorithm: Algorithm
    options: Options
    workdir: Path  # where a coalition's run may keep files

    @property
    def guest(self) -> str:
        return self.roster.one("guest")

    @property
    def hosts(self) -> list[str]:
        return self.roster.with_role("host")

    @property
    def players(self) -> list[str]:
        return [self.guest, *self.hosts]

    @property
    def helpers(self) -> list[str]:
        """Parties that serve every run without being players (an arbiter)."""
        return sorted(set(self.roster.roles) - set(self.players))

    def roster_of(self, coalition: Coalition) -> Roster:
        """The job's roster without the hosts outside ``coalition``."""
        return Roster({name: role for name, role in self.roster.roles.items()
                       if role != "host" or name in coalition})


@dataclass(frozen=True)
class GuestGame:
    """What the guest needs to value a coalition."""

    game: Game
    table: PartyTable  # the guest's aligned rows, with labels
    rows: np.ndarray  # the evaluation rows: those the training holds out
    metric: Callable[[np.ndarray], float]  # scores of ``rows`` -> the value
    grand_scores: GrandScores


def measure(channel: Channel, guest_game: GuestGame, *, progress: Callable[[Coalition, float], None] | None = None,
            **shapley_options) -> ShapleyResult:
    """The guest's side: value coalitions as the Shapley computation asks for them, then release the others.

    ``progress`` hears of each coalition's value as soon as it is known.
    """
    game = guest_game.game
    others = [*game.hosts, *game.helpers]
    counter = itertools.count(1)

    def value(coalition: Coalition) -> float:
        result = guest_game.metric(scores_of(coalition))
        if progress:
            progress(coalition, result)
        return result

    def scores_of(coalition: Coalition) -> np.ndarray:
        """The evaluation rows' scores of the model trained on ``coalition``'s columns."""
        hosts = [h for h in game.hosts if h in coalition]
        table = guest_game.table if game.guest in coalition else _without_columns(guest_game.table)
        if not hosts:
            return _alone(game, table, guest_game.rows)
        index = next(counter)
        channel.broadcast(others, ANNOUNCE, {"index": index, "members": sorted(coalition)})
        scoped = channel.scoped(_scope(index), [*hosts, *game.helpers])
        if len(coalition) == len(game.players):
            return guest_game.grand_scores(scoped)
        return _scores(game, game.roster_of(coalition), scoped, table, guest_game.rows)

    result = shapley(game.players, value, **shapley_options)
    channel.broadcast(others, ANNOUNCE, {"done": True})
    return result


def serve(channel: Channel, game: Game, *, table: PartyTable | None, serve_trained: ServeTrained | None) -> None:
    """A host's or helper's side: train (and, as a host, serve scores) in every announced coalition it is in."""
    me = channel.party
    for index, members in _announcements(channel, game):
        if game.roster.roles[me] == "host" and me not in members:
            continue
        roster = game.roster_of(members)
        scoped = channel.scoped(_scope(index), sorted(set(roster.roles) - {me}))
        if len(members) == len(game.players):
            if serve_trained is not None:
                serve_trained(scoped)  # the job's own model: scored, not retrained
            continue
        part = game.algorithm.fit(_party(game, me, roster, scoped, table), game.options)
        if isinstance(part, HostPart):
            part.serve(scoped, table.features)


def _scores(game: Game, roster: Roster, channel: Channel, table: PartyTable, rows: np.ndarray,
            options: Options | None = None) -> np.ndarray:
    part = game.algorithm.fit(_party(game, channel.party, roster, channel, table), options or game.options)
    if not isinstance(part, GuestPart):
        raise TypeError(f"{game.algorithm.name} gave the guest a {type(part).__name__}, not a GuestPart")
    scores = part.predict(channel, table.features, rows)
    part.finish(channel)
    return scores


def _party(game: Game, name: str, roster: Roster, channel: Channel, table: PartyTable | None) -> Party:
    return Party(name=name, roster=roster, channel=channel, table=table, workdir=game.workdir)


def _announcements(channel: Channel, game: Game):
    """The guest's announced coalitions, numbered 1, 2, ... (a repeated or skipped number is refused)."""
    players, guest = game.players, game.guest
    check = Inspect(guest, ANNOUNCE)
    for expected in itertools.count(1):
        order = channel.recv(guest, ANNOUNCE)
        if order == {"done": True}:
            return
        order = check.mapping(order, {"index", "members"}, exact=True)
        if order["index"] != expected:
            check.fail(f"expected coalition {expected} or done")
        members = order["members"]
        if not (isinstance(members, list) and all(isinstance(m, str) for m in members)
                and members == sorted(set(members)) and set(members) <= set(players)
                and set(members) & set(game.hosts)):
            check.fail("a coalition is a sorted list of players with at least one host")
        yield expected, frozenset(members)


def _scope(index: int) -> str:
    return f"coalition-{index}"


def _without_columns(table: PartyTable) -> PartyTable:
    return replace(table, features=np.zeros((table.n_rows, 0)), feature_names=[])


def _alone(game: Game, table: PartyTable, rows: np.ndarray) -> np.ndarray:
    """Scores of ``rows`` from the job's algorithm run in this process beside stand-ins and a host with no column."""
    stand_in = "host"
    roster = Roster({game.guest: "guest", stand_in: "host", **{name: game.roster.roles[name] for name in game.helpers}})
    hub = LocalHub(list(roster.roles))
    options = game.algorithm.local_options(game.options)
    empty = _without_columns(table)
    helpers = [_beside(game.algorithm, options, _party(game, name, roster, hub.channel(name),
                                                       replace(empty, party=name) if name == stand_in else None))
               for name in roster.roles if name != game.guest]
    channel = hub.channel(game.guest)
    try:
        return _scores(game, roster, channel, table, rows, options)
    except BaseException:
        channel.abort("the guest's local run failed")  # so the stand-ins stop waiting
        raise
    finally:
        for thread in helpers:
            thread.join()


def _beside(algorithm: Algorithm, options: Options, party: Party) -> threading.Thread:
    """Run a stand-in in a thread; if it fails, it aborts, so the guest's next receive fails too."""

    def target() -> None:
        try:
            part = algorithm.fit(party, options)
            if isinstance(part, HostPart):
                part.serve(party.channel, party.table.features)
        except BaseException as exc:  # noqa: BLE001 - whatever ends the stand-in must end the guest's wait
            party.channel.abort(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=target, daemon=True, name=f"contribution-{party.name}")
    thread.start()
    return thread
