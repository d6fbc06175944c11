"""The interactive layer between one host and the guest: the host's part ``z_h = alpha_h W_h``.

Protected (FATE's interactive layer): W_h never exists in one place. The guest holds W' and the host
eps (its accumulated noise), W_h = W' + eps. Per training batch of B rows, host bottom output alpha
(B x d), k interactive units:

1. host -> guest: [[alpha]] under the host's own Paillier key, and [[eps]].
2. guest -> host: [[alpha W']] masked by r uniform in Z_n (the guest keeps r).
3. host -> guest: the masked plaintexts plus alpha eps, encoded at the same exponent; the guest removes
   r and has z_h = alpha W' + alpha eps = alpha W_h, which enters its top model like any activation.
4. guest -> host: [[delta W_h^T]] = delta W'^T + delta [[eps]]^T, the gradient of the host's bottom
   output (delta = dL/dz_h), and [[alpha^T delta]] masked by r'.
5. host -> guest: the masked gradient plus B e / lr for fresh noise e; the host sets eps += e, the
   guest W' -= lr (gradient + e / lr): W' + eps moves by exactly -lr * gradient, while the guest sees
   the gradient only under the host's noise.

Gradients travel as sums over the batch (delta times B) so that fixed-point rounding of the small
per-row terms stays negligible. Plain (benchmarks only): the host sends alpha in clear, the guest
holds W_h whole and returns delta W_h^T: split learning, the price of protection measured against it.
"""

from __future__ import annotations

import math
import secrets
from abc import ABC, abstractmethod

import numpy as np

from isthmus.algorithms.hetero_nn import tags
from isthmus.algorithms.hetero_nn.options import NNOptions
from isthmus.crypto import fixedpoint
from isthmus.crypto.paillier import CipherArray, Mask, PaillierPublicKey, generate_keypair
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


def unmasked(check: Inspect, mask: Mask, raw: object, what: str, limit: float = MAX_VALUE) -> np.ndarray:
    """A peer's decryption of values this party masked, unmasked and held to finite values within
    +-``limit``; a value beyond float64 is the peer's fault, named like any other."""
    try:
        values = mask.unmask(raw, peer=check.peer, tag=check.tag)
    except EncodingOverflowError:
        check.fail(f"{what} beyond the float64 range")
    return bounded(check, values, what, limit)


def masked_plus(raw: list[int], plain: np.ndarray, exponent: int, n: int) -> list[int]:
    """Add ``plain`` (fixed point at ``exponent``) to decrypted masked plaintexts, modulo n."""
    return [(m + t) % n for m, t in zip(raw, fixedpoint.to_integers(plain, exponent))]


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
    def begin_backward(self, delta: np.ndarray) -> None:
        """Send the host its gradient, given delta = dL/dz_h (mean loss) of the batch."""

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

    def begin_backward(self, delta: np.ndarray) -> None:
        self.channel.send(self.host, tags.BACKWARD, delta @ self.weights.T)
        self.weights -= self.options.interactive_learning_rate * (self._alpha.T @ delta)

    def end_backward(self) -> None:
        pass


