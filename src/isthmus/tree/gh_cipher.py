"""How a tree's (g, h) go from the guest to the hosts, and how histograms come back.

Two modes behind one interface, so the protocol code is the same in both:

* ``paillier``: each row's pair is one Paillier plaintext, encrypted once per tree; hosts multiply
  ciphertexts per bin and pack several bins per ciphertext; the guest decrypts and unpacks exact
  integer sums. The only mode a production job may use.
* ``plaintext``: the same messages with the integers in the clear, for benchmarks and tests that
  measure what encryption costs. It hands the gradients, hence the labels, to every host:
  :attr:`GuestCipher.secure` is False and jobs must refuse it.

A histogram on the wire covers the requested features in order, each with its value bins then its
missing-value bin (``n_bins[f] = value_bins[f] + 1`` entries).
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from isthmus.crypto.paillier import CipherArray, PaillierPublicKey, generate_keypair
from isthmus.errors import ConfigError, EncodingOverflowError, ProtocolError
from isthmus.ml.binning import bin_sums
from isthmus.tree.gh import (
    SLOT_BITS,
    SUM_BITS,
    QuantizedGH,
    pack_pairs,
    slots_per_plaintext,
    unpack_pairs,
    unpack_slots,
)
from isthmus.tree.hist_kernel import HistogramKernel, packed_count

MODES = ("paillier", "plaintext")


class GuestCipher(ABC):
    mode: str
    secure: bool

    def __init__(self) -> None:
        self._last: tuple[QuantizedGH, Any] | None = None

    def setup(self) -> dict:
        """What hosts need to know once per job."""
        return {"mode": self.mode, "slot_bits": SLOT_BITS}

    def encrypt(self, gh: QuantizedGH) -> Any:
        """The wire form of one tree's gradients; computed once and sent to every host."""
        if self._last is None or self._last[0] is not gh:
            self._last = (gh, self._encrypt(gh))
        return self._last[1]

    @abstractmethod
    def _encrypt(self, gh: QuantizedGH) -> Any: ...

    @abstractmethod
    def decode(self, payload: Any, n_bins: np.ndarray, *, peer: str, tag: str) -> tuple[np.ndarray, np.ndarray]:
        """Flat int64 (G, H) sums of a histogram a host sent; anything malformed is a ProtocolError."""

    @abstractmethod
    def decode_counts(self, payload: Any, n_bins: np.ndarray, kept_bits: np.ndarray, *, peer: str,
                      tag: str) -> np.ndarray:
        """Per bin, the lowest ``kept_bits`` bits of its G sum: all that :meth:`HostCipher.mask_counts` leaves."""


class HostCipher(ABC):
    @abstractmethod
    def load(self, payload: Any, size: int, *, peer: str, tag: str) -> None:
        """This tree's gradients of ``size`` rows, as the guest sent them."""

    @abstractmethod
    def histograms(self, nodes: list[tuple[np.ndarray, np.ndarray]], n_bins: np.ndarray) -> list[Any]:
        """Per node ``(gradient positions, bins (rows, features))``, the wire form of its histogram."""

    @abstractmethod
    def mask_counts(self, histogram: Any, n_bins: np.ndarray, kept_bits: np.ndarray) -> Any:
        """One histogram of counts (G sums below ``2**kept_bits`` per bin, H sums 0) with every other bit
        random: a guest that encrypted something else than 0/1 per row (row i as ``2**i``) read in the sums
        which rows each bin holds, and now reads no more bits per bin than an honest count has."""


def guest_cipher(mode: str, key_bits: int) -> GuestCipher:
    if mode == "paillier":
        return PaillierGuestCipher(key_bits)
    if mode == "plaintext":
        return PlaintextGuestCipher()
    raise ConfigError(f"unknown encryption mode {mode!r}; use one of {MODES}")


