"""Request rounds of horizontal SecureBoost: plain requests, and secure sums of the clients' vectors.

The aggregator reaches the clients through a horizontal :class:`~isthmus.horizontal.fleet.Fleet`
(one request per client, replies until a deadline) and sums their vectors with the dropout-tolerant
secure aggregation of :mod:`isthmus.horizontal.secure_sum`: it learns the sum over the clients whose
masked vector arrived, nothing about any one of them, and the clients enforce the same quorum,
signatures and consistency check as in horizontal FL. A client that fails or goes silent in the first
sum leaves the job for good (its rows never count); the aggregator goes on while the quorum of a sum
(``min_clients``, and the threshold of the clients the job started with) remains.

After the first sum every sum holds exactly its clients: a client's answers are deterministic and tie
to what it answered before (a parent node's histogram is its children's, a cell's count its parts'),
so one value summed with a client and then without it (a level rebuilt after a dropout, counts taken
again) shows the aggregator that client's histograms by difference. A client signs no other survivor
list, and the aggregator ends the job naming a client that leaves later.

Vectors are integers modulo 2**64: counts and fixed-point histogram sums are summed exactly.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isthmus.crypto.secagg import SecAggError
from isthmus.horizontal.fleet import Fleet
from isthmus.horizontal.participant import reply_tag
from isthmus.horizontal.secure_sum import SESSION_BYTES, SecAggClient, SecAggServer, SecAggTerms
from isthmus.protocols.inspect import Inspect

log = logging.getLogger("isthmus.tree.homo")

#: The stages of one secure sum after the request that makes each client compute its vector.
SECURE_STAGES = ("share_keys", "masked_input", "consistency", "unmask")


@dataclass
class AggregatorRounds:
    """The aggregator's side: numbered rounds over the clients still taking part."""

    fleet: Fleet
    members: list[str]
    terms: SecAggTerms  # the clients' pinned keys, and the settings and quorum of every secure sum
    timeout: float = 300.0
    left: dict[str, str] = field(default_factory=dict)  # client -> why it left the job
    _round: int = 0
    _summed: bool = False  # a sum has been recovered: its clients are the job's from then on

    def __post_init__(self) -> None:
        self._require(len(self.members), "take part")

    def ask(self, op: str, message: dict) -> dict[str, Any]:
        """The same plain request to every member; returns the replies (members that fail leave)."""
        self._round += 1
        replies, failures = self.fleet.request(op, self._round, {c: message for c in self.members}, self.timeout)
        self._leave(failures)
        return replies

    def secure_sum(self, op: str, message: dict, length: int) -> np.ndarray:
        """Sum (uint64, modulo 2**64) of the ``length``-long vectors the members compute for ``op``."""
        self._round += 1
        session = secrets.token_bytes(SESSION_BYTES)
        request = {**message, "secure": {"session": session, "length": length, "summands": len(self.members)}}
        adverts, failures = self.fleet.request(op, self._round, {c: request for c in self.members}, self.timeout)
        server = SecAggServer(self.terms, session, reply_tag(op, self._round), length)
        try:
            requests = server.start(adverts, asked=self.members)
            for stage, advance in (("share_keys", server.route_shares), ("masked_input", server.collect_masked),
                                   ("consistency", server.collect_signatures)):
                replies, failed = self.fleet.request(stage, self._round, requests, self.timeout)
                failures.update(failed)
                requests = advance(replies)
                if stage == "masked_input" and self._summed:
                    self._all_members_in(server.survivors, {**failures, **server.rejected})
            replies, _ = self.fleet.request("unmask", self._round, requests, self.timeout)
            total = server.finish(replies)
        except SecAggError as exc:
            raise SecAggError(f"{op} (round {self._round}): {exc}") from None
        failures.update({c: f"rejected: {why}" for c, why in server.rejected.items()})
        self._leave({c: why for c, why in failures.items() if c not in server.survivors}, keep=server.survivors)
        self._summed = True
        return total

    def notify(self, message: dict, clients: list[str] | None = None) -> None:
        self.fleet.notify(self.members if clients is None else clients, {"round": self._round, **message})

    def _leave(self, failures: dict[str, str], keep: list[str] | None = None) -> None:
        gone = {c: why for c, why in failures.items() if c in self.members}
        if keep is not None:
            gone.update({c: "not among the secure sum's survivors" for c in self.members if c not in keep and c not in gone})
        for client, why in gone.items():
            log.warning("client %s leaves the job: %s", client, why)
            self.left[client] = why
        self.members = [c for c in self.members if c not in gone]
        self._require(len(self.members), "remain")

    def _all_members_in(self, survivors: list[str], failures: dict[str, str]) -> None:
        """A later sum without a member of the first would tell its histograms by difference (see above); its
        clients would not sign the list anyway."""
        missing = {c: failures.get(c, "no masked input") for c in self.members if c not in survivors}
        if missing:
            self.left.update(missing)
            raise SecAggError(f"{', '.join(missing)} left the job ({'; '.join(missing.values())}); every sum after "
                              "the first holds the same clients, or one summed without a client would show its "
                              "histograms")

    def _require(self, have: int, what: str) -> None:
        if have < self.terms.quorum.minimum:
            raise SecAggError(f"only {have} clients {what}, {self.terms.quorum.minimum} needed in every secure sum: "
                              f"left so far: {self.left or 'none'}")


