"""Private set intersection for vertical jobs: parties learn which ids they share, nothing about the rest.

The guest coordinates; each host runs a pairwise protocol with the guest (hosts never talk to each
other); the guest intersects the pairwise results and tells each host its rows of the final set.
Every party ends with ``PsiResult.positions``: its own rows for the shared ids, in one order that is
the same at every party.

Method ``"ecdh"`` (default), per job:

1. Handshake. The guest draws a salt with :mod:`secrets` and sends ``{version, method, salt, count}``;
   each host answers with its count; the guest says go. A party whose own ids are unusable
   (duplicates, missing values) answers "abort" instead, so every party stops at once with a
   :class:`DataError` rather than waiting out a timeout. An abort carries no detail and no id. Where
   one side holds more than ``max_peer_ratio`` times the other's ids, the guest says no, and the host
   stops whatever the guest says.
2. The guest hashes its ids to curve points (salted, see :mod:`isthmus.crypto.ecdh`), blinds them
   with a fresh key ``a``, shuffles them with OS randomness and sends the same list ``H(x)^a`` to
   every host (blinding the guest's set once per job, however many hosts). Host ``i`` sends its own
   shuffled ``H(y)^b_i``, raises the guest's list to ``b_i`` and returns it in the guest's order.
3. The guest compares per host: either it strips its key from its returned list (an unblinding key
   ``a^-1``, see :func:`isthmus.crypto.ecdh.new_key_with_inverse`) and compares ``H(x)^b_i`` with the
   host's ``H(y)^b_i``, or it raises the host's list to ``a`` and compares ``H(.)^(a b_i)``. The
   messages are the same either way; it does whichever raises fewer points, so a guest facing a far
   larger host set never touches that set with its key (each of those ids costs one operation, the host's).
4. The guest keeps the ids shared with every host, orders them by their double-blinded value with
   the first host (an order no party can link to an id or a row) and sends each host the matching
   positions in that host's own shuffled list, in that order.

Who learns what (parties follow the protocol; see below for RSA): each party learns the sizes of
the sets it exchanges with. The guest learns the final intersection and, per host, which of its own
ids that host holds. A host learns only which of its own rows are in the final intersection: it
never sees a double-blinded value, so it cannot test guesses against the guest's set, and it hears
nothing of other hosts. Salts and keys are fresh per job, so blinded values of two jobs cannot be
linked. Empty sets and disjoint sets are not errors here: the result has size 0 and the job layer
decides what that means.

What PSI reveals is itself a test: a party whose ids are made up (every phone number of a country,
say) learns which of them the other side holds. ``max_peer_ratio`` bounds how many ids one side may
bring against the other's.

Method ``"kkrt"`` (KKRT16's OT-extension OPRF, :mod:`isthmus.protocols.kkrt`): the guest is the OPRF
receiver with every host; each host sends the OPRF values of its ids in its shuffled order, and the
guest finds its pairwise matches (with the host's positions) from them, then continues with step 4,
ordering by its OPRF values with the first host. Who learns what is as for ECDH; the cost is mostly
symmetric-key (AES, BLAKE2b), so it is the fast choice from tens of thousands of ids up.

Method ``"rsa"`` (RSA blind signatures, :mod:`isthmus.crypto.rsa_blind`, for very unbalanced sets):
per host, the side with more ids signs (a tie: the host). A guest client learns as above. A host
client learns its pairwise intersection with the guest, not only the final one, and reports the
matching positions in the guest's list; the guest then continues with step 4.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from isthmus.compute import Compute, Pool, current, map_partitions
from isthmus.crypto import ecdh, rsa_blind
from isthmus.crypto.batchpool import split_evenly
from isthmus.data.ids import DEDUPE_MODES, CanonicalIds, canonical_ids
from isthmus.data.partitions import Partition, TablePartitions, read_ids
from isthmus.errors import ConfigError, DataError, ProtocolError
from isthmus.protocols.kkrt import psi as kkrt
from isthmus.protocols.psi_wire import (
    MAX_CHUNK_RECORDS,
    decode_indices,
    encode_indices,
    expect_count,
    expect_map,
    index_records,
    iter_results,
    recv_records,
    split_records,
)
from isthmus.transport.channel import Channel

PROTOCOL_VERSION = 1
METHODS = ("ecdh", "rsa", "kkrt")
#: Methods whose work on a party's ids starts per partition, where they are read (see ``_ReadsPartitions``).
PARTITIONED_METHODS = ("ecdh", "kkrt")
MAX_IDS = 500_000_000  # any larger announced set is refused; positions travel as uint32
BATCHES_PER_WORKER = 8

TAG_HELLO = "psi/hello"
TAG_REPLY = "psi/reply"
TAG_START = "psi/start"
TAG_GUEST_POINTS = "psi/ecdh/guest-points"
TAG_HOST_POINTS = "psi/ecdh/host-points"
TAG_GUEST_POINTS_BACK = "psi/ecdh/guest-points-reblinded"
TAG_RSA_KEY = "psi/rsa/key"
TAG_RSA_DIGESTS = "psi/rsa/server-digests"
TAG_RSA_BLINDED = "psi/rsa/blinded"
TAG_RSA_SIGNED = "psi/rsa/signed"
TAG_RSA_MATCHES = "psi/rsa/matches"
TAG_RESULT = "psi/result"

Progress = Callable[[str, float], None]



@dataclass
class _Pairing:
    """What the guest learns from one host: its shuffled positions the host shares, the host's
    reference to each of those ids; and for every position, a value to put the final set in order by."""

    positions: np.ndarray  # int64
    refs: np.ndarray  # int64, aligned with positions
    order_keys: np.ndarray  # fixed-width bytes ("S" dtype), one per shuffled position

    @classmethod
    def from_matches(cls, matches: dict[int, int], order_keys: bytes, width: int) -> _Pairing:
        positions = np.fromiter(matches.keys(), dtype=np.int64, count=len(matches))
        refs = np.fromiter(matches.values(), dtype=np.int64, count=len(matches))
        return cls(positions, refs, np.frombuffer(order_keys, dtype=f"S{width}"))


@dataclass
class PsiResult:
    positions: np.ndarray  # indices into this party's id array, in the agreed order
    size: int
    #: With ids read per partition: each partition's rows as read (to find a position's partition again).
    partition_rows: list[int] | None = None


def intersect(
    channel: Channel,
    role: str,
    ids: Sequence[Any] | np.ndarray | TablePartitions,
    *,
    method: str = "ecdh",
    guest: str = "guest",
    hosts: Sequence[str] = ("host",),
    salt_bytes: int = 32,
    progress: Progress | None = None,
    dedupe: str = "error",
    workers: int | None = None,
    compute: Compute | None = None,
    max_peer_ratio: float | None = None,
) -> PsiResult:
    """Run this party's side of the intersection (see the module docstring).

    ``ids`` are canonicalised by :func:`isthmus.data.ids.canonical_ids` (``dedupe`` as there).
    Every party must pass the same ``guest``, ``hosts`` and ``method`` (a mismatch stops the job).
    ``progress(stage, fraction)`` is called as stages advance.
    ``ids`` may also be a :class:`TablePartitions` (guest or host, any method): its backend's tasks then
    read and canonicalise the ids per partition of the file, and ``positions`` are rows of the whole file.
    With ECDH (KKRT) the tasks also blind (digest) them, so this process holds 32 (15) bytes per row, never
    the ids; RSA needs the ids themselves here (see :func:`_read_partitioned_ids`).
    ``compute``: where hashing and curve operations on ids run (default: this process's backend,
    :func:`isthmus.compute.current`); ``workers`` overrides the local pool's size (by default all
    cores, or none for small sets). Neither is visible to the peers. A peer announcing more than
    ``max_peer_ratio`` times this party's ids is refused before any id is blinded (default: no limit).
    """
    hosts = list(hosts)
    _check_setup(channel, role, method, guest, hosts, salt_bytes, dedupe)
    compute, progress = compute or current(), progress or _ignore_progress
    setup = (channel, method, guest, hosts, workers, compute, progress, max_peer_ratio)
    if isinstance(ids, TablePartitions) and method in PARTITIONED_METHODS:
        reading = _PartitionedGuest if role == "guest" else _PartitionedHost
        return reading(*setup, table=ids, dedupe=dedupe).run(_NO_IDS, None, salt_bytes)
    partition_rows = None
    try:
        if isinstance(ids, TablePartitions):
            ids, partition_rows = _read_partitioned_ids(compute, workers, ids, progress)
        canon, problem = canonical_ids(ids, party=channel.party, dedupe=dedupe), None
    except DataError as exc:
        canon, problem = _NO_IDS, exc
    result = (_Guest if role == "guest" else _Host)(*setup).run(canon, problem, salt_bytes)
    result.partition_rows = partition_rows
    return result


_NO_IDS = CanonicalIds([], np.empty(0, dtype=np.int64))


def _read_partitioned_ids(compute: Compute, workers: int | None, table: TablePartitions,
                          progress: Progress) -> tuple[list[str], list[int]]:
    """The file's ids, read and canonicalised by the backend's tasks per partition, and each partition's count.

    For RSA, whose work on the ids cannot start where they are read: which side signs (and so what is computed
    from the ids) is known only after the handshake's counts, and the client hashes its ids twice, before
    blinding and after unblinding, in its own shuffled order. So this process holds the ids (not the table's
    other columns)."""
    with compute.pool(table.size_hint, workers) as pool:
        pieces = [future.result() for future in map_partitions(pool, read_ids, (table.id_column,), table.parts)]
    progress("read own set", 1.0)
    return [value for piece in pieces for value in piece], [len(piece) for piece in pieces]


class _Party:
    def __init__(self, channel: Channel, method: str, guest: str, hosts: list[str], workers: int | None,
                 compute: Compute, progress: Progress, max_peer_ratio: float | None):
        self.channel = channel
        self.method = method
        self.guest = guest
        self.hosts = hosts
        self.workers = workers
        self.compute = compute
        self.progress = progress
        self.max_peer_ratio = max_peer_ratio

    def _unbalanced(self, peer: str, peer_count: int, own_count: int) -> DataError | None:
        """Why this pair stops, if one side holds more than ``max_peer_ratio`` times the other's ids: each side
        learns which of its own ids the other holds, so a side trying every id it can think of would learn
        which are the other's customers."""
        sides = sorted([(peer, peer_count), (self.channel.party, own_count)], key=lambda side: side[1])
        (small, fewer), (large, more) = sides
        if self.max_peer_ratio is None or more <= self.max_peer_ratio * max(fewer, 1):
            return None
        return DataError(f"intersection of job {self.channel.job!r} refused: {large!r} brings {more:,} ids against "
                         f"{fewer:,} at {small!r}, more than the job's max_peer_ratio ({self.max_peer_ratio:g}) times "
                         "as many; a party with far more ids than its peer may be trying ids to learn which it holds")

    def _max_ids(self) -> int:
        """The largest set a peer may announce: KKRT holds the whole peer set in memory at once."""
        return kkrt.MAX_IDS if self.method == "kkrt" else MAX_IDS

    def _pool(self, records: int) -> Pool:
        return self.compute.pool(records, self.workers)

    def _submit_ids(self, pool: Pool, fn: Callable[..., Any], args: tuple, ids: list[str]) -> list[Future]:
        """``fn(*args, ids_batch)`` for even batches of ``ids``: every worker gets the same share, and
        several batches each, so the peer can start on the first while we work on the last."""
        batches = split_evenly(len(ids), BATCHES_PER_WORKER * pool.workers, MAX_CHUNK_RECORDS)
        return map_partitions(pool, fn, args, [ids[start:stop] for start, stop in batches])

    def _send_batches(self, to: list[str], tag: str, batches: Iterable[bytes], total: int, stage: str) -> None:
        """Send each batch as soon as it is ready, so the peer starts on it while we work on the next."""
        for done, batch in enumerate(batches, 1):
            self.channel.broadcast(to, tag, batch)
            self.progress(stage, done / total)

    def _own(self, futures: list[Future], tag: str) -> Iterable[bytes]:
        """Results of batches over our own ids (a failure there is a bug, reported under our name)."""
        return iter_results(futures, peer=self.channel.party, tag=tag)

    def _rsa_serve(self, pool: Pool, key: rsa_blind.RsaPrivateKey, digests: list[Future], client: str, client_count: int) -> None:
        """Signing side: publish the key and the digests of our signed set, then sign the client's blinded hashes."""
        self.channel.send(client, TAG_RSA_KEY, key.public.to_wire())
        self._send_batches([client], TAG_RSA_DIGESTS, self._own(digests, TAG_RSA_DIGESTS), len(digests), "sign own set")
        chunks = recv_records(self.channel, client, TAG_RSA_BLINDED, client_count, key.public.byte_length)
        signing = [pool.submit(rsa_blind.sign_blinded, key, chunk) for chunk in chunks]
        signed = iter_results(signing, peer=client, tag=TAG_RSA_BLINDED)
        self._send_batches([client], TAG_RSA_SIGNED, signed, len(signing), "sign peer set")

    def _rsa_query(self, pool: Pool, server: str, server_count: int, salt: bytes, shuffled: list[str]) -> _Pairing:
        """Client side: have our hashes signed blindly, unblind, and match digests with the server's."""
        try:
            public = rsa_blind.RsaPublicKey.from_wire(self.channel.recv(server, TAG_RSA_KEY))
        except ValueError as exc:
            raise ProtocolError(f"bad RSA public key: {exc}", peer=server, tag=TAG_RSA_KEY) from None
        width = public.byte_length
        blinding = self._submit_ids(pool, rsa_blind.blind_ids, (public, salt), shuffled)
        unblinders = []
        for blinded, unblinder in self._own(blinding, TAG_RSA_BLINDED):
            self.channel.send(server, TAG_RSA_BLINDED, blinded)
            unblinders.append(unblinder)
        server_digests = b"".join(recv_records(self.channel, server, TAG_RSA_DIGESTS, server_count, rsa_blind.DIGEST_BYTES))
        signed = b"".join(recv_records(self.channel, server, TAG_RSA_SIGNED, len(shuffled), width))
        unblinding, start = [], 0
        for unblinder in unblinders:  # re-cut the signatures along our own batches
            stop = start + len(unblinder) // width
            pool_args = (public, salt, shuffled[start:stop], signed[start * width : stop * width], unblinder)
            unblinding.append(pool.submit(rsa_blind.unblind, *pool_args))
            start = stop
        unblinded = b"".join(iter_results(unblinding, peer=server, tag=TAG_RSA_SIGNED))
        index = index_records(server_digests, rsa_blind.DIGEST_BYTES, peer=server, tag=TAG_RSA_DIGESTS)
        matches = _match(split_records(unblinded, rsa_blind.DIGEST_BYTES), index, peer=server, tag=TAG_RSA_DIGESTS)
        return _Pairing.from_matches(matches, unblinded, rsa_blind.DIGEST_BYTES)


