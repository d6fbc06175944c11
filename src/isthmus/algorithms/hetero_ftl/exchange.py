"""The two-key message pattern of secure FTL, the same for both parties.

Each party holds its own Paillier key pair. A party sends the terms the other needs encrypted under
its *own* key (:meth:`Link.swap_terms`); the other computes its gradient on them, still under the
sender's key, adds a uniform mask in Z_n and asks the key holder to decrypt (:meth:`Link.decrypt_both`):
the key holder sees only masked values, the asker unmasks. Both directions run at once, so each
exchange is one send and one receive per party.

In the benchmark-only ``plain`` mode the keys are ``None``, "ciphertexts" are float arrays and the
decryption is an echo: the same messages flow, so a benchmark measures what encryption costs.
Every received value is checked by :class:`~isthmus.protocols.inspect.Inspect` (names, shapes,
dtypes, key, range) before it is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from isthmus.crypto.keys import MIN_KEY_BITS
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel

Encrypted = Any  # a CipherArray, or a float array in plain mode
Shapes = Mapping[str, tuple[int, ...]]

#: Fractional bits of encrypted representations and gradients.
PRECISION = 32
KEY, TERMS, MASKED, RAW = "ftl/key", "ftl/terms", "ftl/masked", "ftl/raw"
#: Most weights a peer's network may announce (one layer of 512 units on 2,000 columns is 1M).
MAX_PARAMETERS = 5_000_000


class Link:
    """One party's end of the two-key exchange with its one peer."""

    def __init__(self, channel: Channel, peer: str, encrypted: bool, key_bits: int, parameters: int):
        """Swap public keys and weight counts (each party's gradient is decrypted by the other, which must
        know its length); ``parameters`` is this party's count."""
        self.channel, self.peer = channel, peer
        self.public_key = self.private_key = self.peer_key = None
        if encrypted:
            from isthmus.crypto.paillier import generate_keypair

            self.public_key, self.private_key = generate_keypair(key_bits)
        channel.send(peer, KEY, {"key": self.public_key, "parameters": parameters})
        check = Inspect(peer, KEY)
        hello = check.mapping(channel.recv(peer, KEY), {"key", "parameters"}, exact=True)
        self.peer_parameters = check.integer(hello["parameters"], 1, MAX_PARAMETERS, "weight count")
        self.peer_key = self._check_key(hello["key"], encrypted, key_bits)

    def _check_key(self, key: Any, encrypted: bool, key_bits: int) -> Any:
        check = Inspect(self.peer, KEY)
        if not encrypted:
            if key is not None:
                check.fail("a plain-mode job sends no key")
            return None
        from isthmus.crypto.paillier import PaillierPublicKey

        if not isinstance(key, PaillierPublicKey) or key.bits < max(MIN_KEY_BITS, key_bits):
            check.fail(f"expected a Paillier public key of at least {key_bits} bits")
        if key == self.public_key:
            check.fail("the peer's key is this party's own key")
        return key

    def encrypt(self, values: np.ndarray, key: Any) -> Encrypted:
        flat = np.ascontiguousarray(values, dtype=np.float64).ravel()
        out = flat if key is None else key.encrypt(flat, precision=PRECISION)
        return out.reshape(*np.shape(values))

    def swap_terms(self, own: Mapping[str, np.ndarray], expected: Shapes) -> dict[str, Encrypted]:
        """Send ``own`` terms encrypted under this party's key; the peer's terms under its key."""
        self.channel.send(self.peer, TERMS, {name: _flat(self.encrypt(value, self.public_key))
                                             for name, value in own.items()})
        return self._receive(TERMS, expected, self.peer_key)

    def decrypt_both(self, mine: Mapping[str, Encrypted], theirs: Shapes) -> dict[str, np.ndarray]:
        """Have the peer decrypt ``mine`` (under its key) behind masks, and decrypt its masked values in turn.

        ``theirs`` are the shapes the peer's masked values must have; returns ``mine`` decrypted.
        """
        masks = {}
        outgoing = {}
        for name, value in mine.items():
            if self.peer_key is None:
                outgoing[name] = _flat(value)
            else:
                outgoing[name], masks[name] = _flat(value).masked()
        self.channel.send(self.peer, MASKED, outgoing)
        incoming = self._receive(MASKED, theirs, self.public_key)
        self.channel.send(self.peer, RAW, {name: (_flat(value) if self.private_key is None
                                                  else self.private_key.decrypt_raw(_flat(value)))
                                           for name, value in incoming.items()})
        raw = Inspect(self.peer, RAW).mapping(self.channel.recv(self.peer, RAW), set(mine), exact=True)
        out = {}
        for name, value in mine.items():
            shape = tuple(value.shape)
            if self.peer_key is None:
                out[name] = Inspect(self.peer, RAW).array(raw[name], (int(np.prod(shape)),), what=name).reshape(shape)
            else:
                out[name] = masks[name].unmask(raw[name], peer=self.peer, tag=RAW).reshape(shape)
        return out

    def _receive(self, tag: str, expected: Shapes, key: Any) -> dict[str, Encrypted]:
        check = Inspect(self.peer, tag)
        message = check.mapping(self.channel.recv(self.peer, tag), set(expected), exact=True)
        return {name: check.cipher(message[name], key, size=int(np.prod(shape)), what=name).reshape(*shape)
                for name, shape in expected.items()}


def _flat(value: Encrypted) -> Encrypted:
    return value.reshape(-1) if isinstance(value, np.ndarray) else value.ravel()


def times(plain: np.ndarray, enc: Encrypted) -> Encrypted:
    """``plain @ [[enc]]`` for a plaintext (k, m) matrix and an encrypted (m, c) matrix -> (k, c)."""
    if isinstance(enc, np.ndarray):
        return plain @ enc
    from isthmus.crypto.paillier import CipherArray

    k, c = plain.shape[0], enc.shape[1]
    columns = [enc[:, j].rmatmul(plain, precision=PRECISION) for j in range(c)]
    return CipherArray.concatenate(columns).reshape(c, k).T