class ClientSums:
    """A client's side of the secure sums: masks one vector per round, forgets it once unmasked."""

    def __init__(self, name: str, aggregator: str, terms: SecAggTerms):
        self.name, self.aggregator, self.terms = name, aggregator, terms
        self._pending: dict[int, tuple[SecAggClient, np.ndarray]] = {}
        self._clients: list[str] | None = None  # the survivors of the first sum this client signed

    def contribute(self, op: str, request: dict, server_round: int, vector: np.ndarray) -> dict:
        """Take ``vector`` (uint64, this client's answer to ``op``) into round ``server_round``; the reply
        advertises this round's keys."""
        check = Inspect(self.aggregator, f"secure sum {server_round}")
        secure = check.mapping(request.get("secure"), {"session", "length"})
        session = check.raw(secure["session"], length=SESSION_BYTES)
        if check.integer(secure["length"], 0, 1 << 32) != vector.size:
            check.fail(f"asked for a vector of {secure['length']} values; this client's has {vector.size}")
        client = SecAggClient(self.name, self.terms, session, reply_tag(op, server_round), self.aggregator)
        self._pending = {server_round: (client, vector)}
        return client.advertise()

    def handle(self, op: str, request: dict, server_round: int) -> dict:
        """One of :data:`SECURE_STAGES` of the round this client contributed to."""
        if server_round not in self._pending:
            Inspect(self.aggregator, op).fail(f"no secure sum in progress for round {server_round}")
        client, vector = self._pending[server_round]
        if op == "share_keys":
            return client.share_keys(request)
        if op == "masked_input":
            return client.masked_input(request, vector)
        if op == "consistency":
            survivors = self._same_clients(request)
            signed = client.confirm(request)
            self._clients = survivors
            return signed
        del self._pending[server_round]
        return client.unmask(request)

    def _same_clients(self, request: dict) -> list[str]:
        """The survivor list to sign: the first one signed, once there is one (see the module's docstring)."""
        check = Inspect(self.aggregator, "consistency")
        survivors = sorted(check.names(check.mapping(request, {"survivors"})["survivors"],
                                       set(self.terms.keyring.pinned)))
        if self._clients is not None and survivors != self._clients:
            check.fail(f"secure sum aborted: aggregator {self.aggregator!r} sums over {survivors[:8]}, not over the "
                       f"clients of every earlier sum {self._clients[:8]}: by difference it would learn a client's "
                       "histograms")
        return survivors