class _Guest(_Party):
    _signing: tuple[rsa_blind.RsaPrivateKey, list[Future]] | None = None  # when the guest signs for RSA

    def run(self, canon: CanonicalIds, problem: DataError | None, salt_bytes: int) -> PsiResult:
        salt = secrets.token_bytes(salt_bytes)
        counts = self._handshake(len(canon), problem, salt)
        order = _secret_permutation(len(canon))
        shuffled = [canon.values[i] for i in order]
        if self.method == "kkrt":
            pairings = self._kkrt(salt, shuffled, counts)
        else:
            with self._pool(len(canon) + sum(counts.values())) as pool:
                if self.method == "ecdh":
                    pairings = self._ecdh(pool, salt, shuffled, counts)
                else:
                    pairings = {host: self._rsa(pool, salt, shuffled, host, counts[host]) for host in self.hosts}
        return self._finish(pairings, canon.rows[order])

    def _finish(self, pairings: dict[str, _Pairing], shuffled_rows: np.ndarray) -> PsiResult:
        """Tell each host its rows of the final set in the agreed order; our own rows in it (``shuffled_rows``:
        our row of each position we sent)."""
        shared = functools.reduce(np.intersect1d, (pairing.positions for pairing in pairings.values()))
        agreed = shared[np.argsort(pairings[self.hosts[0]].order_keys[shared], kind="stable")]
        for host in self.hosts:
            refs = np.full(len(shuffled_rows), -1, dtype=np.int64)
            refs[pairings[host].positions] = pairings[host].refs
            self.channel.send(host, TAG_RESULT, encode_indices(refs[agreed]))
        self.progress("done", 1.0)
        positions = shuffled_rows[agreed]
        return PsiResult(positions=positions, size=len(positions))

    def _handshake(self, count: int, problem: DataError | None, salt: bytes) -> dict[str, int]:
        hello = {"version": PROTOCOL_VERSION, "abort": True} if problem else {"version": PROTOCOL_VERSION, "method": self.method, "salt": salt, "count": count}
        self.channel.broadcast(self.hosts, TAG_HELLO, hello)
        if problem:
            raise problem
        counts = {host: self._reply(host) for host in self.hosts}
        refused = [host for host, host_count in counts.items() if host_count is None]
        unbalanced = [why for host, host_count in counts.items()
                      if host_count is not None and (why := self._unbalanced(host, host_count, count))]
        self.channel.broadcast(self.hosts, TAG_START, {"go": not refused and not unbalanced})
        if refused:
            raise DataError(f"intersection of job {self.channel.job!r} stopped: host(s) {refused} could not take part (see their logs)")
        if unbalanced:
            raise unbalanced[0]
        self.progress("handshake", 1.0)
        return counts

    def _reply(self, host: str) -> int | None:
        reply = self.channel.recv(host, TAG_REPLY)
        if isinstance(reply, dict) and reply == {"abort": True}:
            return None
        return expect_count(expect_map(reply, {"count"}, peer=host, tag=TAG_REPLY)["count"], self._max_ids(), peer=host, tag=TAG_REPLY)

    def _ecdh(self, pool: Pool, salt: bytes, shuffled: list[str], counts: dict[str, int]) -> dict[str, _Pairing]:
        key, unblinding = ecdh.new_key_with_inverse()
        own = self._submit_ids(pool, ecdh.blind_ids, (key, salt), shuffled)
        self._send_batches(self.hosts, TAG_GUEST_POINTS, self._own(own, TAG_GUEST_POINTS), len(own), "blind own set")
        return self._ecdh_pairs(pool, key, unblinding, counts, len(shuffled))

    def _ecdh_pairs(self, pool: Pool, key: bytes, unblinding: bytes, counts: dict[str, int],
                    own_count: int) -> dict[str, _Pairing]:
        pairings = {}
        for done, host in enumerate(self.hosts, 1):
            pairings[host] = self._ecdh_pair(pool, key, unblinding, host, counts[host], own_count)
            self.progress("match", done / len(self.hosts))
        return pairings

    def _ecdh_pair(self, pool: Pool, key: bytes, unblinding: bytes, host: str, host_count: int, own_count: int) -> _Pairing:
        """Compare with one host. The host sent its points ``H(y)^b`` and ours back as ``H(x)^(ab)``.
        Either we strip our key from ours (giving ``H(x)^b``) or add it to theirs (giving ``H(y)^(ab)``):
        the same messages either way, so we do whichever means fewer points to raise."""
        width = ecdh.POINT_BYTES
        theirs = recv_records(self.channel, host, TAG_HOST_POINTS, host_count, width)
        strip_ours = own_count <= host_count
        if strip_ours:
            their_values = b"".join(theirs)  # only compared as bytes, never multiplied: a bogus point matches nothing
        else:
            raised = [pool.submit(ecdh.blind_points, key, chunk) for chunk in theirs]
            their_values = b"".join(iter_results(raised, peer=host, tag=TAG_HOST_POINTS))
        index = index_records(their_values, width, peer=host, tag=TAG_HOST_POINTS)
        ours_back, unblinded = [], []
        for chunk in recv_records(self.channel, host, TAG_GUEST_POINTS_BACK, own_count, width):
            ours_back.append(chunk)
            if strip_ours:  # start on each chunk as it arrives, while the host works on the next
                unblinded.append(pool.submit(ecdh.blind_points, unblinding, chunk))
        if strip_ours:
            our_values = b"".join(iter_results(unblinded, peer=host, tag=TAG_GUEST_POINTS_BACK))
        else:
            our_values = b"".join(ours_back)
        refs = _match(split_records(our_values, width), index, peer=host, tag=TAG_GUEST_POINTS_BACK)
        return _Pairing.from_matches(refs, b"".join(ours_back), width)

    def _kkrt(self, salt: bytes, shuffled: list[str], counts: dict[str, int]) -> dict[str, _Pairing]:
        """One cuckoo table for the job, then one OPRF run per host (see :mod:`isthmus.protocols.kkrt.psi`)."""
        return self._kkrt_pairs(kkrt.GuestTable(salt, kkrt.digests(salt, shuffled)), counts)

    def _kkrt_pairs(self, table: kkrt.GuestTable, counts: dict[str, int]) -> dict[str, _Pairing]:
        self.progress("hash own set", 1.0)
        pairings = {}
        for done, host in enumerate(self.hosts, 1):
            pairings[host] = _Pairing(*table.pair(self.channel, host, counts[host]))
            self.progress("match", done / len(self.hosts))
        return pairings

    def _rsa(self, pool: Pool, salt: bytes, shuffled: list[str], host: str, host_count: int) -> _Pairing:
        if _client_is_guest(len(shuffled), host_count):
            return self._rsa_query(pool, host, host_count, salt, shuffled)
        if self._signing is None:  # one key and one signed set per job, whatever the number of hosts
            key = rsa_blind.RsaPrivateKey.generate()
            self._signing = key, self._submit_ids(pool, rsa_blind.sign_ids, (key, salt), shuffled)
        key, digests = self._signing
        self._rsa_serve(pool, key, digests, host, host_count)
        found = decode_indices(self.channel.recv(host, TAG_RSA_MATCHES), bound=len(shuffled), max_count=min(len(shuffled), host_count), peer=host, tag=TAG_RSA_MATCHES)
        own_digests = np.frombuffer(b"".join(self._own(digests, TAG_RSA_DIGESTS)), dtype=f"S{rsa_blind.DIGEST_BYTES}")
        return _Pairing(found, np.arange(len(found), dtype=np.int64), own_digests)


