"""The arbiter of vertical linear models: holds the private key, decrypts only masked values.

It never sees data, labels, partial predictions or unmasked gradients: each party blinds what it
sends with a uniformly random mask, so every plaintext the arbiter decrypts is uniform in Z_n (Paillier),
or statistically close to uniform and flooded (CKKS, whose decryptions leave the arbiter flooded again).

A decryption oracle is what a deviating party would want, so the arbiter limits what it decrypts:
each party's vector has the length fixed at the start (its feature count, times the classes of a
softmax model; the guest's one more, for the loss) and a batch must have enough rows for the widest
party (batches.py). It cannot see inside a ciphertext: a deviating party can still put other
ciphertexts it holds into those slots (see docs/security.md: that is the limit of the semi-honest
model).
"""

from __future__ import annotations

import numpy as np

from isthmus.errors import ProtocolError
from isthmus.algorithms.base import MAX_CLASSES
from isthmus.algorithms.hetero_linear import batches, cipher, tags
from isthmus.algorithms.hetero_linear.abort import aborting_peers
from isthmus.algorithms.hetero_linear.options import LinearOptions
from isthmus.algorithms.hetero_linear.sigmoid import serve_sigmoid
from isthmus.algorithms.hetero_linear.softmax import serve_softmax
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel

#: Largest masked vector the arbiter will decrypt in one request (gradient of one party plus loss).
MAX_DECRYPT = 1_000_000


class HeteroLinearArbiter:
    def __init__(self, config: LinearOptions | None = None):
        self.config = config or LinearOptions()
        self.rounds_served = 0

    def fit(self, channel: Channel, *, guest: str, hosts: list[str]) -> HeteroLinearArbiter:
        with aborting_peers(channel, "arbiter"):
            return self._serve(channel, guest, hosts)

    def _serve(self, channel: Channel, guest: str, hosts: list[str]) -> HeteroLinearArbiter:
        public_key, private_key = cipher.generate_keypair(self.config)
        randomness = cipher.Randomness(public_key)  # for the exact residual's fresh encryptions
        parties = [guest, *hosts]
        channel.broadcast(parties, tags.PUBLIC_KEY, public_key)
        lengths, min_rows, columns = self._start(channel, guest, parties)
        while True:
            order = Inspect(guest, tags.ARBITER_CONTROL).mapping(channel.recv(guest, tags.ARBITER_CONTROL), {"op"})
            if order["op"] == "done":
                randomness.close()
                return self
            if order["op"] == "sigmoid":
                served = serve_sigmoid(channel, guest, public_key, private_key, len(parties), min_rows, MAX_DECRYPT)
                randomness.refill(served)  # the next batch's, while the parties compute their gradients
                continue
            if order["op"] == "softmax" and columns > 1:
                served = serve_softmax(channel, guest, public_key, private_key, len(parties), columns, min_rows,
                                       MAX_DECRYPT)
                randomness.refill(served)
                continue
            if order["op"] not in ("decrypt", "decrypt-loss"):
                raise ProtocolError(f"unknown arbiter order {order['op']!r}", peer=guest, tag=tags.ARBITER_CONTROL)
            rows = order.get("rows")
            if type(rows) is not int or rows < min_rows:
                raise ProtocolError(f"refusing to decrypt the gradients or loss of a batch of {rows!r} rows: at "
                                    f"least {min_rows} are needed", peer=guest, tag=tags.ARBITER_CONTROL)
            if order["op"] == "decrypt-loss":  # the validation loss: the guest's one value, no gradient
                self._decrypt(channel, guest, public_key, private_key, 1)
                continue
            waiting = list(parties)
            while waiting:  # in arrival order: parties finish their gradients at different times
                party, masked = channel.recv_any(waiting, tags.MASKED)
                waiting.remove(party)
                self._decrypt(channel, party, public_key, private_key, lengths[party], masked)
            self.rounds_served += 1

    @staticmethod
    def _decrypt(channel: Channel, party: str, public_key, private_key, length: int, masked=None) -> None:
        """Decrypt one party's masked vector of the ``length`` fixed for it, and send it back."""
        if masked is None:
            masked = channel.recv(party, tags.MASKED)
        masked = Inspect(party, tags.MASKED).cipher(masked, public_key, size=None)
        if len(masked) != length:
            raise ProtocolError(f"refusing to decrypt {len(masked)} values: this party's vectors have {length}, "
                                "fixed at the start", peer=party, tag=tags.MASKED)
        plain = masked if private_key is None else private_key.decrypt_raw(masked)
        channel.send(party, tags.UNMASKED_RAW, plain if isinstance(plain, np.ndarray) else list(plain))

    def _start(self, channel: Channel, guest: str, parties: list[str]) -> tuple[dict[str, int], int, int]:
        """Every party's vector length (its gradient, a column per class of a softmax model; the guest's plus
        the loss), the smallest batch, and the weight columns per model."""
        check = Inspect(guest, tags.ARBITER_CONTROL)
        order = check.mapping(channel.recv(guest, tags.ARBITER_CONTROL), {"op", "features", "columns"})
        features = batches.feature_counts(order["features"], check)
        columns = check.integer(order["columns"], 1, MAX_CLASSES, "weight columns per model")
        if order["op"] != "start" or set(features) != set(parties):
            raise ProtocolError(f"expected a start order with the feature counts of {parties}", peer=guest,
                                tag=tags.ARBITER_CONTROL)
        lengths = {party: count * columns + (party == guest) for party, count in features.items()}
        if max(lengths.values()) > MAX_DECRYPT:
            raise ProtocolError(f"refusing vectors of up to {max(lengths.values())} values", peer=guest,
                                tag=tags.ARBITER_CONTROL)
        return lengths, batches.min_batch_rows(self.config.rows_per_feature, features), columns