class ProtectedGuestLink(GuestLink):
    #: The host's public key, taken from its first ciphertexts (a served model's host makes a fresh one).
    key: PaillierPublicKey | None = None

    def begin_forward(self, size: int) -> None:
        check = Inspect(self.host, tags.ACTIVATIONS)
        alpha = self.channel.recv(self.host, tags.ACTIVATIONS)
        if self.key is None:
            if not isinstance(alpha, CipherArray):
                check.fail(f"expected the encrypted bottom output, got {type(alpha).__name__}")
            if alpha.public_key.bits != self.options.key_bits:
                check.fail(f"a {alpha.public_key.bits}-bit key, the job asks for {self.options.key_bits} bits")
            self.key = alpha.public_key
        alpha = check.cipher(alpha, self.key, size=size * self.width, what="encrypted bottom output")
        if alpha.exponent != ACTIVATION_PRECISION:
            check.fail(f"encrypted bottom output at {alpha.exponent} fractional bits, expected {ACTIVATION_PRECISION}")
        self._alpha = alpha.reshape(size, self.width)
        shares = self.weights.T
        projected = CipherArray.concatenate(
            [self._alpha[i].rmatmul(shares, precision=self.options.precision) for i in range(size)])
        masked, self._mask = projected.masked()
        self.channel.send(self.host, tags.PROJECTION, masked)

    def end_forward(self) -> np.ndarray:
        check = Inspect(self.host, tags.PROJECTION_REPLY)
        z = unmasked(check, self._mask, self.channel.recv(self.host, tags.PROJECTION_REPLY), "interactive projections")
        return z.reshape(-1, self.units)

    def begin_backward(self, delta: np.ndarray) -> None:
        size, precision = len(delta), self.options.precision
        check = Inspect(self.host, tags.NOISE_SHARE)
        noise = check.cipher(self.channel.recv(self.host, tags.NOISE_SHARE), self.key, size=self.width * self.units,
                             what="encrypted noise share").reshape(self.width, self.units)
        total = delta * size  # batch sums: see the module docstring
        plain = total @ self.weights.T  # delta W'^T, B x d
        # column j of delta W_h^T: delta [[eps_j]] + delta W'_j; sent column-major (d x B)
        activation_gradient = CipherArray.concatenate(
            [noise[j].rmatmul(total, precision=precision) + plain[:, j] for j in range(self.width)])
        weight_gradient = CipherArray.concatenate(
            [self._alpha[:, j].rmatmul(total.T, precision=precision) for j in range(self.width)])
        masked, self._mask = weight_gradient.masked()
        self._size = size
        self.channel.send(self.host, tags.BACKWARD, {"activation_gradient": activation_gradient,
                                                     "weight_gradient": masked})

    def end_backward(self) -> None:
        check = Inspect(self.host, tags.GRADIENT_REPLY)
        lr = self.options.interactive_learning_rate
        limit = MAX_VALUE + self._size * self.options.noise / lr  # the host's noise, B e / lr, comes on top
        noisy = unmasked(check, self._mask, self.channel.recv(self.host, tags.GRADIENT_REPLY), "noisy weight gradient",
                         limit)
        self.weights -= lr * noisy.reshape(self.width, self.units) / self._size


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

    def forward(self, alpha: np.ndarray, *, training: bool) -> None:
        """Send the bottom output of a batch; protected, also serve the guest's masked projection."""
        if not self.protected:
            self.channel.send(self.guest, tags.ACTIVATIONS, alpha)
            return
        public, private = self.keys
        self.channel.send(self.guest, tags.ACTIVATIONS, public.encrypt(alpha.ravel(), precision=ACTIVATION_PRECISION))
        if training:
            self.channel.send(self.guest, tags.NOISE_SHARE, public.encrypt(self.noise.ravel(), ACTIVATION_PRECISION))
        check = Inspect(self.guest, tags.PROJECTION)
        masked = self._own(check, self.channel.recv(self.guest, tags.PROJECTION), len(alpha) * self.units,
                           "masked projections")
        raw = private.decrypt_raw(masked)
        self.channel.send(self.guest, tags.PROJECTION_REPLY,
                          masked_plus(raw, alpha @ self.noise, masked.exponent, int(public.n)))

    def backward(self, size: int) -> np.ndarray:
        """The gradient of the batch's bottom output (mean loss); protected, also noise the weight gradient."""
        check = Inspect(self.guest, tags.BACKWARD)
        message = self.channel.recv(self.guest, tags.BACKWARD)
        if not self.protected:
            return bounded(check, check.array(message, (size, self.width), what="bottom output gradient"),
                           "bottom output gradient")
        public, private = self.keys
        message = check.mapping(message, {"activation_gradient", "weight_gradient"}, exact=True)
        encrypted = self._own(check, message["activation_gradient"], size * self.width, "bottom output gradient")
        try:
            gradient = private.decrypt(encrypted).reshape(self.width, size).T / size
        except EncodingOverflowError:
            check.fail("bottom output gradient beyond the float64 range")
        masked = self._own(check, message["weight_gradient"], self.width * self.units, "masked weight gradient")
        raw = private.decrypt_raw(masked)
        fresh = self._rng.uniform(-self.options.noise, self.options.noise, self.noise.shape)
        hidden = fresh * size / self.options.interactive_learning_rate
        self.channel.send(self.guest, tags.GRADIENT_REPLY, masked_plus(raw, hidden, masked.exponent, int(public.n)))
        self.noise = self.noise + fresh
        return bounded(check, gradient, "bottom output gradient")

    def _own(self, check: Inspect, obj, size: int, what: str) -> CipherArray:
        """Ciphertexts under this host's key at the exponent the protocol produces, or a ProtocolError."""
        array = check.cipher(obj, self.keys[0], size=size, what=what)
        if array.exponent != ACTIVATION_PRECISION + self.options.precision:
            check.fail(f"{what} at {array.exponent} fractional bits, expected "
                       f"{ACTIVATION_PRECISION + self.options.precision}")
        return array