class _Host(_Party):
    def run(self, canon: CanonicalIds, problem: DataError | None, salt_bytes: int) -> PsiResult:
        guest_count, salt = self._hello()
        self._start(len(canon), problem, guest_count)
        order = _secret_permutation(len(canon))
        shuffled = [canon.values[i] for i in order]
        if self.method == "kkrt":
            kkrt.host_pair(self.channel, self.guest, salt, kkrt.digests(salt, shuffled), guest_count)
            refs = order
        else:
            with self._pool(len(canon) + guest_count) as pool:
                if self.method == "ecdh":
                    refs = self._ecdh(pool, salt, shuffled, guest_count, order)
                else:
                    refs = self._rsa(pool, salt, shuffled, guest_count, order)
        return self._result(canon.rows, refs, guest_count)

    def _result(self, rows: np.ndarray, refs: np.ndarray, guest_count: int) -> PsiResult:
        """The guest's final positions in what we sent, as rows of our table (``rows[refs[position]]``)."""
        result = self.channel.recv(self.guest, TAG_RESULT)
        positions = decode_indices(result, bound=len(refs), max_count=min(len(refs), guest_count), peer=self.guest, tag=TAG_RESULT)
        self.progress("done", 1.0)
        shared = rows[refs[positions]]
        return PsiResult(positions=shared, size=len(shared))

    def _hello(self) -> tuple[int, bytes]:
        try:
            return self._check_hello(self.channel.recv(self.guest, TAG_HELLO))
        except ProtocolError:
            self.channel.send(self.guest, TAG_REPLY, {"abort": True})
            raise

    def _start(self, count: int, problem: DataError | None, guest_count: int) -> None:
        """Answer the hello with our count (or an abort, raising ``problem``) and wait for the guest's go."""
        self.channel.send(self.guest, TAG_REPLY, {"abort": True} if problem else {"count": count})
        if problem:
            raise problem
        start = expect_map(self.channel.recv(self.guest, TAG_START), {"go"}, peer=self.guest, tag=TAG_START)
        if unbalanced := self._unbalanced(self.guest, guest_count, count):
            raise unbalanced  # whatever the guest says: it may not check
        if start["go"] is not True:
            raise DataError(f"intersection of job {self.channel.job!r} stopped by {self.guest!r}: another host could not take part")
        self.progress("handshake", 1.0)

    def _check_hello(self, hello: Any) -> tuple[int, bytes]:
        peer, tag = self.guest, TAG_HELLO
        if not (isinstance(hello, dict) and type(hello.get("version")) is int and hello["version"] == PROTOCOL_VERSION):
            raise ProtocolError(f"expected a hello of protocol version {PROTOCOL_VERSION}", peer=peer, tag=tag)
        if "abort" in hello:
            raise DataError(f"intersection of job {self.channel.job!r} stopped: {peer!r} could not take part (see its logs)")
        expect_map(hello, {"version", "method", "salt", "count"}, peer=peer, tag=tag)
        if not (isinstance(hello["method"], str) and hello["method"] == self.method):
            raise ProtocolError(f"guest runs method {hello['method']!r}, this party is set up for {self.method!r}", peer=peer, tag=tag)
        salt = hello["salt"]
        if not isinstance(salt, bytes) or not ecdh.MIN_SALT_BYTES <= len(salt) <= ecdh.MAX_SALT_BYTES:
            raise ProtocolError(f"salt must be {ecdh.MIN_SALT_BYTES}..{ecdh.MAX_SALT_BYTES} bytes", peer=peer, tag=tag)
        return expect_count(hello["count"], self._max_ids(), peer=peer, tag=tag), salt

    def _ecdh(self, pool: Pool, salt: bytes, shuffled: list[str], guest_count: int, order: np.ndarray) -> np.ndarray:
        key = ecdh.new_key()
        own = self._submit_ids(pool, ecdh.blind_ids, (key, salt), shuffled)
        self._ecdh_exchange(pool, key, self._own(own, TAG_HOST_POINTS), len(own), guest_count)
        return order

    def _ecdh_exchange(self, pool: Pool, key: bytes, own: Iterable[bytes], batches: int, guest_count: int) -> None:
        """Send our blinded points batch by batch, then blind the guest's points with our key and send them back."""
        self._send_batches([self.guest], TAG_HOST_POINTS, own, batches, "blind own set")
        chunks = recv_records(self.channel, self.guest, TAG_GUEST_POINTS, guest_count, ecdh.POINT_BYTES)
        reblinding = [pool.submit(ecdh.blind_points, key, chunk) for chunk in chunks]
        reblinded = iter_results(reblinding, peer=self.guest, tag=TAG_GUEST_POINTS)
        self._send_batches([self.guest], TAG_GUEST_POINTS_BACK, reblinded, len(reblinding), "blind peer set")

    def _rsa(self, pool: Pool, salt: bytes, shuffled: list[str], guest_count: int, order: np.ndarray) -> np.ndarray:
        if not _client_is_guest(guest_count, len(shuffled)):
            pairing = self._rsa_query(pool, self.guest, guest_count, salt, shuffled)
            reported = _secret_permutation(len(pairing.positions))
            self.channel.send(self.guest, TAG_RSA_MATCHES, encode_indices(pairing.refs[reported]))
            return order[pairing.positions[reported]]
        key = rsa_blind.RsaPrivateKey.generate()
        self._rsa_serve(pool, key, self._submit_ids(pool, rsa_blind.sign_ids, (key, salt), shuffled), self.guest, guest_count)
        return order


