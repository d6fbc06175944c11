"""Dropout-tolerant secure summation of client vectors (Bonawitz et al. 2017), transport-free.

One :class:`SecAggClient` per client and one :class:`SecAggServer` per sum; the roles in
:mod:`~isthmus.horizontal.aggregator` and :mod:`~isthmus.horizontal.participant` (or the simulation,
or horizontal SecureBoost) carry their messages. Five stages, each one request from the aggregator
and one reply per client (Bonawitz et al.'s protocol for an active adversary, Figure 4):

1. advertise: two fresh X25519 public keys per client, ``c`` (to seal shares) and ``s`` (for masks),
   signed with the client's long-term Ed25519 key together with the job, the sum's label and session.
2. share_keys: given its neighbours' advertisements, a client checks each signature against the
   pinned key of that neighbour, then Shamir-shares its ``s`` private key and a fresh self-mask seed
   ``b`` among its neighbours and itself, sealed (AES-GCM) for each recipient.
3. masked_input: the client sends ``y = x + PRG(b) + sum_j +-PRG(s_ij)`` in Z_2^64, where ``s_ij`` is
   agreed with neighbour ``j`` and the sign makes the pair cancel.
4. consistency: the aggregator names the survivors (whose masked input it holds); each client checks
   the list and signs it.
5. unmask: shown enough signatures of the same list, each client reveals its shares of the survivors'
   ``b`` and of the dropped neighbours' ``s`` key, never both for one client. The aggregator removes
   the self masks of survivors and the dangling pair masks of the dropped: the survivors' sum remains.

What a client insists on, from its own settings (:class:`Quorum`, never a number the aggregator
sends): keys of at least ``peers`` neighbours, each signed by that neighbour; sealed shares from at
least ``peers`` of them before it masks (it masks with exactly those); a survivor list of at least
``minimum`` clients that includes it, on which at least ``minimum`` clients' signatures agree before
it reveals anything. Otherwise it aborts the sum with an error naming the aggregator. So an
aggregator that forwards no shares to a client, or substitutes a key, learns nothing from it, and the
survivors' sum it can learn covers at least ``minimum`` clients (see docs/security.md for the exact
claim and what an aggregator colluding with clients can still do). A replayed old advertisement is
of no use to it either: the shares of that key's owner are sealed under its ``c`` key, which is never
revealed, so a client never masks with a replayed key.

Neighbourhoods are the complete graph by default; ``neighbours=k`` switches to a random k-regular
(Harary) graph as in SecAgg+ (Bell et al. 2020), which makes the cost per client O(k) instead of O(n)
for many-client jobs, at the price of a probabilistic dropout guarantee per neighbourhood. The
aggregator draws that graph, so sparse neighbourhoods protect against a semi-honest aggregator only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from isthmus.crypto.secagg import (
    KEY_BYTES,
    SIGNATURE_BYTES,
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
    sign,
    signature_valid,
    signing_public_bytes,
    unseal,
)
from isthmus.errors import ConfigError, ProtocolError
from isthmus.protocols.inspect import Inspect

_SEALED_SHARE_BYTES = 12 + 2 * 33 + 16  # nonce + two field elements + GCM tag
SESSION_BYTES = 16
#: A client's stages, each done once and in this order; a stage that fails ends the sum for it.
_STAGES = ("advertise", "share_keys", "masked_input", "consistency", "unmask")


@dataclass(frozen=True)
class SecAggConfig:
    """How much dropout a round survives, how reals are encoded, and who masks with whom.

    ``dropout_tolerance`` is the fraction of a round's clients that may vanish, at any stage, with the
    sum still recovered: every sum needs :meth:`threshold` of the clients the round asks, and a dropped
    client's secrets that many of its share holders; the threshold never falls below a majority.
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

    def quorum(self, committee: int, min_clients: int = 2) -> Quorum:
        """What a client insists on when sums are over ``committee`` clients (a round's sample) at most.

        At least the threshold of the committee, and ``min_clients``, take part in every sum; a client
        masks with at least as many neighbours as its share threshold needs (less itself).
        """
        minimum = max(min_clients, self.threshold(committee))
        if minimum > committee:
            raise ConfigError(f"min_clients {min_clients} exceeds the {committee} clients a round asks")
        if self.neighbours is None or self.neighbours >= committee - 1:
            return Quorum(minimum, minimum - 1)
        return Quorum(minimum, self.threshold(self.neighbours + 1) - 1)


def _context(*parts: bytes | str) -> bytes:
    """Length-prefixed concatenation, so that no two different part lists give the same bytes."""
    out = []
    for part in parts:
        raw = part.encode() if isinstance(part, str) else part
        out += (len(raw).to_bytes(4, "big"), raw)
    return b"".join(out)


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