def host_cipher(mode: str, setup: Any, *, peer: str, tag: str) -> HostCipher:
    """The host's side of the guest's ``setup``; the host's own ``mode`` must match the guest's."""
    if mode not in MODES:
        raise ConfigError(f"unknown encryption mode {mode!r}; use one of {MODES}")
    proposed = setup if isinstance(setup, dict) else {}
    if (proposed.get("mode"), proposed.get("slot_bits")) != (mode, SLOT_BITS):
        raise ProtocolError(f"guest proposes encryption {proposed.get('mode')!r} with {proposed.get('slot_bits')!r}-bit "
                            f"slots, this host runs {mode!r} with {SLOT_BITS}-bit slots", peer=peer, tag=tag)
    if mode == "plaintext":
        return PlaintextHostCipher()
    public_key = setup.get("public_key")
    if not isinstance(public_key, PaillierPublicKey):
        raise ProtocolError("setup carries no Paillier public key", peer=peer, tag=tag)
    return PaillierHostCipher(public_key)


class PlaintextGuestCipher(GuestCipher):
    mode = "plaintext"
    secure = False

    def _encrypt(self, gh: QuantizedGH) -> Any:
        return {"grad": gh.grad, "hess": gh.hess}

    def decode(self, payload: Any, n_bins: np.ndarray, *, peer: str, tag: str) -> tuple[np.ndarray, np.ndarray]:
        return _plain_pairs(payload, int(n_bins.sum()), "histogram", peer=peer, tag=tag)

    def decode_counts(self, payload: Any, n_bins: np.ndarray, kept_bits: np.ndarray, *, peer: str,
                      tag: str) -> np.ndarray:
        return self.decode(payload, n_bins, peer=peer, tag=tag)[0] & ((1 << kept_bits) - 1)


class PlaintextHostCipher(HostCipher):
    def load(self, payload: Any, size: int, *, peer: str, tag: str) -> None:
        self._grad, self._hess = _plain_pairs(payload, size, "gradients", peer=peer, tag=tag)

    def histograms(self, nodes: list[tuple[np.ndarray, np.ndarray]], n_bins: np.ndarray) -> list[Any]:
        wanted = _compact_mask(n_bins)
        out = []
        for positions, binned in nodes:
            sums = [bin_sums(binned, values[positions].astype(np.float64), wanted.shape[1]).astype(np.int64)[wanted]
                    for values in (self._grad, self._hess)]
            out.append({"grad": sums[0], "hess": sums[1]})
        return out

    def mask_counts(self, histogram: Any, n_bins: np.ndarray, kept_bits: np.ndarray) -> Any:
        return {"grad": histogram["grad"] & ((1 << kept_bits) - 1), "hess": np.zeros_like(histogram["hess"])}


def dense_histogram(compact: np.ndarray, value_bins: np.ndarray, n_columns: int) -> np.ndarray:
    """Wire order (each feature's value bins, then its missing bin) to ``(features, n_columns)``,
    the missing bin in the last column."""
    dense = np.zeros((len(value_bins), n_columns), dtype=np.int64)
    missing_at = np.cumsum(value_bins + 1) - 1
    is_value = np.ones(compact.size, dtype=bool)
    is_value[missing_at] = False
    dense[:, :-1][np.arange(n_columns - 1)[None, :] < value_bins[:, None]] = compact[is_value]
    dense[:, -1] = compact[missing_at]
    return dense