class _ReadsPartitions(_Party):
    """ECDH or KKRT with this party's ids read, canonicalised and turned into fixed-width values by the backend's
    tasks per partition of its file (:mod:`isthmus.data.partitions`): ECDH's blinded points (32 bytes) or KKRT's
    salted digests (15 bytes). The driver holds those bytes per row, never the ids. The peers see the same
    messages as from an in-memory party: the values are functions of the key, the salt and the id, as many,
    in a secret random order."""

    def __init__(self, *args: Any, table: TablePartitions, dedupe: str):
        super().__init__(*args)
        self.table, self.dedupe = table, dedupe

    def _read(self, pool: Pool, salt: bytes, key: bytes) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Every row's value (file order), the rows of the first of each id, and the partitions' row counts.
        Equal values are equal canonical ids (neither hash collides in practice), so dropping repeated values
        is :func:`canonical_ids`' duplicate rule."""
        if self.method == "ecdh":
            task, args, width, stage = blind_partition, (key, salt), ecdh.POINT_BYTES, "read and blind own set"
        else:
            task, args, width, stage = digest_partition, (salt,), kkrt.DIGEST_BYTES, "read and hash own set"
        futures = map_partitions(pool, task, (*args, self.table.id_column), self.table.parts)
        pieces = [future.result() for future in futures]
        self.progress(stage, 1.0)
        values = np.frombuffer(b"".join(pieces), dtype=f"S{width}")
        rows = unique_rows(values, party=self.channel.party, dedupe=self.dedupe)
        return values, rows, [len(piece) // width for piece in pieces]

    def _batches(self, pool: Pool, shuffled: np.ndarray) -> tuple[int, Iterator[bytes]]:
        """Our shuffled points cut as an in-memory party cuts them: how many batches, and the batches."""
        cuts = split_evenly(len(shuffled), BATCHES_PER_WORKER * pool.workers, MAX_CHUNK_RECORDS)
        return len(cuts), (shuffled[start:stop].tobytes() for start, stop in cuts)


def _digest_matrix(values: np.ndarray) -> np.ndarray:
    """KKRT's digests as :func:`isthmus.protocols.kkrt.psi.digests` gives them: (n, 15) bytes."""
    return np.frombuffer(values.tobytes(), dtype=np.uint8).reshape(len(values), kkrt.DIGEST_BYTES)


class _PartitionedHost(_ReadsPartitions, _Host):
    def run(self, canon: CanonicalIds, problem: DataError | None, salt_bytes: int) -> PsiResult:
        guest_count, salt = self._hello()  # the salt is the guest's: reading starts once it is here
        key = ecdh.new_key()
        with self._pool(self.table.size_hint + guest_count) as pool:
            try:
                values, rows, partition_rows = self._read(pool, salt, key)
            except DataError as exc:
                self._start(0, exc, guest_count)  # tells the guest to stop, and raises exc
            self._start(len(rows), None, guest_count)
            order = _secret_permutation(len(rows))
            shuffled = values[rows[order]]
            if self.method == "ecdh":
                batches, own = self._batches(pool, shuffled)
                self._ecdh_exchange(pool, key, own, batches, guest_count)
        if self.method == "kkrt":
            kkrt.host_pair(self.channel, self.guest, salt, _digest_matrix(shuffled), guest_count)
        result = self._result(rows, order, guest_count)
        result.partition_rows = partition_rows
        return result


class _PartitionedGuest(_ReadsPartitions, _Guest):
    def run(self, canon: CanonicalIds, problem: DataError | None, salt_bytes: int) -> PsiResult:
        salt = secrets.token_bytes(salt_bytes)  # ours: reading can start before the hosts answer
        key, unblinding = ecdh.new_key_with_inverse()
        with self._pool(self.table.size_hint) as pool:
            try:
                values, rows, partition_rows = self._read(pool, salt, key)
            except DataError as exc:
                self._handshake(0, exc, salt)  # tells the hosts to stop, and raises exc
            counts = self._handshake(len(rows), None, salt)
            order = _secret_permutation(len(rows))
            shuffled = values[rows[order]]
            if self.method == "ecdh":
                batches, own = self._batches(pool, shuffled)
                self._send_batches(self.hosts, TAG_GUEST_POINTS, own, batches, "blind own set")
                pairings = self._ecdh_pairs(pool, key, unblinding, counts, len(rows))
        if self.method == "kkrt":
            pairings = self._kkrt_pairs(kkrt.GuestTable(salt, _digest_matrix(shuffled)), counts)
        result = self._finish(pairings, rows[order])
        result.partition_rows = partition_rows
        return result


def blind_partition(key: bytes, salt: bytes, id_column: str, partition: Partition) -> bytes:
    """Task entry point: one partition's ids read, canonicalised and blinded, in file order."""
    return ecdh.blind_ids(key, salt, read_ids(id_column, partition))


def digest_partition(salt: bytes, id_column: str, partition: Partition) -> bytes:
    """Task entry point: one partition's ids read, canonicalised and digested for KKRT, in file order."""
    return kkrt.digests(salt, read_ids(id_column, partition)).tobytes()


def unique_rows(points: np.ndarray, *, party: str, dedupe: str) -> np.ndarray:
    """Rows of the first occurrence of each point, ascending. Equal blinded points are equal canonical ids
    (hashing to the curve does not collide in practice), so this is :func:`canonical_ids`' duplicate rule."""
    _, first = np.unique(points, return_index=True)
    if len(first) < len(points) and dedupe == "error":
        order = np.argsort(points, kind="stable")
        at = int(np.flatnonzero(points[order][1:] == points[order][:-1])[0])
        raise DataError(f"party {party!r}: rows {order[at]} and {order[at + 1]} hold the same id; ids must be unique "
                        "(or pass dedupe='first')")
    first.sort()
    return first.astype(np.int64)


def _match(ours: list[bytes], theirs: dict[bytes, int], *, peer: str, tag: str) -> dict[int, int]:
    """Our positions whose value the peer's set also holds, each with the peer's position of it."""
    matches = {position: theirs[value] for position, value in enumerate(ours) if value in theirs}
    if len(set(matches.values())) != len(matches):
        raise ProtocolError("two of our ids matched the same id of the peer", peer=peer, tag=tag)
    return matches


def _client_is_guest(guest_count: int, host_count: int) -> bool:
    """RSA: the larger set signs; on a tie, the host."""
    return guest_count <= host_count


def _secret_permutation(n: int) -> np.ndarray:
    """A uniformly random order drawn from the OS, so what we send reveals nothing of our row order."""
    return np.argsort(np.frombuffer(secrets.token_bytes(8 * n), dtype=np.uint64), kind="stable")


def _check_setup(channel: Channel, role: str, method: str, guest: str, hosts: list[str], salt_bytes: int, dedupe: str) -> None:
    if role not in ("guest", "host"):
        raise ConfigError(f"PSI role must be 'guest' or 'host', not {role!r}")
    if method not in METHODS:
        raise ConfigError(f"PSI method must be one of {METHODS}, not {method!r}")
    if not hosts or len(set(hosts)) != len(hosts) or guest in hosts:
        raise ConfigError(f"PSI needs distinct hosts other than the guest {guest!r}, got {hosts}")
    me = channel.party
    if (role == "guest" and me != guest) or (role == "host" and me not in hosts):
        raise ConfigError(f"party {me!r} cannot play {role!r} with guest {guest!r} and hosts {hosts}")
    if not ecdh.MIN_SALT_BYTES <= salt_bytes <= ecdh.MAX_SALT_BYTES:
        raise ConfigError(f"salt_bytes must be in [{ecdh.MIN_SALT_BYTES}, {ecdh.MAX_SALT_BYTES}], not {salt_bytes}")
    if dedupe not in DEDUPE_MODES:
        raise ConfigError(f"dedupe must be one of {DEDUPE_MODES}, not {dedupe!r}")


def _ignore_progress(stage: str, fraction: float) -> None:
    """The default progress callback."""
