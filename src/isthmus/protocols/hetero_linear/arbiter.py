"""The arbiter of hetero linear models: holds the Paillier private key, decrypts only masked values.

It never sees data, labels, partial predictions or unmasked gradients: each party blinds what it
sends with a uniformly random mask, so every plaintext the arbiter decrypts is uniform in Z_n.
"""

from __future__ import annotations

import numpy as np

from isthmus.errors import ProtocolError
from isthmus.protocols.hetero_linear import tags
from isthmus.protocols.hetero_linear.config import LinearConfig
from isthmus.protocols.hetero_linear.sigmoid import serve_sigmoid
from isthmus.protocols.validate import expect_cipher
from isthmus.transport.channel import Channel

#: Largest masked vector the arbiter will decrypt in one request (gradient of one party plus loss).
MAX_DECRYPT = 1_000_000


class HeteroLinearArbiter:
    def __init__(self, config: LinearConfig | None = None):
        self.config = config or LinearConfig()
        self.rounds_served = 0

    def fit(self, channel: Channel, *, guest: str, hosts: list[str]) -> HeteroLinearArbiter:
        if self.config.encrypt:
            from isthmus.crypto.paillier import generate_keypair

            public_key, private_key = generate_keypair(self.config.key_bits)
        else:
            public_key = private_key = None
        parties = [guest, *hosts]
        channel.broadcast(parties, tags.PUBLIC_KEY, public_key)
        while True:
            order = channel.recv(guest, tags.ARBITER_CONTROL)
            if order == "done":
                return self
            if order == "sigmoid":
                serve_sigmoid(channel, guest, public_key, private_key, MAX_DECRYPT)
                continue
            if order != "decrypt":
                raise ProtocolError(f"unknown arbiter order {order!r}", peer=guest, tag=tags.ARBITER_CONTROL)
            waiting = list(parties)
            while waiting:  # in arrival order: parties finish their gradients at different times
                party, masked = channel.recv_any(waiting, tags.MASKED)
                waiting.remove(party)
                masked = expect_cipher(masked, public_key, size=None, peer=party, tag=tags.MASKED)
                if len(masked) > MAX_DECRYPT:
                    raise ProtocolError(f"refusing to decrypt {len(masked)} values", peer=party, tag=tags.MASKED)
                plain = masked if private_key is None else private_key.decrypt_raw(masked)
                channel.send(party, tags.UNMASKED_RAW, plain if isinstance(plain, np.ndarray) else list(plain))
            self.rounds_served += 1
