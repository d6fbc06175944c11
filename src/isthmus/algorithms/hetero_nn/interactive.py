"""The interactive layer between one host and the guest: the host's part ``z_h = alpha_h W_h``.

Protected (FATE's interactive layer): W_h never exists in one place. The guest holds W' and the host
eps (its accumulated noise), W_h = W' + eps. Per training batch of B rows, host bottom output alpha
(B x d), k interactive units:

1. host -> guest: [[alpha]] under the host's own Paillier key, and [[eps]].
2. guest -> host: [[alpha W']] masked by r uniform in Z_n (the guest keeps r).
3. host -> guest: the masked plaintexts plus alpha eps, encoded at the same exponent; the guest removes
   r and has z_h = alpha W' + alpha eps = alpha W_h, which enters its top model like any activation.
4. guest -> host: [[delta W_h^T]] = delta W'^T + delta [[eps]]^T, the gradient of the host's bottom
   output (delta = dL/dz_h, plus the guest's `label_noise` if any: the rows of each class point one way
   otherwise, so the host reads the labels), and [[alpha^T delta]] masked by r' (delta without noise).
5. host -> guest: the masked gradient plus B e / lr for fresh noise e; the host sets eps += e, the
   guest W' -= lr (gradient + e / lr): W' + eps moves by exactly -lr * gradient, while the guest sees
   the gradient only under the host's noise.

Gradients travel as sums over the batch (delta times B) so that fixed-point rounding of the small
per-row terms stays negligible.

Packing (:mod:`isthmus.crypto.signedslots`): every ciphertext holds a row of slots, so each product
by a plaintext weight acts on all its slots at once and the host decrypts up to 16 values (1024-bit
key) per decryption instead of one. [[alpha]] travels packed by column (a ciphertext per column and
group of rows), so [[alpha W']] is one product of d powers per group and unit; [[eps]] by column of
W_h, so row i of [[delta W_h^T]] is one product of k powers per chunk of d; and, for training,
[[alpha]] once more packed by row, so [[alpha^T delta]] is one product of B powers per unit and chunk.
The values are those of the unpacked protocol, exactly: only their grouping into plaintexts differs.

Plain (benchmarks only): the host sends alpha in clear, the guest holds W_h whole and returns
delta W_h^T: split learning, the price of protection measured against it.
"""

from __future__ import annotations

import math
import secrets
from abc import ABC, abstractmethod
from typing import NamedTuple

import numpy as np

from isthmus.algorithms.hetero_nn import tags
from isthmus.algorithms.hetero_nn.options import NNOptions
from isthmus.crypto import fixedpoint
from isthmus.crypto.paillier import CipherArray, Mask, PaillierPublicKey, generate_keypair
from isthmus.crypto.signedslots import SignedSlots
from isthmus.errors import EncodingOverflowError
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel

#: Fractional bits of the host's encrypted activations and noise share.
ACTIVATION_PRECISION = 24
#: Largest magnitude a decoded projection or gradient may have: beyond it a peer is corrupting training.
MAX_VALUE = 1e6


def initial_share(rng: np.random.Generator, width: int, units: int) -> np.ndarray:
    """The guest's initial W' (as torch initialises a Linear layer): the host's eps adds to it."""
    bound = 1.0 / math.sqrt(max(width, 1))
    return rng.uniform(-bound, bound, (width, units))


def initial_noise(rng: np.random.Generator, options: NNOptions, width: int) -> np.ndarray:
    """The host's initial eps: without it the guest would know W_h, hence alpha, from the first batch."""
    return rng.uniform(-options.noise, options.noise, (width, options.interactive_units))


def bounded(check: Inspect, values: np.ndarray, what: str, limit: float = MAX_VALUE) -> np.ndarray:
    if not np.isfinite(values).all() or np.abs(values).max(initial=0.0) > limit:
        check.fail(f"{what} must be finite and within +-{limit:g}")
    return values


class Layouts(NamedTuple):
    """The slot layouts of a link's packed messages, from what both parties know (key and options).

    Slots are as narrow as the values allow, since every slot saved is a decryption saved: ``values``
    holds alpha by column, eps, z and the batch-summed activation gradient (within +-MAX_VALUE, so that
    d = 32 fits two 1024-bit or one 2048-bit plaintext); ``gradient`` holds alpha by row and the weight
    gradient, on which the host's noise B e / lr comes."""

    values: SignedSlots
    gradient: SignedSlots