@dataclass(frozen=True)
class Keyring:
    """Long-term Ed25519 identities: the pinned public key of every client, and our own signing key.

    In jobs these are the party's ``signing.key`` and the federation's pinned keys (restricted to the
    job's clients); the aggregator holds the pinned keys only. :meth:`generate` makes them in memory
    (simulation, tests).
    """

    pinned: Mapping[str, bytes]  # client -> raw 32-byte Ed25519 public key
    signing_key: Ed25519PrivateKey | None = None

    @classmethod
    def generate(cls, names: Iterable[str]) -> dict[str, Keyring]:
        keys = {name: Ed25519PrivateKey.generate() for name in names}
        pinned = {name: signing_public_bytes(key) for name, key in keys.items()}
        return {name: cls(pinned, key) for name, key in keys.items()}

    def public(self) -> Keyring:
        """The pinned keys without our signing key: what the aggregator holds."""
        return Keyring(self.pinned)

    def sign(self, message: bytes) -> bytes:
        if self.signing_key is None:
            raise ConfigError("this keyring holds no signing key")
        return sign(self.signing_key, message)

    def verify(self, party: str, message: bytes, signature: bytes) -> bool:
        public = self.pinned.get(party)
        return public is not None and signature_valid(public, message, signature)


@dataclass(frozen=True)
class Quorum:
    """What every client insists on in every secure sum, computed from its own settings.

    ``minimum``: fewest clients in any sum the client's input goes into (Bonawitz et al.'s t).
    ``peers``: fewest neighbours whose signed keys, then sealed shares, it needs before it masks.
    """

    minimum: int
    peers: int


@dataclass(frozen=True)
class SecAggTerms:
    """One party's standing terms for secure sums: its keys, the settings of its job file, the job name.

    Every signature is bound to ``job``; the aggregator holds the same terms without a signing key.
    """

    keyring: Keyring
    config: SecAggConfig
    quorum: Quorum
    job: str

    def public(self) -> SecAggTerms:
        return SecAggTerms(self.keyring.public(), self.config, self.quorum, self.job)


@functools.lru_cache(maxsize=1 << 14)  # pure; in a simulation every neighbour of a client checks the same advert
def advert_message(job: str, label: str, session: bytes, name: str, c_pk: bytes, s_pk: bytes) -> bytes:
    """What a client signs when it advertises its keys: they are for this job, sum and session only."""
    return _context(b"advertise", job, label, session, name, c_pk, s_pk)


def survivors_message(job: str, label: str, session: bytes, survivors: list[str]) -> bytes:
    """What a client signs in the consistency check: this sorted survivor list, in this sum only."""
    listed = json.dumps(survivors).encode()  # an unambiguous encoding of a list of names, made in C
    return _context(b"survivors", job, label, session, hashlib.sha256(listed).digest())


@dataclass
class _Peer:
    x: int
    c_pk: bytes
    s_pk: bytes
    signature: bytes


