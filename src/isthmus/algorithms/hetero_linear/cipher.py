"""The few homomorphic operations vertical linear models need, in one place.

In the benchmark-only plaintext mode (``encrypt: false``) the public key is ``None`` and every
"ciphertext" is a float array: the protocol code path stays the same, so the benchmark measures
exactly what encryption costs.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from isthmus.crypto.cipherarray import CipherArray
from isthmus.crypto.ckks import CkksMask, CkksPublicKey  # TenSEAL itself is imported only when CKKS is used

Encrypted = Any  # a CipherArray, or a float array in plaintext mode

#: Fractional bits of encrypted values (partial predictions, residuals).
VALUE_PRECISION = 32
#: Fractional bits of the guest's own weights in the encrypted batch loss. Not ``precision``: that one
#: is about features, and lowering it (for smaller safe batches, batches.py) should not blur the loss.
LOSS_PRECISION = 16


def generate_keypair(config) -> tuple[Any, Any]:
    """The arbiter's key pair for ``config.cipher`` (``(None, None)`` in plaintext mode)."""
    if not config.encrypt:
        return None, None
    if config.cipher == "ckks":
        from isthmus.crypto.ckks import generate_keypair as ckks_keypair

        return ckks_keypair()
    from isthmus.crypto.paillier import generate_keypair as paillier_keypair

    return paillier_keypair(config.key_bits)


def receive_public_key(channel, arbiter: str, config) -> Any:
    """The arbiter's public key, refused unless it is what the job says: nothing in plaintext mode, a
    Paillier key of at least ``key_bits`` bits, or a CKKS key of the fixed parameters."""
    from isthmus.algorithms.hetero_linear import tags
    from isthmus.crypto.keys import PaillierPublicKey
    from isthmus.errors import ProtocolError

    received = channel.recv(arbiter, tags.PUBLIC_KEY)
    if not config.encrypt:
        expected, ok = "no key (plaintext mode)", received is None
    elif config.cipher == "ckks":
        try:
            return CkksPublicKey.from_wire(received)
        except ValueError as exc:
            raise ProtocolError(str(exc), peer=arbiter, tag=tags.PUBLIC_KEY) from None
    else:
        expected = f"a Paillier public key of at least {config.key_bits} bits"
        ok = isinstance(received, PaillierPublicKey) and received.bits >= config.key_bits
    if not ok:
        raise ProtocolError(f"expected {expected}, got {type(received).__name__}", peer=arbiter, tag=tags.PUBLIC_KEY)
    return received


def encrypt(public_key: Any, values: np.ndarray) -> Encrypted:
    if public_key is None:
        return np.asarray(values, dtype=np.float64)
    if isinstance(public_key, CkksPublicKey):  # CKKS encodes at its own scale
        return public_key.encrypt(values)
    return public_key.encrypt(values, precision=VALUE_PRECISION)


class Randomness:
    """Encryptions of zero for this party's next batch, made in the background while it waits for peers.

    Why: a fresh random factor (one fixed-base power, ~22 modular products at 2048 bits) per ciphertext
    was a third of the epoch's work and sat on the critical path twice per batch: the host's partial
    predictions and the guest's re-randomised residual, each waited for by the other party. Drawn right
    after a party sends, they overlap the peers' work instead. The key's pool hands out every factor
    once, so what a peer receives is distributed exactly as before.
    """

    def __init__(self, public_key: Any):
        self._key = public_key
        self._thread: threading.Thread | None = None

    def refill(self, count: int) -> None:
        """Start making the factors missing for ``count`` encryptions (none in plaintext mode, none while busy)."""
        busy = self._thread is not None and self._thread.is_alive()
        if self._key is None or isinstance(self._key, CkksPublicKey) or busy:
            return  # plaintext mode, or CKKS: a fresh encryption is a few milliseconds per 4096 values
        missing = count - self._key.precomputed
        if missing > 0:
            self._thread = threading.Thread(target=self._key.precompute, args=(missing,), daemon=True,
                                            name="paillier-randomness")
            self._thread.start()

    def close(self) -> None:
        """Wait for a refill still running, so no work outlives the fit."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def sendable_as_is(value: Encrypted) -> Encrypted:
    """``value`` sent without re-randomising: the exact residual [[sigmoid]] - y, from the arbiter's fresh
    encryptions that no host ever sees (the arbiter, which made them, never sees the residual). Only
    Paillier marks ciphertexts for re-randomising."""
    return value.sendable_as_is() if isinstance(value, CipherArray) else value


def weighted_sums(matrix: np.ndarray, vector: Encrypted, precision: int) -> Encrypted:
    """``matrix @ [[vector]]`` for a plaintext (k, n) matrix: one multi-exponentiation per output."""
    if isinstance(vector, np.ndarray):
        return matrix @ vector
    return vector.rmatmul(matrix, precision=precision)


def column_gradients(x: np.ndarray, residual: Encrypted, columns: int, precision: int) -> Encrypted:
    """``x.T @ [[R]]`` for a residual of ``columns`` per row (flat, row-major): ``columns * k`` values, one
    column after the other (see :func:`as_columns`)."""
    if columns == 1:
        return weighted_sums(x.T, residual, precision)
    by_row = residual.reshape(len(x), columns)
    return concatenate([weighted_sums(x.T, by_row[:, column], precision) for column in range(columns)])


def as_columns(gradient: np.ndarray, columns: int) -> np.ndarray:
    """A decrypted :func:`column_gradients` as the (k, columns) matrix of the weights it updates."""
    return gradient.reshape(columns, -1).T


def mask(value: Encrypted) -> tuple[Encrypted, Any]:
    """Blind a ciphertext array before the arbiter decrypts it; keep the second item to unblind."""
    if isinstance(value, np.ndarray):
        return value, None
    return value.masked()


def unmask(raw: Any, blinding: Any) -> np.ndarray:
    if blinding is None:
        return np.asarray(raw, dtype=np.float64)
    return blinding.unmask(raw)


def concatenate(parts: list[Encrypted]) -> Encrypted:
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return type(parts[0]).concatenate(parts)


def decrypt_via_arbiter(channel, arbiter: str, value: Encrypted, size: int) -> np.ndarray:
    """Have the arbiter decrypt ``value`` without learning it: mask, send, receive, unmask."""
    from isthmus.errors import ProtocolError
    from isthmus.algorithms.hetero_linear import tags

    masked, blinding = mask(value)
    channel.send(arbiter, tags.MASKED, masked)
    raw = channel.recv(arbiter, tags.UNMASKED_RAW)
    if not isinstance(raw, (list, np.ndarray)) or len(raw) != size:
        raise ProtocolError(f"expected {size} decrypted values", peer=arbiter, tag=tags.UNMASKED_RAW)
    if isinstance(blinding, CkksMask):
        if not (isinstance(raw, np.ndarray) and raw.dtype == np.float64 and np.isfinite(raw).all()):
            raise ProtocolError("decrypted CKKS values must be finite float64", peer=arbiter, tag=tags.UNMASKED_RAW)
    elif blinding is not None and not all(type(v) is int for v in raw):
        raise ProtocolError("decrypted values must be integers", peer=arbiter, tag=tags.UNMASKED_RAW)
    return unmask(raw, blinding)


def residual_scale(config, batch: int) -> float:
    """Gradient = scale * X.T @ residual. With the Taylor residual of logistic models the guest sends
    4x the residual (z + 2 - 4y instead of z/4 + 1/2 - y) so that no ciphertext needs a scalar product."""
    taylor_logistic = config.task != "regression" and not config.exact_sigmoid
    return (0.25 if taylor_logistic else 1.0) / batch