def link_slots(key: PaillierPublicKey, options: NNOptions) -> Layouts:
    """Both layouts of the link under the host's ``key``."""
    exponent = ACTIVATION_PRECISION + options.precision
    noise = options.batch_size * options.noise / options.interactive_learning_rate
    return Layouts(SignedSlots.for_values(key, MAX_VALUE, exponent),
                   SignedSlots.for_values(key, MAX_VALUE + noise, exponent))


def unpacked(check: Inspect, slots: SignedSlots, mask: Mask, raw: object, shape: tuple[int, int], what: str,
             limit: float = MAX_VALUE) -> np.ndarray:
    """A peer's decryption of packed values this party masked: unmasked, unpacked to ``shape`` and held to
    finite values within +-``limit``; a slot that overflowed is the peer's fault, named like any other."""
    plaintexts = mask.plaintexts(raw, peer=check.peer, tag=check.tag)
    rows, width = shape
    try:
        values = slots.decode_rows(np.array(plaintexts, dtype=object).reshape(rows, -1), width, mask.exponent)
    except EncodingOverflowError:
        check.fail(f"{what}: a packed slot overflowed")
    return bounded(check, values, what, limit)


def masked_plus(raw: list[int], slots: SignedSlots, plain: np.ndarray, exponent: int) -> list[int]:
    """Add ``plain`` (rows, width), packed at ``exponent`` fractional bits, to decrypted masked plaintexts, mod n."""
    n = int(slots.public_key.n)
    packed = slots.pack_rows(fixedpoint.to_integer_array(plain, exponent)).ravel().tolist()
    return [(m + t) % n for m, t in zip(raw, packed)]


class GuestLink(ABC):
    """The guest's end of one host's interactive layer: forward gives z_h, backward trains W_h."""

    def __init__(self, channel: Channel, host: str, options: NNOptions, width: int, weights: np.ndarray):
        self.channel, self.host, self.options = channel, host, options
        self.width, self.units = width, options.interactive_units
        self.weights = weights  # W' (protected) or W_h (plain), d x k

    # Each step is split in two so that the guest sends to every host before it waits for any.
    @abstractmethod
    def begin_forward(self, size: int) -> None:
        """Take the host's bottom output of a batch of ``size`` rows and answer it."""

    @abstractmethod
    def end_forward(self) -> np.ndarray:
        """z_h of the batch, B x k."""

    @abstractmethod
    def begin_backward(self, delta: np.ndarray, to_host: np.ndarray) -> None:
        """Send the host its gradient, formed from ``to_host`` (delta = dL/dz_h of the batch, mean loss, or
        delta plus the guest's label noise), and step W_h by delta itself."""

    @abstractmethod
    def end_backward(self) -> None:
        """Finish the step of W_h."""


class PlainGuestLink(GuestLink):
    def begin_forward(self, size: int) -> None:
        check = Inspect(self.host, tags.ACTIVATIONS)
        self._alpha = check.array(self.channel.recv(self.host, tags.ACTIVATIONS), (size, self.width),
                                  what="bottom output")
        bounded(check, self._alpha, "bottom output")

    def end_forward(self) -> np.ndarray:
        return self._alpha @ self.weights

    def begin_backward(self, delta: np.ndarray, to_host: np.ndarray) -> None:
        self.channel.send(self.host, tags.BACKWARD, to_host @ self.weights.T)
        self.weights -= self.options.interactive_learning_rate * (self._alpha.T @ delta)

    def end_backward(self) -> None:
        pass