class SecAggClient:
    """One client's secrets and view for one sum (``label`` names it, e.g. the round, in every signature)."""

    def __init__(self, name: str, terms: SecAggTerms, session: bytes, label: str, aggregator: str = "aggregator"):
        self.name = name
        self.terms = terms
        self.session = session
        self.label = label
        self.aggregator = aggregator
        self._c_key, self._c_pk = generate_keypair()
        self._s_key, self._s_pk = generate_keypair()
        self._seed = b""
        self._x = 0
        self._peers: dict[str, _Peer] = {}
        self._share_keys: dict[str, bytes] = {}  # neighbour -> AES key sealing the shares between us
        self._held: dict[str, tuple[int, int]] = {}  # sender -> (share of its s key, share of its seed)
        self._active: list[str] = []
        self._survivors: list[str] = []  # the list this client signed
        self._signed = b""  # what it signed
        self._next = 0  # index in _STAGES of the stage that may come

    def advertise(self) -> dict[str, Any]:
        self._enter(Inspect(self.aggregator, "advertise"), "advertise")
        message = advert_message(self.terms.job, self.label, self.session, self.name, self._c_pk, self._s_pk)
        return self._done("advertise", {"c_pk": self._c_pk, "s_pk": self._s_pk,
                                        "signature": self.terms.keyring.sign(message)})

    def share_keys(self, request: dict) -> dict[str, Any]:
        check = Inspect(self.aggregator, "share_keys")
        self._enter(check, "share_keys")
        check.mapping(request, {"x", "threshold", "neighbours"})
        roster = check.mapping(request["neighbours"], set())
        quorum = self.terms.quorum
        if len(roster) < quorum.peers:
            self._abort(check, f"it forwarded the keys of {len(roster)} peers; this client masks only with at least "
                               f"{quorum.peers} (its input goes only into sums of at least {quorum.minimum} clients)")
        self._x = check.integer(request["x"], 1, 1 << 31)
        holders = len(roster) + 1
        expected = self.terms.config.threshold(holders)
        if check.integer(request["threshold"], 1, holders) != expected:
            check.fail(f"threshold {request['threshold']} differs from this client's: {expected} of {holders} "
                       f"(dropout_tolerance {self.terms.config.dropout_tolerance})")
        for name, entry in roster.items():
            if name == self.name:
                check.fail("a client cannot be its own neighbour")
            check.mapping(entry, {"x", "c_pk", "s_pk", "signature"})
            peer = _Peer(
                check.integer(entry["x"], 1, 1 << 31),
                check.raw(entry["c_pk"], length=KEY_BYTES),
                check.raw(entry["s_pk"], length=KEY_BYTES),
                check.raw(entry["signature"], length=SIGNATURE_BYTES),
            )
            message = advert_message(self.terms.job, self.label, self.session, name, peer.c_pk, peer.s_pk)
            if not self.terms.keyring.verify(name, message, peer.signature):
                self._abort(check, f"the keys it forwarded for {name!r:.80} do not carry that client's signature "
                                   "(substituted keys, or not a client of this job)")
            self._peers[name] = peer
        xs = [self._x] + [peer.x for peer in self._peers.values()]
        keys = [self._c_pk, self._s_pk] + [k for peer in self._peers.values() for k in (peer.c_pk, peer.s_pk)]
        if len(set(xs)) != len(xs) or len(set(keys)) != len(keys):
            check.fail("share points or public keys are not distinct")
        self._seed = secrets.token_bytes(KEY_BYTES)
        s_shares = shamir_split(private_key_to_int(self._s_key), xs, expected)
        b_shares = shamir_split(int.from_bytes(self._seed, "big"), xs, expected)
        self._held[self.name] = (s_shares[0], b_shares[0])
        sealed = {}
        for (name, peer), s_share, b_share in zip(self._peers.items(), s_shares[1:], b_shares[1:]):
            key = self._share_keys[name] = self._share_key(name, peer.c_pk, check)
            sealed[name] = seal(
                key, field_to_bytes(s_share) + field_to_bytes(b_share), _context(self.session, self.name, name)
            )
        commitment = _commitment(self.session, self.name, self._seed)
        return self._done("share_keys", {"shares": sealed, "commitment": commitment})

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
        self._enter(check, "masked_input")
        check.mapping(request, {"shares"})
        sealed = check.mapping(request["shares"], set())
        active = check.names(list(sealed), set(self._peers))
        if len(active) < self.terms.quorum.peers:
            self._abort(check, f"it forwarded the shares of {len(active)} peers; this client masks only with at "
                               f"least {self.terms.quorum.peers}")
        for sender in active:
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
        self._active = self._done("masked_input", active)

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

    def confirm(self, request: dict) -> dict[str, Any]:
        """The consistency check: sign the aggregator's survivor list if it can be right."""
        check = Inspect(self.aggregator, "consistency")
        self._enter(check, "consistency")
        check.mapping(request, {"survivors"})
        survivors = sorted(check.names(request["survivors"], set(self.terms.keyring.pinned)))
        minimum = self.terms.quorum.minimum
        if self.name not in survivors or len(survivors) < minimum:
            self._abort(check, f"it named {len(survivors)} survivors, this client "
                               f"{'among' if self.name in survivors else 'not among'} them; it needs itself and at "
                               f"least {minimum}")
        # survivors are among those whose shares we hold: with every client a neighbour (the complete
        # graph) that is all of them, with sparse neighbourhoods the ones in ours
        active = set(self._active)
        inconsistent = [n for n in survivors if n != self.name and n not in active
                        and (n in self._peers or self.terms.config.neighbours is None)]
        if inconsistent:
            self._abort(check, f"it named survivors whose shares this client never received: {inconsistent[:5]}")
        self._survivors = survivors
        self._signed = survivors_message(self.terms.job, self.label, self.session, survivors)
        return self._done("consistency", {"signature": self.terms.keyring.sign(self._signed)})

    def unmask(self, request: dict) -> dict[str, Any]:
        """Reveal shares of the survivors' seeds and the dropped neighbours' keys, never both for one client."""
        check = Inspect(self.aggregator, "unmask")
        self._enter(check, "unmask")
        check.mapping(request, {"signatures"})
        signatures = check.mapping(request["signatures"], set())
        survivors, neighbourhood = set(self._survivors), set(self._peers) | {self.name}
        signers = 0
        for name in check.names(list(signatures), set(self.terms.keyring.pinned)):
            if name not in neighbourhood:  # with sparse neighbourhoods, only its own neighbours vouch for a client
                continue
            signature = check.raw(signatures[name], length=SIGNATURE_BYTES)
            if name not in survivors or not self.terms.keyring.verify(name, self._signed, signature):
                self._abort(check, f"the signature of {name!r} is not on the survivor list this client signed: "
                                   "clients were shown different lists")
            signers += 1
        needed = self.terms.quorum.peers + 1  # the whole quorum with every client a neighbour
        if signers < needed:
            self._abort(check, f"only {signers} clients signed the survivor list; this client reveals shares only "
                               f"when at least {needed} did")
        mine = set(self._active) | {self.name}
        return self._done("unmask", {
            "seed_shares": {name: field_to_bytes(self._held[name][1]) for name in sorted(survivors & mine)},
            "key_shares": {name: field_to_bytes(self._held[name][0]) for name in sorted(set(self._active) - survivors)},
        })

    def _enter(self, check: Inspect, stage: str) -> None:
        """Each stage once, in order: a repeated stage could mask or share the same secrets twice."""
        expected = _STAGES[self._next] if self._next < len(_STAGES) else "nothing more"
        self._next = len(_STAGES)  # until this stage succeeds, nothing else may come
        if stage != expected:
            check.fail(f"{stage} out of order in this secure sum (expected {expected})")

    def _done(self, stage: str, result: Any) -> Any:
        self._next = _STAGES.index(stage) + 1
        return result

    def _abort(self, check: Inspect, why: str) -> NoReturn:
        check.fail(f"secure sum aborted: aggregator {self.aggregator!r}: {why}")

    def _share_key(self, other: str, c_pk: bytes, check: Inspect) -> bytes:
        try:
            return agree(self._c_key, c_pk, _context(b"share", self.session, *sorted((self.name, other))))[:16]
        except ValueError as exc:
            check.fail(f"public key of {other!r} is unusable: {exc}")


