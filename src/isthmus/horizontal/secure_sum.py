"""Dropout-tolerant secure summation of client vectors (Bonawitz et al. 2017), transport-free.

One :class:`SecAggClient` per client and one :class:`SecAggServer` per round; the roles in
:mod:`~isthmus.horizontal.aggregator` and :mod:`~isthmus.horizontal.participant` (or the simulation)
carry their messages. Four stages, each one request from the aggregator and one reply per client:

1. advertise: two fresh X25519 public keys per client, ``c`` (to seal shares) and ``s`` (for masks).
2. share_keys: given its neighbours' keys, a client Shamir-shares its ``s`` private key and a fresh
   self-mask seed ``b`` among its neighbours and itself, sealed (AES-GCM) for each recipient.
3. masked_input: the client sends ``y = x + PRG(b) + sum_j +-PRG(s_ij)`` in Z_2^64, where ``s_ij`` is
   agreed with neighbour ``j`` and the sign makes the pair cancel.
4. unmask: given who survived and who dropped, each client reveals its shares of the survivors' ``b``
   and of the dropped clients' ``s`` key, never both for one client. The aggregator removes the self
   masks of survivors and the dangling pair masks of the dropped: the sum of the survivors' ``x`` remains.

Threat model: an honest-but-curious aggregator and clients that follow the protocol. The aggregator
relays public keys unsigned, so an actively malicious aggregator could substitute keys; the mutual-TLS
transport authenticates the aggregator to each client but not the relayed keys (signed adverts would be
the next step). Neighbourhoods are the complete graph by default; ``neighbours=k`` switches to a random
k-regular (Harary) graph as in SecAgg+ (Bell et al. 2020), which makes the cost per client O(k) instead
of O(n) for many-client jobs, at the price of a probabilistic dropout guarantee per neighbourhood.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from isthmus.crypto.secagg import (
    KEY_BYTES,
    MaskExpander,
    SecAggError,
    agree,
    field_from_bytes,
    field_to_bytes,
    generate_keypair,
    private_key_from_int,
    private_key_to_int,
    public_bytes,
    seal,
    shamir_combine,
    shamir_split,
    unseal,
)
from isthmus.errors import ConfigError, ProtocolError
from isthmus.horizontal.wire import Inspect

_SEALED_SHARE_BYTES = 12 + 2 * 33 + 16  # nonce + two field elements + GCM tag
SESSION_BYTES = 16


@dataclass(frozen=True)
class SecAggConfig:
    """How much dropout a round survives, how reals are encoded, and who masks with whom.

    ``dropout_tolerance`` is the fraction of a client's share holders that may vanish after sending
    masked input while the sum is still recovered; the threshold never falls below a majority.
    """

    dropout_tolerance: float = 0.3
    fractional_bits: int = 24
    neighbours: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout_tolerance < 1.0:
            raise ConfigError(f"dropout_tolerance must be in [0, 1), got {self.dropout_tolerance}")
        if not 8 <= self.fractional_bits <= 40:
            raise ConfigError(f"fractional_bits must be in [8, 40], got {self.fractional_bits}")
        if self.neighbours is not None and self.neighbours < 2:
            raise ConfigError(f"neighbours must be at least 2, got {self.neighbours}")

    def threshold(self, holders: int) -> int:
        """Shares needed to recover a secret held by ``holders`` parties."""
        may_drop = int(self.dropout_tolerance * holders + 1e-9)
        return max(holders // 2 + 1, holders - may_drop)


def _context(*parts: bytes | str) -> bytes:
    """Length-prefixed concatenation, so that no two different part lists give the same bytes."""
    out = bytearray()
    for part in parts:
        raw = part.encode() if isinstance(part, str) else part
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


def _pair_context(session: bytes, a: str, b: str) -> bytes:
    return _context(b"pair", session, *sorted((a, b)))


def _self_context(session: bytes, name: str) -> bytes:
    return _context(b"self", session, name)


def _commitment(session: bytes, name: str, seed: bytes) -> bytes:
    return hashlib.sha256(_context(b"commit", session, name, seed)).digest()


def _add_pair(masked: np.ndarray, pair: np.ndarray, me: str, other: str) -> None:
    """Add the mask ``me`` shares with ``other`` to ``me``'s vector: the smaller name adds, the other subtracts."""
    if me < other:
        masked += pair
    else:
        masked -= pair