class ProtectedGuestLink(GuestLink):
    #: The host's public key, taken from its first ciphertexts (a served model's host makes a fresh one),
    #: and the slot layouts under it.
    key: PaillierPublicKey | None = None
    slots: Layouts | None = None

    def begin_forward(self, size: int) -> None:
        check = Inspect(self.host, tags.ACTIVATIONS)
        alpha = self.channel.recv(self.host, tags.ACTIVATIONS)
        if self.key is None:
            if not isinstance(alpha, CipherArray):
                check.fail(f"expected the encrypted bottom output, got {type(alpha).__name__}")
            if alpha.public_key.bits != self.options.key_bits:
                check.fail(f"a {alpha.public_key.bits}-bit key, the job asks for {self.options.key_bits} bits")
            self.key = alpha.public_key
            self.slots = link_slots(self.key, self.options)
        groups = self.slots.values.chunks(size)
        by_column = self._host_cipher(check, alpha, (self.width, groups), "encrypted bottom output")
        shares = self.weights.T
        projected = CipherArray.concatenate(  # (groups, k): one product per group of rows and unit, SIMD over rows
            [by_column[:, g].rmatmul(shares, precision=self.options.precision) for g in range(groups)])
        masked, self._mask = projected.reshape(groups, self.units).T.ravel().masked()
        self._size = size
        self.channel.send(self.host, tags.PROJECTION, masked)

    def end_forward(self) -> np.ndarray:
        check = Inspect(self.host, tags.PROJECTION_REPLY)
        raw = self.channel.recv(self.host, tags.PROJECTION_REPLY)
        z = unpacked(check, self.slots.values, self._mask, raw, (self.units, self._size), "interactive projections")
        return z.T

    def begin_backward(self, delta: np.ndarray, to_host: np.ndarray) -> None:
        size, precision, (values, gradient) = len(delta), self.options.precision, self.slots
        chunks, row_chunks = values.chunks(self.width), gradient.chunks(self.width)
        check = Inspect(self.host, tags.NOISE_SHARE)
        message = check.mapping(self.channel.recv(self.host, tags.NOISE_SHARE), {"noise_share", "bottom_output_rows"},
                                exact=True)
        noise = self._host_cipher(check, message["noise_share"], (self.units, chunks), "encrypted noise share")
        by_row = self._host_cipher(check, message["bottom_output_rows"], (size, row_chunks), "encrypted bottom output")
        total, total_to_host = delta * size, to_host * size  # batch sums: see the module docstring
        exponent = noise.exponent + precision
        plain = values.pack_rows(fixedpoint.to_integer_array(total_to_host @ self.weights.T, exponent))
        # row i of delta W_h^T, packed: delta_i [[eps]]^T, one product per chunk of columns, plus delta_i W'^T
        activation_gradient = CipherArray.concatenate(
            [noise[:, c].rmatmul(total_to_host, precision=precision) for c in range(chunks)]).reshape(chunks, size).T
        activation_gradient = activation_gradient.ravel().plus_encoded(plain.ravel().tolist())
        weight_gradient = CipherArray.concatenate(  # row m packs (alpha^T delta)[:, m]
            [by_row[:, c].rmatmul(total.T, precision=precision) for c in range(row_chunks)]).reshape(row_chunks,
                                                                                                      self.units).T
        masked, self._mask = weight_gradient.ravel().masked()
        self._size = size
        self.channel.send(self.host, tags.BACKWARD, {"activation_gradient": activation_gradient,
                                                     "weight_gradient": masked})

    def end_backward(self) -> None:
        check = Inspect(self.host, tags.GRADIENT_REPLY)
        lr = self.options.interactive_learning_rate
        limit = MAX_VALUE + self._size * self.options.noise / lr  # the host's noise, B e / lr, comes on top
        raw = self.channel.recv(self.host, tags.GRADIENT_REPLY)
        noisy = unpacked(check, self.slots.gradient, self._mask, raw, (self.units, self.width),
                         "noisy weight gradient", limit)
        self.weights -= lr * noisy.T / self._size

    def _host_cipher(self, check: Inspect, obj, shape: tuple[int, int], what: str) -> CipherArray:
        """The host's packed ciphertexts, at the activations' exponent, as a (rows, chunks) array."""
        array = check.cipher(obj, self.key, size=shape[0] * shape[1], what=what)
        if array.exponent != ACTIVATION_PRECISION:
            check.fail(f"{what} at {array.exponent} fractional bits, expected {ACTIVATION_PRECISION}")
        return array.reshape(shape)


