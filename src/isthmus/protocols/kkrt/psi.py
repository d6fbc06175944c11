"""KKRT16 PSI between the guest (OPRF receiver) and one host (OPRF sender), over a Channel (section 5).

Per job the guest digests its ids (salted BLAKE2b, 15 bytes) and builds one cuckoo table, used with
every host. Per host:

1. guest -> host ``setup``: the base-OT sender's point and the cuckoo key;
   host -> guest ``base``: the base-OT receiver's 512 points (:mod:`.base_ot`).
2. guest -> host ``u``: the extension's column matrix, in chunks of ``CHUNK_ROWS`` rows; the host
   derives its rows ``q_j`` (:mod:`.ot_extension`). The bin count follows from the guest's id count
   agreed in the handshake, so the host knows exactly how many bytes each chunk must hold.
3. host -> guest ``values``: for each of its ids, in its secretly shuffled order, the OPRF of
   ``digest || i`` at its candidate bin under hash function ``i``, for ``i = 0, 1, 2`` (48 bytes).
4. The guest compares each of its ids with the host values of the hash function that placed it.

The guest learns which of its ids the host holds and where they sit in the host's shuffled list (as
with ECDH); the other values are pseudo-random to it. The host learns nothing from the ``u`` columns
(they are one-time-padded by PRG output it cannot predict) and receives only the final positions.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator, Sequence

import numpy as np

from isthmus.errors import ProtocolError
from isthmus.protocols.kkrt import base_ot, cuckoo, ot_extension
from isthmus.protocols.kkrt.ot_extension import OUTPUT_BYTES, WIDTH
from isthmus.protocols.psi_wire import MAX_CHUNK_RECORDS, all_distinct, recv_records
from isthmus.transport.channel import Channel

TAG_SETUP = "psi/kkrt/setup"
TAG_BASE = "psi/kkrt/base-ot"
TAG_COLUMNS = "psi/kkrt/columns"
TAG_VALUES = "psi/kkrt/values"
CHUNK_ROWS = 32_768  # bins per column message: 2 MiB
DIGEST_BYTES = 15  # plus one byte naming the hash function: one AES block of code input
CUCKOO_KEY_BYTES = 16
CUCKOO_ATTEMPTS = 8
RECORD_BYTES = cuckoo.HASHES * OUTPUT_BYTES
MAX_IDS = 1 << 25  # a larger announced set is refused: the host holds 81 bytes per guest id, the guest 48 per host id
_PERSON = b"isthmus-kkrt-id"


def digests(salt: bytes, ids: Sequence[str]) -> np.ndarray:
    """(n, 15) salted BLAKE2b digests of the ids: fixed-width inputs for the hashing and the code.
    The job's salt enters through BLAKE2b's 16-byte salt parameter, not its key: the salt is no
    secret, and a key costs a second compression per id (measured 0.86 s against 0.51 s per 1M ids)."""
    job = hashlib.blake2b(salt, digest_size=16, person=_PERSON).digest()
    data = b"".join([hashlib.blake2b(i.encode(), digest_size=DIGEST_BYTES, salt=job, person=_PERSON).digest() for i in ids])
    return np.frombuffer(data, dtype=np.uint8).reshape(len(ids), DIGEST_BYTES)


def code_inputs(ids: np.ndarray, functions: np.ndarray) -> np.ndarray:
    """(n, 16) inputs ``digest || i``: an id placed by hash function ``i`` is a distinct OPRF input per ``i``."""
    out = np.empty((len(ids), 16), dtype=np.uint8)
    out[:, :DIGEST_BYTES] = ids
    out[:, DIGEST_BYTES] = functions
    return out


def _chunks(bins: int) -> Iterator[tuple[int, int]]:
    for start in range(0, bins, CHUNK_ROWS):
        yield start, min(start + CHUNK_ROWS, bins)


class GuestTable:
    """The guest's side, built once per job: its ids in cuckoo bins and the codeword of every bin."""

    def __init__(self, salt: bytes, own: np.ndarray):
        """``own``: the guest's :func:`digests`, in the order it lists its ids (a party reading its ids per
        partition computes them where it reads them and holds only these 15 bytes per id)."""
        self.count = len(own)
        self.bins = cuckoo.bin_count(self.count)
        for _ in range(CUCKOO_ATTEMPTS):
            self.key = secrets.token_bytes(CUCKOO_KEY_BYTES)
            choices = cuckoo.candidates(self.key, own, self.bins)
            try:
                _, self.used = cuckoo.build(choices, self.bins)
                break
            except cuckoo.CuckooFailure:
                continue
        else:
            raise cuckoo.CuckooFailure(f"no cuckoo table for {self.count} ids in {CUCKOO_ATTEMPTS} attempts")
        self.bin_of = choices[np.arange(self.count), self.used]  # the bin of each id
        inputs = np.frombuffer(secrets.token_bytes(16 * self.bins), dtype=np.uint8).reshape(self.bins, 16).copy()  # empty bins: random
        inputs[self.bin_of] = code_inputs(own, self.used)
        self.codewords = ot_extension.PseudoRandomCode(salt).encode(inputs)

    def pair(self, channel: Channel, host: str, host_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run steps 1-4 with one host: (our positions it holds, its position of each, our OPRF values)."""
        sender = base_ot.Sender()
        channel.send(host, TAG_SETUP, {"point": sender.message(), "key": self.key})
        try:
            pairs = sender.keys(channel.recv(host, TAG_BASE), WIDTH)
        except ValueError as exc:
            raise ProtocolError(f"bad base-OT reply: {exc}", peer=host, tag=TAG_BASE) from None
        receiver = ot_extension.Receiver(pairs)
        outputs = np.empty((self.bins, OUTPUT_BYTES), dtype=np.uint8)
        occupied = np.zeros(self.bins, dtype=bool)
        occupied[self.bin_of] = True
        for start, stop in _chunks(self.bins):
            columns, rows = receiver.extend(start, self.codewords[start:stop])
            channel.send(host, TAG_COLUMNS, columns)
            used = np.flatnonzero(occupied[start:stop])  # empty bins' outputs are never compared
            outputs[start + used] = ot_extension.hash_rows(rows[used], start + used)
        ours = outputs[self.bin_of].view(f"S{OUTPUT_BYTES}").ravel()
        theirs = np.frombuffer(b"".join(recv_records(channel, host, TAG_VALUES, host_count, RECORD_BYTES)), dtype=np.uint8)
        positions, refs = _match(ours, self.used, theirs.reshape(host_count, cuckoo.HASHES, OUTPUT_BYTES), host)
        return positions, refs, ours


def _match(ours: np.ndarray, used: np.ndarray, theirs: np.ndarray, host: str) -> tuple[np.ndarray, np.ndarray]:
    """Our ids whose value under the hash function that placed them is among the host's values for
    that function, with the host's position of each; repeated host values break the protocol."""
    positions, refs = [], []
    for function in range(cuckoo.HASHES):
        values = np.ascontiguousarray(theirs[:, function]).view(f"S{OUTPUT_BYTES}").ravel()
        order = np.argsort(values, kind="stable")
        ordered = values[order]
        if len(ordered) > 1 and (ordered[1:] == ordered[:-1]).any():
            raise ProtocolError("repeated records in a set", peer=host, tag=TAG_VALUES)
        mine = np.flatnonzero(used == function)
        if not len(ordered) or not len(mine):
            continue
        slot = np.minimum(np.searchsorted(ordered, ours[mine]), len(ordered) - 1)
        hit = ordered[slot] == ours[mine]
        positions.append(mine[hit])
        refs.append(order[slot[hit]])
    positions_all = np.concatenate(positions) if positions else np.empty(0, dtype=np.int64)
    refs_all = np.concatenate(refs).astype(np.int64) if refs else np.empty(0, dtype=np.int64)
    if not all_distinct(refs_all):
        raise ProtocolError("two of our ids matched the same id of the peer", peer=host, tag=TAG_VALUES)
    return positions_all.astype(np.int64), refs_all


def host_pair(channel: Channel, guest: str, salt: bytes, own: np.ndarray, guest_count: int) -> None:
    """The host's side of steps 1-3, for its ids' :func:`digests` in the order it sends them."""
    setup = channel.recv(guest, TAG_SETUP)
    if not (isinstance(setup, dict) and set(setup) == {"point", "key"} and isinstance(setup["key"], bytes) and len(setup["key"]) == CUCKOO_KEY_BYTES):
        raise ProtocolError(f"expected a map with keys ['key', 'point'], the key of {CUCKOO_KEY_BYTES} bytes", peer=guest, tag=TAG_SETUP)
    choices = np.unpackbits(np.frombuffer(secrets.token_bytes(WIDTH // 8), dtype=np.uint8), bitorder="little")  # s
    try:
        reply, keys = base_ot.receive(setup["point"], choices)
    except ValueError as exc:
        raise ProtocolError(f"bad base-OT point: {exc}", peer=guest, tag=TAG_SETUP) from None
    channel.send(guest, TAG_BASE, reply)
    sender = ot_extension.Sender(choices, keys)
    bins = cuckoo.bin_count(guest_count)
    rows = np.empty((bins, ot_extension.ROW_BYTES), dtype=np.uint8)
    for start, stop in _chunks(bins):
        columns = channel.recv(guest, TAG_COLUMNS)
        if not isinstance(columns, bytes) or len(columns) != WIDTH * (stop - start) // 8:
            raise ProtocolError(f"expected {WIDTH * (stop - start) // 8} bytes of columns for bins {start}..{stop}", peer=guest, tag=TAG_COLUMNS)
        rows[start:stop] = sender.extend(start, columns, stop - start)
    places = cuckoo.candidates(setup["key"], own, bins)
    code = ot_extension.PseudoRandomCode(salt)
    for start in range(0, len(own), MAX_CHUNK_RECORDS):
        stop = min(start + MAX_CHUNK_RECORDS, len(own))
        values = np.empty((stop - start, cuckoo.HASHES, OUTPUT_BYTES), dtype=np.uint8)
        for function in range(cuckoo.HASHES):
            where = places[start:stop, function]
            words = code.encode(code_inputs(own[start:stop], np.full(stop - start, function)))
            values[:, function] = ot_extension.hash_rows(rows[where] ^ (words & sender.secret), where)
        channel.send(guest, TAG_VALUES, values.tobytes())