def neighbourhoods(names: list[str], neighbours: int | None) -> dict[str, list[str]]:
    """Who masks with whom: everyone (complete graph), or a random k-regular Harary graph on a ring."""
    if neighbours is None or neighbours >= len(names) - 1:
        return {name: [other for other in names if other != name] for name in names}
    ring = list(names)
    random.SystemRandom().shuffle(ring)
    reach = (neighbours + 1) // 2
    n = len(ring)
    return {
        ring[i]: sorted({ring[(i + step) % n] for step in range(-reach, reach + 1) if step} - {ring[i]})
        for i in range(n)
    }


@dataclass
class _Peer:
    x: int
    c_pk: bytes
    s_pk: bytes


class SecAggClient:
    """One client's secrets and view for one round."""

    def __init__(self, name: str, session: bytes, aggregator: str = "aggregator"):
        self.name = name
        self.session = session
        self.aggregator = aggregator
        self._c_key, self._c_pk = generate_keypair()
        self._s_key, self._s_pk = generate_keypair()
        self._seed = b""
        self._x = 0
        self._peers: dict[str, _Peer] = {}
        self._share_keys: dict[str, bytes] = {}  # neighbour -> AES key sealing the shares between us
        self._held: dict[str, tuple[int, int]] = {}  # sender -> (share of its s key, share of its seed)
        self._active: list[str] = []

    def advertise(self) -> dict[str, Any]:
        return {"c_pk": self._c_pk, "s_pk": self._s_pk}

    def share_keys(self, request: dict) -> dict[str, Any]:
        check = Inspect(self.aggregator, "share_keys")
        check.mapping(request, {"x", "threshold", "neighbours"})
        roster = check.mapping(request["neighbours"], set())
        self._x = check.integer(request["x"], 1, 1 << 31)
        holders = len(roster) + 1
        threshold = check.integer(request["threshold"], holders // 2 + 1, holders)  # never fewer than a majority
        for name, entry in roster.items():
            if name == self.name:
                check.fail("a client cannot be its own neighbour")
            check.mapping(entry, {"x", "c_pk", "s_pk"})
            self._peers[name] = _Peer(
                check.integer(entry["x"], 1, 1 << 31),
                check.raw(entry["c_pk"], length=KEY_BYTES),
                check.raw(entry["s_pk"], length=KEY_BYTES),
            )
        xs = [self._x] + [peer.x for peer in self._peers.values()]
        if len(set(xs)) != len(xs):
            check.fail("share points are not distinct")
        self._seed = secrets.token_bytes(KEY_BYTES)
        s_shares = shamir_split(private_key_to_int(self._s_key), xs, threshold)
        b_shares = shamir_split(int.from_bytes(self._seed, "big"), xs, threshold)
        self._held[self.name] = (s_shares[0], b_shares[0])
        sealed = {}
        for (name, peer), s_share, b_share in zip(self._peers.items(), s_shares[1:], b_shares[1:]):
            key = self._share_keys[name] = self._share_key(name, peer.c_pk, check)
            sealed[name] = seal(
                key, field_to_bytes(s_share) + field_to_bytes(b_share), _context(self.session, self.name, name)
            )
        return {"shares": sealed, "commitment": _commitment(self.session, self.name, self._seed)}

    def masked_input(self, request: dict, encoded: np.ndarray) -> dict[str, Any]:
        """``encoded`` (already in Z_2^64) plus this client's masks."""
        self.receive_shares(request)
        expander = MaskExpander(len(encoded))
        masked = self.self_masked(encoded, expander)
        for other in self.active:
            pair = expander.mask(self.pair_seed(other), _pair_context(self.session, self.name, other))
            _add_pair(masked, pair, self.name, other)
        return {"masked": masked}

    def receive_shares(self, request: dict) -> None:
        """Open the shares that neighbours sealed for us; those who sent them are the ones we mask with."""
        check = Inspect(self.aggregator, "masked_input")
        check.mapping(request, {"shares"})
        sealed = check.mapping(request["shares"], set())
        self._active = check.names(list(sealed), set(self._peers))
        for sender in self._active:
            key = self._share_keys[sender]
            try:
                plain = unseal(
                    key,
                    check.raw(sealed[sender], length=_SEALED_SHARE_BYTES),
                    _context(self.session, sender, self.name),
                )
                self._held[sender] = (field_from_bytes(plain[:33]), field_from_bytes(plain[33:]))
            except ValueError as exc:
                check.fail(f"share from {sender!r} is invalid: {exc}")

    @property
    def active(self) -> list[str]:
        """Neighbours whose shares arrived: this client's pair masks are with exactly these."""
        return list(self._active)

    def self_masked(self, encoded: np.ndarray, expander: MaskExpander) -> np.ndarray:
        return encoded + expander.mask(self._seed, _self_context(self.session, self.name))

    def pair_seed(self, other: str) -> bytes:
        try:
            return agree(self._s_key, self._peers[other].s_pk, _pair_context(self.session, self.name, other))
        except ValueError as exc:
            Inspect(self.aggregator, "masked_input").fail(f"public key of {other!r} is unusable: {exc}")

    def unmask(self, request: dict) -> dict[str, Any]:
        """Reveal shares of the survivors' seeds and the dropped clients' keys, never both for one client."""
        check = Inspect(self.aggregator, "unmask")
        check.mapping(request, {"survivors", "dropped"})
        known = set(self._active) | {self.name}
        survivors = check.names(request["survivors"], known)
        dropped = check.names(request["dropped"], set(self._active))
        if set(survivors) & set(dropped):
            check.fail("a client cannot be both a survivor and dropped")
        return {
            "seed_shares": {name: field_to_bytes(self._held[name][1]) for name in survivors},
            "key_shares": {name: field_to_bytes(self._held[name][0]) for name in dropped},
        }

    def _share_key(self, other: str, c_pk: bytes, check: Inspect) -> bytes:
        try:
            return agree(self._c_key, c_pk, _context(b"share", self.session, *sorted((self.name, other))))[:16]
        except ValueError as exc:
            check.fail(f"public key of {other!r} is unusable: {exc}")


@dataclass
class SecAggServer:
    """The aggregator's side of one round: it sees keys, sealed shares and masked vectors, and the sum."""

    session: bytes
    config: SecAggConfig
    length: int
    min_clients: int = 2
    rejected: dict[str, str] = field(default_factory=dict)
    _peers: dict[str, _Peer] = field(default_factory=dict)
    _graph: dict[str, list[str]] = field(default_factory=dict)
    _thresholds: dict[str, int] = field(default_factory=dict)
    _commitments: dict[str, bytes] = field(default_factory=dict)
    _sharers: list[str] = field(default_factory=list)
    _total: np.ndarray | None = None
    _survivors: list[str] = field(default_factory=list)

    def start(self, adverts: dict[str, Any]) -> dict[str, dict]:
        """Stage 1 -> 2: from each client's public keys, the share_keys request for each client."""
        for name in sorted(adverts):
            check = Inspect(name, "advertise")
            try:
                check.mapping(adverts[name], {"c_pk", "s_pk"})
                c_pk = check.raw(adverts[name]["c_pk"], length=KEY_BYTES)
                s_pk = check.raw(adverts[name]["s_pk"], length=KEY_BYTES)
            except ProtocolError as exc:
                self.rejected[name] = str(exc)
                continue
            self._peers[name] = _Peer(len(self._peers) + 1, c_pk, s_pk)
        names = list(self._peers)
        self._require(len(names), self.min_survivors(len(names)), "advertised keys")
        self._graph = neighbourhoods(names, self.config.neighbours)
        requests = {}
        for name in names:
            holders = len(self._graph[name]) + 1
            self._thresholds[name] = self.config.threshold(holders)
            requests[name] = {
                "x": self._peers[name].x,
                "threshold": self._thresholds[name],
                "neighbours": {
                    other: {"x": self._peers[other].x, "c_pk": self._peers[other].c_pk, "s_pk": self._peers[other].s_pk}
                    for other in self._graph[name]
                },
            }
        return requests

    def min_survivors(self, advertised: int) -> int:
        return max(self.min_clients, self.config.threshold(advertised))

    def route_shares(self, replies: dict[str, Any]) -> dict[str, dict]:
        """Stage 2 -> 3: forward each sealed share to its recipient; a client masks only with sharers."""
        inbox: dict[str, dict[str, bytes]] = {name: {} for name in self._peers}
        for name in sorted(replies):
            check = Inspect(name, "share_keys")
            try:
                check.mapping(replies[name], {"shares", "commitment"})
                shares = check.mapping(replies[name]["shares"], set())
                if set(shares) != set(self._graph[name]):
                    check.fail("shares must go to exactly the client's neighbours")
                sealed = {to: check.raw(blob, length=_SEALED_SHARE_BYTES) for to, blob in shares.items()}
                self._commitments[name] = check.raw(replies[name]["commitment"], length=32)
            except ProtocolError as exc:
                self.rejected[name] = str(exc)
                continue
            self._sharers.append(name)
            for to, blob in sealed.items():
                inbox[to][name] = blob
        self._require(len(self._sharers), self.min_survivors(len(self._peers)), "shared their keys")
        return {name: {"shares": inbox[name]} for name in self._sharers}

    def collect_masked(self, replies: dict[str, Any]) -> dict[str, dict]:
        """Stage 3 -> 4: add the masked vectors; ask each survivor for the shares the sum needs."""
        total = np.zeros(self.length, dtype=np.uint64)
        for name in sorted(replies):
            if name not in self._sharers:
                continue
            check = Inspect(name, "masked_input")
            try:
                total += check.array(
                    check.mapping(replies[name], {"masked"})["masked"], np.dtype("<u8"), (self.length,)
                )
            except ProtocolError as exc:
                self.rejected[name] = str(exc)
                continue
            self._survivors.append(name)
        self._require(len(self._survivors), self.min_survivors(len(self._peers)), "sent masked input")
        self._total = total
        survivors, dropped = set(self._survivors), set(self._sharers) - set(self._survivors)
        return {
            name: {
                "survivors": sorted(survivors & ({name} | set(self._graph[name]))),
                "dropped": sorted(dropped & set(self._graph[name])),
            }
            for name in self._survivors
        }

    @property
    def survivors(self) -> list[str]:
        """Clients whose input is in the sum."""
        return list(self._survivors)

    def finish(self, replies: dict[str, Any]) -> np.ndarray:
        """Stage 4: recover the seeds and keys from the shares and return the sum of survivors' inputs in Z_2^64."""
        assert self._total is not None, "collect_masked comes first"
        seed_shares: dict[str, dict[int, int]] = {name: {} for name in self._survivors}
        key_shares: dict[str, dict[int, int]] = {name: {} for name in set(self._sharers) - set(self._survivors)}
        for name in sorted(replies):
            if name not in self._survivors:
                continue
            check = Inspect(name, "unmask")
            try:
                reply = check.mapping(replies[name], {"seed_shares", "key_shares"})
                seeds = self._shares(check, reply["seed_shares"], seed_shares, name)
                keys = self._shares(check, reply["key_shares"], key_shares, name)
            except ProtocolError as exc:
                self.rejected[name] = str(exc)
                continue
            x = self._peers[name].x
            for owner, value in seeds.items():
                seed_shares[owner][x] = value
            for owner, value in keys.items():
                key_shares[owner][x] = value
        total = self._total.copy()
        expander = MaskExpander(self.length)
        for owner, shares in seed_shares.items():
            total -= expander.mask(self._recover_seed(owner, shares), _self_context(self.session, owner))
        for owner, shares in key_shares.items():
            self._remove_pair_masks(total, owner, self._recover_key(owner, shares), expander)
        return total

    def _shares(self, check: Inspect, obj: Any, expected: dict[str, dict[int, int]], holder: str) -> dict[str, int]:
        shares = check.mapping(obj, set())
        allowed = {owner for owner in expected if owner == holder or owner in self._graph[holder]}
        check.names(list(shares), allowed)
        try:
            return {owner: field_from_bytes(check.raw(raw, length=33)) for owner, raw in shares.items()}
        except ValueError as exc:
            check.fail(str(exc))

    def _recover_seed(self, owner: str, shares: dict[int, int]) -> bytes:
        value = self._combine(owner, shares, "self-mask seed")
        if value >= 1 << (8 * KEY_BYTES):
            raise SecAggError(f"recovered self-mask seed of {owner!r} is out of range: shares are inconsistent")
        seed = value.to_bytes(KEY_BYTES, "big")
        if _commitment(self.session, owner, seed) != self._commitments[owner]:
            raise SecAggError(f"recovered self-mask seed of {owner!r} does not match its commitment")
        return seed

    def _recover_key(self, owner: str, shares: dict[int, int]) -> Any:
        value = self._combine(owner, shares, "mask key")
        try:
            key = private_key_from_int(value)
        except ValueError:
            key = None
        if key is None or public_bytes(key) != self._peers[owner].s_pk:
            raise SecAggError(f"recovered mask key of dropped client {owner!r} does not match its public key")
        return key

    def _combine(self, owner: str, shares: dict[int, int], what: str) -> int:
        needed = self._thresholds[owner]
        if len(shares) < needed:
            raise SecAggError(
                f"cannot recover the {what} of {owner!r}: {len(shares)} shares arrived, {needed} needed; "
                f"too many clients dropped out (tolerance {self.config.dropout_tolerance:.0%})"
            )
        return shamir_combine(shares, needed)

    def _remove_pair_masks(self, total: np.ndarray, dropped: str, key: Any, expander: MaskExpander) -> None:
        """Take out the masks that survivors shared with a client whose own input never arrived."""
        for other in self._graph[dropped]:
            if other not in self._survivors:
                continue
            seed = agree(key, self._peers[other].s_pk, _pair_context(self.session, dropped, other))
            pair = expander.mask(seed, _pair_context(self.session, dropped, other))
            if other < dropped:  # the survivor added this mask (see _add_pair): take it out
                total -= pair
            else:
                total += pair

    def _require(self, have: int, need: int, stage: str) -> None:
        if have < need:
            raise SecAggError(f"only {have} clients {stage}, {need} needed to keep the round secure and recoverable")


def mask_together(jobs: Mapping[str, tuple[SecAggClient, dict, np.ndarray]]) -> tuple[dict[str, dict], dict[str, str]]:
    """Stage 3 for many in-process clients at once (the simulation): ``{name: (client, request, encoded)}``.

    Each pair's key agreement and mask expansion happen once, applied to both ends, instead of once
    per end; every vector is bit for bit what the client's own :meth:`SecAggClient.masked_input`
    returns. Returns the replies and, for clients whose request did not validate, why.
    """
    failures: dict[str, str] = {}
    for name, (client, request, _) in jobs.items():
        try:
            client.receive_shares(request)
        except ProtocolError as exc:
            failures[name] = str(exc)
    ready = {name: job for name, job in jobs.items() if name not in failures}
    if not ready:
        return {}, failures
    expander = MaskExpander(len(next(iter(ready.values()))[2]))
    masked = {name: client.self_masked(encoded, expander) for name, (client, _, encoded) in ready.items()}
    active = {name: set(client.active) for name, (client, _, _) in ready.items()}
    both_here = {(name, other) for name in ready for other in active[name] if other in ready and name in active[other]}
    pairs = [
        (name, other) for name in ready for other in active[name] if (other, name) not in both_here or name < other
    ]
    for name, other in pairs:
        client = ready[name][0]
        pair = expander.mask(client.pair_seed(other), _pair_context(client.session, name, other))
        _add_pair(masked[name], pair, name, other)
        if (name, other) in both_here:
            _add_pair(masked[other], pair, other, name)
    return {name: {"masked": vector} for name, vector in masked.items()}, failures