def _plain_pairs(payload: Any, size: int, what: str, *, peer: str, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """``{"grad", "hess"}``, each ``size`` int64 values: the plaintext mode's wire form."""
    if not isinstance(payload, dict) or set(payload) != {"grad", "hess"}:
        raise ProtocolError(f"{what} must be a map with grad and hess", peer=peer, tag=tag)
    for key in ("grad", "hess"):
        value = payload[key]
        if not isinstance(value, np.ndarray) or value.dtype != np.int64 or value.shape != (size,):
            raise ProtocolError(f"{what}: {key} must be {size} int64 values", peer=peer, tag=tag)
    return payload["grad"], payload["hess"]


def _compact_mask(n_bins: np.ndarray) -> np.ndarray:
    """Which cells of a dense (features, max bins) array hold a feature's bins, in wire order."""
    return np.arange(int(n_bins.max(initial=1)))[None, :] < n_bins[:, None]


class PaillierGuestCipher(GuestCipher):
    mode = "paillier"
    secure = True

    def __init__(self, key_bits: int):
        super().__init__()
        self.public_key, self._private_key = generate_keypair(key_bits)
        self.slots = slots_per_plaintext(self.public_key.bits)

    def setup(self) -> dict:
        return {**super().setup(), "public_key": self.public_key}

    def _encrypt(self, gh: QuantizedGH) -> Any:
        n = int(self.public_key.n)
        plaintexts = [m % n for m in pack_pairs(gh.grad, gh.hess)]
        ciphertexts = self.public_key.encrypt_integers(plaintexts)
        return CipherArray.from_ciphertexts(self.public_key, ciphertexts, (len(ciphertexts),), 0, fresh=True)

    def decode(self, payload: Any, n_bins: np.ndarray, *, peer: str, tag: str) -> tuple[np.ndarray, np.ndarray]:
        n = int(self.public_key.n)
        plaintexts = iter(m - n if m > n // 2 else m for m in self._decrypt(payload, n_bins, peer=peer, tag=tag))
        values = []
        try:
            for bins in n_bins.tolist():
                for start in range(0, bins, self.slots):
                    values.extend(unpack_slots(next(plaintexts), min(self.slots, bins - start)))
        except EncodingOverflowError as exc:
            raise ProtocolError(f"histogram does not decode: {exc}", peer=peer, tag=tag) from None
        return unpack_pairs(values)

    def decode_counts(self, payload: Any, n_bins: np.ndarray, kept_bits: np.ndarray, *, peer: str,
                      tag: str) -> np.ndarray:
        plaintexts, kept = iter(self._decrypt(payload, n_bins, peer=peer, tag=tag)), iter(kept_bits.tolist())
        counts = []
        for bins in n_bins.tolist():
            for start in range(0, bins, self.slots):
                packed = next(plaintexts)
                counts += [packed >> (SLOT_BITS * j + SUM_BITS) & ((1 << next(kept)) - 1)
                           for j in range(min(self.slots, bins - start))]
        return np.array(counts, dtype=np.int64)

    def _decrypt(self, payload: Any, n_bins: np.ndarray, *, peer: str, tag: str) -> list[int]:
        expected = packed_count(n_bins, self.slots)
        if not isinstance(payload, CipherArray) or payload.public_key != self.public_key or payload.shape != (expected,):
            raise ProtocolError(f"histogram must be {expected} ciphertexts under this job's key", peer=peer, tag=tag)
        return self._private_key.decrypt_raw(payload)


class PaillierHostCipher(HostCipher):
    def __init__(self, public_key: PaillierPublicKey):
        self.public_key = public_key
        self.slots = slots_per_plaintext(public_key.bits)
        self.kernel = HistogramKernel(public_key.nsquare, self.slots)

    def load(self, payload: Any, size: int, *, peer: str, tag: str) -> None:
        if not isinstance(payload, CipherArray) or payload.public_key != self.public_key or payload.shape != (size,):
            raise ProtocolError(f"gradients must be {size} ciphertexts under the job's key", peer=peer, tag=tag)
        self._ciphertexts = np.frombuffer(payload.to_bytes(), dtype=np.uint8).reshape(size, self.kernel.width)

    def histograms(self, nodes: list[tuple[np.ndarray, np.ndarray]], n_bins: np.ndarray) -> list[Any]:
        built = self.kernel.build(self._ciphertexts, nodes, n_bins)
        # not fresh: to_wire re-randomises them, so the guest cannot tell which of its ciphertexts went in
        return [CipherArray.from_ciphertexts(self.public_key, packed, (len(packed),), 0) for packed in built]

    def mask_counts(self, histogram: Any, n_bins: np.ndarray, kept_bits: np.ndarray) -> Any:
        # Below 2**(key bits - 2) < n / 2 for an honest histogram, so it decrypts without wrapping around n.
        room, kept, masks = self.public_key.bits - 2, iter(kept_bits.tolist()), []
        for bins in n_bins.tolist():
            for start in range(0, bins, self.slots):
                count = min(self.slots, bins - start)
                mask = secrets.randbits(room - SLOT_BITS * count) << (SLOT_BITS * count)  # above the slots
                for j in range(count):
                    bits = next(kept)
                    above_count = secrets.randbits(SUM_BITS - bits) << bits
                    mask += ((above_count << SUM_BITS) + secrets.randbits(SUM_BITS)) << (SLOT_BITS * j)
                masks.append(mask)
        encrypted = self.public_key.encrypt_integers(masks)
        return histogram + CipherArray.from_ciphertexts(self.public_key, encrypted, histogram.shape, 0, fresh=True)
