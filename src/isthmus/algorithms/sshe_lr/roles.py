"""The guest's and the hosts' loops of hetero_lr_sshe: the guest picks every batch, the hosts follow.

Several hosts: the guest runs the two-party protocol of protocol.py with each host, under each pair's
own keys; its own weights are shared with the first host (the lead) only, so beside every other host
it has no columns. The sigmoid runs once, between the guest and the lead: every other host passes its
share of z to the lead (FOLD) and gets the lead's share of the residual back (SPREAD), both through
the guest encrypted under the receiver's key, so the guest sees only ciphertexts and each host only
values uniform in the ring (docs/security.md). With K >= 3 label values the same runs K columns wide
(one softmax model; the residual by softmax.py, between the guest and the lead likewise).

All end with the reveal, after which each holds only its own weights. Until then a failure aborts
the peers (it raises too), so no party returns weights from an unfinished protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from isthmus.algorithms.hetero_linear.abort import aborting_peers
from isthmus.algorithms.hetero_linear.batches import plan_batches
from isthmus.algorithms.sshe_lr import shares, softmax, tags
from isthmus.algorithms.sshe_lr.options import SSHEOptions
from isthmus.algorithms.sshe_lr.protocol import WEIGHT_BITS, Side, checked_key, residual
from isthmus.errors import DataError
from isthmus.protocols.commands import STOP, serve_orders
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel


@dataclass
class Trained:
    """The guest's result: its weights (the intercept last; features x K for a softmax model), the label
    values, the epochs, and the rows to evaluate on (those held out, else all)."""

    weights: np.ndarray
    classes: np.ndarray
    history: list[dict]
    evaluation_rows: np.ndarray


def design(X: np.ndarray, fit_intercept: bool) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return np.hstack([X, np.ones((len(X), 1))]) if fit_intercept else X


def fit_guest(options: SSHEOptions, channel: Channel, X: np.ndarray, y: np.ndarray, *, hosts: list[str],
              progress: Callable[[dict], None] = lambda record: None) -> Trained:
    """Train with ``hosts`` (the first leads) on all rows but a held-out ``validation_fraction`` of them: a
    logistic model for two label values, one multinomial (softmax) model of K columns for K >= 3."""
    classes = np.unique(y)
    if len(classes) < 2:
        raise DataError(f"hetero_lr_sshe needs 2 or more label values, the guest has {classes.tolist()}")
    if options.task == "multiclass" and len(classes) < 3:
        raise DataError(f"multiclass task needs 3 or more label values, the guest has {classes.tolist()}")
    columns = 1 if len(classes) == 2 else len(classes)
    if columns == 1:
        target = (np.asarray(y) == classes[1]).astype(np.int64)
    else:
        target = (np.asarray(y)[:, None] == classes[None, :]).astype(np.int64)
    Xd = design(X, options.fit_intercept)
    penalized = np.ones(Xd.shape[1], dtype=bool)
    if options.fit_intercept:
        penalized[-1] = False
    history = []
    lead, others = hosts[0], list(hosts[1:])
    with aborting_peers(channel, "guest"):
        sides = {lead: Side(options, channel, lead, Xd, first=True, penalized=penalized, peer_penalized_last=True,
                            columns=columns)}
        for host in others:
            sides[host] = Side(options, channel, host, Xd[:, :0], first=True, penalized=penalized[:0],
                               peer_penalized_last=True, columns=columns)
        channel.send(lead, tags.PLACE, {"lead": True, "keys": {host: sides[host].peer_key for host in others}})
        for host in others:
            channel.send(host, tags.PLACE, {"lead": False, "keys": {lead: sides[lead].peer_key}})
        rng = np.random.default_rng(options.seed)
        order = rng.permutation(len(Xd))
        held_out = np.sort(order[:int(round(options.validation_fraction * len(order)))])
        train = np.sort(order[len(held_out):])
        edges = plan_batches(len(train), options.batch_size, 1, why="one row")
        for epoch in range(options.epochs):
            shuffled = rng.permutation(train)
            for start, stop in pairwise(edges):
                rows = np.sort(shuffled[start:stop])
                channel.broadcast(hosts, tags.CONTROL, {"op": "batch", "rows": rows})
                z = shares.add(*(side.scores(rows) for side in sides.values()))
                _relay_folds(channel, sides, lead, others, len(rows) * columns)
                e = shared_residual(sides[lead], z, target[rows])
                _relay_spread(channel, sides, lead, others, len(rows) * columns)
                for side in sides.values():
                    side.step(rows, e, options.learning_rate)
            record = {"epoch": epoch + 1, "epochs": options.epochs, "batch_rows": edges[1] - edges[0]}
            history.append(record)
            progress(record)
        channel.broadcast(hosts, tags.CONTROL, {"op": "reveal"})
        revealed = {host: side.reveal() for host, side in sides.items()}  # beside the others the guest has no columns
        return Trained(revealed[lead], classes, history, held_out if len(held_out) else np.arange(len(Xd)))


def shared_residual(side: Side, z: list[int], target: np.ndarray | None = None) -> list[int]:
    """My share of the residual: sigmoid(z) - y by the sine series, or softmax(Z) - Y on shares (softmax.py)."""
    if side.columns == 1:
        return residual(side, z, target)
    return softmax.residual(side, z, side.columns, target, side.fx + WEIGHT_BITS, WEIGHT_BITS)


def _relay_folds(channel: Channel, sides: dict[str, Side], lead: str, others: list[str], rows: int) -> None:
    """Pass every other host's [[share of z]] (under the lead's key) on to the lead, in host order."""
    if not others:
        return
    key = sides[lead].peer_key
    folds = [Inspect(host, tags.FOLD).cipher(channel.recv(host, tags.FOLD), key, size=shares.ring_groups(key.bits, rows))
             for host in others]
    channel.send(lead, tags.FOLD, folds)


def _relay_spread(channel: Channel, sides: dict[str, Side], lead: str, others: list[str], rows: int) -> None:
    """Pass the lead's [[share of e]] under each other host's key on to that host."""
    if not others:
        return
    check = Inspect(lead, tags.SPREAD)
    spread = check.mapping(channel.recv(lead, tags.SPREAD), set(others), exact=True)
    for host in others:
        key = sides[host].peer_key
        channel.send(host, tags.SPREAD, check.cipher(spread[host], key, size=shares.ring_groups(key.bits, rows)))


def fit_host(options: SSHEOptions, channel: Channel, X: np.ndarray, *, guest: str) -> np.ndarray:
    """Follow the guest's batches; returns the host's weights once all parties revealed."""
    with aborting_peers(channel, "host"):
        side = Side(options, channel, guest, design(X, False), first=False,
                    penalized=np.ones(X.shape[1], dtype=bool), peer_penalized_last=not options.fit_intercept)
        lead, keys = _place(options, channel, guest)
        weights = []

        def batch(order: dict, check: Inspect) -> None:
            check.mapping(order, {"op", "rows"}, exact=True)
            rows = check.indices(order["rows"], len(side.X), increasing=True)
            if not len(rows):
                check.fail("an empty batch")
            e = (_lead_residual if lead else _other_residual)(side, keys, side.scores(rows))
            side.step(rows, e, options.learning_rate)

        def reveal(order: dict, check: Inspect) -> object:
            check.mapping(order, {"op"}, exact=True)
            weights.append(side.reveal())
            return STOP

        serve_orders(channel, guest, tags.CONTROL, {"batch": batch, "reveal": reveal})
        return weights[0]


def _lead_residual(side: Side, keys: dict, z: list[int]) -> list[int]:
    """The lead's share of e: fold in the other hosts' shares of z, run the sigmoid with the guest and
    send each other host the share under its own key."""
    guest, count = side.peer, len(z)
    if keys:
        check = Inspect(guest, tags.FOLD)
        for part in check.sequence(side.channel.recv(guest, tags.FOLD), len(keys), what="folded shares"):
            part = check.cipher(part, side.public_key, size=shares.ring_groups(side.public_key.bits, count))
            z = shares.add(z, shares.decrypt_ring(side.private_key, part, count, check))
    e = shared_residual(side, z)
    if keys:
        side.channel.send(guest, tags.SPREAD, {host: shares.encrypt_ring(key, e) for host, key in keys.items()})
    return e


def _other_residual(side: Side, keys: dict, z: list[int]) -> list[int]:
    """Another host's share of e: its share of z goes to the lead, the lead's share of e comes back."""
    guest, count = side.peer, len(z)
    (lead_key,) = keys.values()
    side.channel.send(guest, tags.FOLD, shares.encrypt_ring(lead_key, z))
    check = Inspect(guest, tags.SPREAD)
    part = check.cipher(side.channel.recv(guest, tags.SPREAD), side.public_key,
                        size=shares.ring_groups(side.public_key.bits, count))
    return shares.decrypt_ring(side.private_key, part, count, check)


def _place(options: SSHEOptions, channel: Channel, guest: str) -> tuple[bool, dict]:
    """This host's place from the guest: whether it leads, and the public keys it encrypts under for the
    other hosts (the lead: every other host's; any other host: the lead's alone)."""
    check = Inspect(guest, tags.PLACE)
    place = check.mapping(channel.recv(guest, tags.PLACE), {"lead", "keys"}, exact=True)
    lead, keys = place["lead"], place["keys"]
    if type(lead) is not bool or not isinstance(keys, dict) or (not lead and len(keys) != 1):
        check.fail("a place is a flag and a map of host names to keys (one key for a host that does not lead)")
    others = set(channel.peers) - {guest, channel.party}
    if not set(keys) <= others:
        check.fail(f"keys for parties that are not other hosts of this job: {sorted(map(str, set(keys) - others))[:5]}")
    return lead, {host: checked_key(check, key, options.key_bits) for host, key in keys.items()}