@dataclass
class SecAggServer:
    """The aggregator's side of one sum: it sees keys, sealed shares and masked vectors, and the sum."""

    terms: SecAggTerms  # without a signing key: the pinned keys, the settings, the job
    session: bytes
    label: str
    length: int
    rejected: dict[str, str] = field(default_factory=dict)
    _peers: dict[str, _Peer] = field(default_factory=dict)
    _graph: dict[str, list[str]] = field(default_factory=dict)
    _thresholds: dict[str, int] = field(default_factory=dict)
    _commitments: dict[str, bytes] = field(default_factory=dict)
    _sharers: list[str] = field(default_factory=list)
    _total: np.ndarray | None = None
    _survivors: list[str] = field(default_factory=list)
    _silent: list[str] = field(default_factory=list)  # survivors whose shares did not come

    @property
    def minimum(self) -> int:
        """Fewest clients the sum may hold: the clients' own quorum, which they enforce too."""
        return self.terms.quorum.minimum

    def start(self, adverts: dict[str, Any], asked: Iterable[str] = ()) -> dict[str, dict]:
        """Stage 1 -> 2: from each client's signed public keys, the share_keys request for each client.
        ``asked``: the clients asked to advertise, named if too few did."""
        seen: set[bytes] = set()
        for name in sorted(adverts):
            check = Inspect(name, "advertise")
            try:
                check.mapping(adverts[name], {"c_pk", "s_pk", "signature"})
                c_pk = check.raw(adverts[name]["c_pk"], length=KEY_BYTES)
                s_pk = check.raw(adverts[name]["s_pk"], length=KEY_BYTES)
                signature = check.raw(adverts[name]["signature"], length=SIGNATURE_BYTES)
                message = advert_message(self.terms.job, self.label, self.session, name, c_pk, s_pk)
                if not self.terms.keyring.verify(name, message, signature):
                    check.fail("advertised keys are not signed with this client's pinned key")
                if {c_pk, s_pk} & seen or c_pk == s_pk:
                    check.fail("advertised keys repeat keys already advertised")
            except ProtocolError as exc:
                self.rejected[name] = str(exc)
                continue
            seen |= {c_pk, s_pk}
            self._peers[name] = _Peer(len(self._peers) + 1, c_pk, s_pk, signature)
        names = list(self._peers)
        self._require(names, "advertised keys", of=asked)
        self._graph = neighbourhoods(names, self.terms.config.neighbours)
        requests = {}
        for name in names:
            holders = len(self._graph[name]) + 1
            self._thresholds[name] = self.terms.config.threshold(holders)
            requests[name] = {
                "x": self._peers[name].x,
                "threshold": self._thresholds[name],
                "neighbours": {
                    other: {
                        "x": self._peers[other].x,
                        "c_pk": self._peers[other].c_pk,
                        "s_pk": self._peers[other].s_pk,
                        "signature": self._peers[other].signature,
                    }
                    for other in self._graph[name]
                },
            }
        return requests

    def route_shares(self, replies: dict[str, Any]) -> dict[str, dict]:
        """Stage 2 -> 3: forward each sealed share to its recipient; a client masks only with sharers."""
        inbox: dict[str, dict[str, bytes]] = {name: {} for name in self._peers}
        for name in sorted(replies):
            if name not in self._peers:
                continue
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
        self._require(self._sharers, "shared their keys", of=self._peers)
        return {name: {"shares": inbox[name]} for name in self._sharers}

    def collect_masked(self, replies: dict[str, Any]) -> dict[str, dict]:
        """Stage 3 -> 4: add the masked vectors; ask every survivor to sign the survivor list."""
        total = np.zeros(self.length, dtype=np.uint64)
        for name in sorted(replies):
            if name not in self._sharers:
                continue
            check = Inspect(name, "masked_input")
            try:
                total += check.array(
                    check.mapping(replies[name], {"masked"})["masked"], (self.length,), dtype=np.dtype("<u8")
                )
            except ProtocolError as exc:
                self.rejected[name] = str(exc)
                continue
            self._survivors.append(name)
        self._require(self._survivors, "sent masked input", of=self._sharers)
        self._total = total
        return {name: {"survivors": list(self._survivors)} for name in self._survivors}

    def collect_signatures(self, replies: dict[str, Any]) -> dict[str, dict]:
        """Stage 4 -> 5: the survivors' signatures on the list, shown to every signer with the unmask request."""
        message = survivors_message(self.terms.job, self.label, self.session, sorted(self._survivors))
        signatures = {}
        for name in sorted(replies):
            if name not in self._survivors:
                continue
            check = Inspect(name, "consistency")
            try:
                signature = check.raw(check.mapping(replies[name], {"signature"})["signature"],
                                      length=SIGNATURE_BYTES)
                if not self.terms.keyring.verify(name, message, signature):
                    check.fail("signature on the survivor list does not verify")
            except ProtocolError as exc:
                self.rejected[name] = str(exc)  # its input still counts: the others reveal its seed
                continue
            signatures[name] = signature
        self._require(list(signatures), "signed the survivor list", of=self._survivors)
        if self.terms.config.neighbours is None:
            return {name: {"signatures": signatures} for name in signatures}
        return {  # a client counts only its neighbours' signatures: O(k) each, as the rest of SecAgg+
            name: {"signatures": {v: signatures[v] for v in [name, *self._graph[name]] if v in signatures}}
            for name in signatures
        }

    @property
    def survivors(self) -> list[str]:
        """Clients whose input is in the sum."""
        return list(self._survivors)

    def finish(self, replies: dict[str, Any]) -> np.ndarray:
        """Stage 5: recover the seeds and keys from the shares and return the sum of survivors' inputs in Z_2^64."""
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
        self._silent = [name for name in self._survivors if name not in replies or name in self.rejected]
        total = self._total.copy()
        expander = MaskExpander(self.length)
        for owner, shares in seed_shares.items():
            total -= expander.mask(self._recover_seed(owner, shares), _self_context(self.session, owner))
        for owner, shares in key_shares.items():
            self._remove_pair_masks(total, owner, self._recover_key(owner, shares), expander)
        return total

    def _shares(self, check: Inspect, obj: Any, expected: dict[str, dict[int, int]], holder: str) -> dict[str, int]:
        shares = check.mapping(obj, set())
        allowed = set(expected) & ({holder} | set(self._graph[holder]))
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
                f"too many clients dropped out (tolerance {self.terms.config.dropout_tolerance:.0%})"
                + (f"; none came from {', '.join(self._silent)}" if self._silent else "")
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

    def _require(self, have: list[str], stage: str, of: Iterable[str] = ()) -> None:
        """At least the quorum in ``have``; else an error naming who of ``of`` (the stage's callees) is not."""
        if len(have) < self.minimum:
            missing = [name for name in of if name not in have]
            raise SecAggError(f"only {len(have)} clients {stage}, {self.minimum} needed to keep the round secure and "
                              "recoverable" + (f"; not {', '.join(missing)}" if missing else ""))


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