class HostLink:
    """The host's end: sends its bottom output (encrypted or plain) and gets back its gradient."""

    def __init__(self, channel: Channel, guest: str, options: NNOptions, width: int, noise: np.ndarray | None):
        self.channel, self.guest, self.options = channel, guest, options
        self.width, self.units = width, options.interactive_units
        self.protected = options.protection == "paillier"
        self.noise = noise  # eps, the host's share of W_h (protected only)
        self._rng = np.random.default_rng(secrets.randbits(128))  # privacy noise: not from the job's seed
        self._keys = None

    @property
    def keys(self):
        """This host's Paillier key pair, made on first use (a served model gets a fresh one)."""
        if self._keys is None:
            self._keys = generate_keypair(self.options.key_bits)
        return self._keys

    @property
    def slots(self) -> Layouts:
        return link_slots(self.keys[0], self.options)

    def forward(self, alpha: np.ndarray, *, training: bool) -> None:
        """Send the bottom output of a batch; protected, also serve the guest's masked projection."""
        if not self.protected:
            self.channel.send(self.guest, tags.ACTIVATIONS, alpha)
            return
        (public, private), (slots, gradient) = self.keys, self.slots
        # the batch's randomness in one call: big batches spread over the worker processes
        public.precompute(self.width * slots.chunks(len(alpha)) + training * (
            self.units * slots.chunks(self.width) + len(alpha) * gradient.chunks(self.width)))
        self.channel.send(self.guest, tags.ACTIVATIONS, slots.encrypt_rows(alpha.T, ACTIVATION_PRECISION).ravel())
        if training:  # what the backward step needs: eps, and alpha packed by row for alpha^T delta
            self.channel.send(self.guest, tags.NOISE_SHARE, {
                "noise_share": slots.encrypt_rows(self.noise.T, ACTIVATION_PRECISION).ravel(),
                "bottom_output_rows": gradient.encrypt_rows(alpha, ACTIVATION_PRECISION).ravel()})
        check = Inspect(self.guest, tags.PROJECTION)
        size = self.units * slots.chunks(len(alpha))
        masked = self._own(check, self.channel.recv(self.guest, tags.PROJECTION), size, "masked projections")
        raw = private.decrypt_raw(masked)
        self.channel.send(self.guest, tags.PROJECTION_REPLY, masked_plus(raw, slots, (alpha @ self.noise).T,
                                                                         masked.exponent))

    def backward(self, size: int) -> np.ndarray:
        """The gradient of the batch's bottom output (mean loss); protected, also noise the weight gradient."""
        check = Inspect(self.guest, tags.BACKWARD)
        message = self.channel.recv(self.guest, tags.BACKWARD)
        if not self.protected:
            return bounded(check, check.array(message, (size, self.width), what="bottom output gradient"),
                           "bottom output gradient")
        private, (slots, weight_slots) = self.keys[1], self.slots
        chunks = slots.chunks(self.width)
        message = check.mapping(message, {"activation_gradient", "weight_gradient"}, exact=True)
        encrypted = self._own(check, message["activation_gradient"], size * chunks, "bottom output gradient")
        try:
            gradient = slots.decrypt_rows(private, encrypted.reshape(size, chunks), self.width) / size
        except EncodingOverflowError:
            check.fail("bottom output gradient: a packed slot overflowed")
        masked = self._own(check, message["weight_gradient"], self.units * weight_slots.chunks(self.width),
                           "masked weight gradient")
        raw = private.decrypt_raw(masked)
        fresh = self._rng.uniform(-self.options.noise, self.options.noise, self.noise.shape)
        hidden = fresh * size / self.options.interactive_learning_rate
        self.channel.send(self.guest, tags.GRADIENT_REPLY, masked_plus(raw, weight_slots, hidden.T, masked.exponent))
        self.noise = self.noise + fresh
        return bounded(check, gradient, "bottom output gradient")

    def _own(self, check: Inspect, obj, size: int, what: str) -> CipherArray:
        """Ciphertexts under this host's key at the exponent the protocol produces, or a ProtocolError."""
        array = check.cipher(obj, self.keys[0], size=size, what=what)
        if array.exponent != ACTIVATION_PRECISION + self.options.precision:
            check.fail(f"{what} at {array.exponent} fractional bits, expected "
                       f"{ACTIVATION_PRECISION + self.options.precision}")
        return array
