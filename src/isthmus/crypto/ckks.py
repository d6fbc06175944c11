"""CKKS (Microsoft SEAL, through TenSEAL's ``sealapi`` binding): a lattice cipher for ``X.T @ [[d]]``.

Why a second cipher: with 2048-bit Paillier the hetero LR epoch at 100k x (10 + 20) is CPU-bound at
~48 CPU-s (benchmarks/vertical_lr.py); one CKKS ciphertext holds 4,096 values and a plaintext-matrix
product costs a few hundred polynomial operations per batch (benchmarks/lattice.py measures both).

Parameters are fixed here and never read from the wire, so a peer cannot choose them:
N = 8192, coefficient modulus 60 + 50 + 48 + 60 = 218 bits: the HE standard's (homomorphicencryption.org,
2018, table 1) largest log q for 128-bit classical security at N = 8192 with a ternary secret; SEAL
refuses anything larger at ``tc128``. Values are encoded at scale 2^48. Fresh ciphertexts live at
level 2 (q = 158 bits), products are rescaled once by the 48-bit prime to level 1 (q = 110 bits),
which leaves room for the masked values (up to 2^45, at scales up to 2^51).

Hiding, in the order values travel (docs/security.md argues the numbers):
- whoever sends a ciphertext for decryption first adds a uniform mask in [-2^MASK_BITS, 2^MASK_BITS]
  and Gaussian noise of ``EVALUATOR_FLOOD`` to every slot: the mask hides the value, the noise hides the
  CKKS error term, which depends on the evaluator's plaintext matrix;
- the key holder decrypts only the slots that carry values and adds Gaussian noise of ``HOLDER_FLOOD``
  before anything leaves it: returning exact CKKS decryptions reveals the error, from which a party
  that knows the plaintext recovers the secret key (Li and Micciancio, Eurocrypt 2021).

SEAL's binding saves and loads keys and ciphertexts through file paths only, so (de)serialisation goes
through a private temporary directory; what is loaded is checked by SEAL against the fixed parameters.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np


POLY_DEGREE = 8192
SLOTS = POLY_DEGREE // 2
COEFF_BITS = (60, 50, 48, 60)  # the last prime is SEAL's special (key-switching) prime
SCALE = 2.0**48
#: Levels of the modulus chain: fresh ciphertexts at 2, products after one rescale at 1.
FRESH_LEVEL, PRODUCT_LEVEL = 2, 1
#: Masks are uniform in [-2^MASK_BITS, 2^MASK_BITS]: a value of magnitude |m| is hidden up to a
#: statistical distance |m| / 2^(MASK_BITS + 1) (2^-25 for |m| = 2^20). Not larger: SEAL decodes
#: through doubles, whose 53 bits must also carry the value's fraction below the mask.
MASK_BITS = 44
#: Standard deviations of the flooding noise, in value units (see the module docstring).
EVALUATOR_FLOOD = 2.0**-4
HOLDER_FLOOD = 2.0**-4
#: Rotation steps the public key covers: 1 (baby steps) and every power of two (folds).
ROTATIONS = tuple(2**i for i in range(int(math.log2(SLOTS))))
#: Bytes of one serialised public key (public key and Galois keys) and of one ciphertext, at most.
MAX_PUBLIC_KEY_BYTES = 24 << 20
MAX_CIPHERTEXT_BYTES = 1 << 20
#: Most ciphertexts in one array: 256 x 4096 values.
MAX_SEGMENTS = 256


@functools.cache
def _seal():
    """TenSEAL's SEAL binding, imported on first use: TenSEAL is the optional extra ``isthmus[lattice]``."""
    try:
        import tenseal.sealapi as sealapi
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("cipher: ckks needs TenSEAL: pip install 'isthmus[lattice]'") from exc
    return sealapi


@functools.cache
def context():
    """The one SEAL context of isthmus' CKKS parameters (SEAL checks 128-bit security at ``tc128``)."""
    sa = _seal()
    parms = sa.EncryptionParameters(sa.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(POLY_DEGREE)
    parms.set_coeff_modulus(sa.CoeffModulus.Create(POLY_DEGREE, list(COEFF_BITS)))
    ctx = sa.SEALContext(parms, True, sa.SEC_LEVEL_TYPE.TC128)
    if not ctx.parameters_set():
        raise RuntimeError(f"SEAL refused isthmus' CKKS parameters: {ctx.parameters_error_message()}")
    return ctx


@functools.cache
def _tools():
    sa, ctx = _seal(), context()
    return sa.CKKSEncoder(ctx), sa.Evaluator(ctx)


def _level(ciphertext) -> int:
    return context().get_context_data(ciphertext.parms_id()).chain_index()


def _parms_id(level: int):
    data = context().first_context_data()
    while data.chain_index() > level:
        data = data.next_context_data()
    return data.parms_id()


def _last_prime(level: int) -> int:
    """The prime a rescale at ``level`` divides by."""
    return context().get_context_data(_parms_id(level)).parms().coeff_modulus()[-1].value()


# ----------------------------------------------------------------------- (de)serialisation
@contextlib.contextmanager
def _scratch_path():
    """A path for SEAL's binding, which saves and loads only through files, in a private directory removed
    as soon as the call is done: a party process ends with os._exit, so nothing left for interpreter exit
    would ever be cleaned up (each CKKS job left a directory per party in the temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="isthmus-ckks-") as folder:
        yield os.path.join(folder, "object")


def _save(obj) -> bytes:
    with _scratch_path() as path:
        obj.save(path)
        with open(path, "rb") as file:
            return file.read()


def _load(obj, data: Any, limit: int, what: str):
    """Load a peer's bytes into ``obj``; SEAL checks them against the fixed parameters."""
    if not isinstance(data, bytes) or not 0 < len(data) <= limit:
        raise ValueError(f"{what}: expected at most {limit} bytes")
    with _scratch_path() as path:
        with open(path, "wb") as file:
            file.write(data)
        try:
            obj.load(context(), path)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"{what}: not a valid SEAL object for isthmus' CKKS parameters ({exc})") from None
    return obj


# ----------------------------------------------------------------------------------- keys
class CkksPublicKey:
    """Public key and the Galois keys of ``ROTATIONS``: what evaluators need, never the secret key."""

    def __init__(self, public_key, galois_keys, wire: dict[str, bytes] | None = None):
        sa = _seal()
        self._public_key, self.galois_keys = public_key, galois_keys
        self._encryptor = sa.Encryptor(context(), public_key)
        self._wire = wire or {"public": _save(public_key), "galois": _save(galois_keys)}
        self.fingerprint = hashlib.sha256(self._wire["public"]).hexdigest()

    def to_wire(self) -> dict[str, bytes]:
        return dict(self._wire)

    @classmethod
    def from_wire(cls, obj: Any) -> CkksPublicKey:
        """A peer's public key; raises ``ValueError`` unless it is exactly that, for isthmus' parameters."""
        sa = _seal()
        if not isinstance(obj, dict) or set(obj) != {"public", "galois"}:
            raise ValueError("a CKKS public key is a map with exactly 'public' and 'galois'")
        if sum(len(v) for v in obj.values() if isinstance(v, bytes)) > MAX_PUBLIC_KEY_BYTES:
            raise ValueError(f"a CKKS public key has at most {MAX_PUBLIC_KEY_BYTES} bytes")
        public_key = _load(sa.PublicKey(), obj["public"], MAX_PUBLIC_KEY_BYTES, "CKKS public key")
        galois = _load(sa.GaloisKeys(), obj["galois"], MAX_PUBLIC_KEY_BYTES, "CKKS Galois keys")
        elements = [pow(3, step, 2 * POLY_DEGREE) for step in ROTATIONS]
        if galois.size() != len(elements) or not all(galois.has_key(e) for e in elements):
            raise ValueError("CKKS Galois keys: expected exactly the rotations by powers of two")
        return cls(public_key, galois, {"public": obj["public"], "galois": obj["galois"]})

    def encrypt(self, values: np.ndarray, lengths: list[int] | None = None) -> CkksArray:
        """Fresh encryptions of a 1-D float array, 4096 values per ciphertext (or ``lengths`` of them)."""
        values = np.asarray(values, dtype=np.float64).ravel()
        if not np.isfinite(values).all():
            raise ValueError("cannot encrypt NaN or infinite values")
        if lengths is None:
            lengths = [len(values[s:s + SLOTS]) for s in range(0, max(len(values), 1), SLOTS)]
        segments, start = [], 0
        for n in lengths:
            ciphertext = _seal().Ciphertext()
            self._encryptor.encrypt(_encode(values[start:start + n], FRESH_LEVEL, SCALE), ciphertext)
            segments.append(ciphertext)
            start += n
        return CkksArray(self, segments, list(lengths))


class CkksPrivateKey:
    """The secret key, kept by its owner: decrypts only the value slots and floods before returning."""

    def __init__(self, secret_key):
        self._decryptor = _seal().Decryptor(context(), secret_key)

    def decrypt_raw(self, array: CkksArray) -> np.ndarray:
        """Values of ``array`` plus Gaussian noise of ``HOLDER_FLOOD`` (Li-Micciancio): what may leave the key holder."""
        values = np.concatenate([_decode(self._decrypt(c))[:n] for c, n in zip(array.segments, array.lengths)])
        return values + _gaussian(len(values), HOLDER_FLOOD)

    def decrypt_exact(self, array: CkksArray) -> np.ndarray:
        """Unflooded values, for tests and benchmarks that measure the CKKS error: never send these."""
        return np.concatenate([_decode(self._decrypt(c))[:n] for c, n in zip(array.segments, array.lengths)])

    def _decrypt(self, ciphertext):
        plain = _seal().Plaintext()
        self._decryptor.decrypt(ciphertext, plain)
        return plain


def generate_keypair() -> tuple[CkksPublicKey, CkksPrivateKey]:
    """A fresh CKKS key pair, generated by its owner (SEAL's CSPRNG)."""
    sa = _seal()
    generator = sa.KeyGenerator(context())
    public_key, galois = sa.PublicKey(), sa.GaloisKeys()
    generator.create_public_key(public_key)
    generator.create_galois_keys([pow(3, step, 2 * POLY_DEGREE) for step in ROTATIONS], galois)
    return CkksPublicKey(public_key, galois), CkksPrivateKey(generator.secret_key())


# --------------------------------------------------------------------------------- arrays
#: CPU time of one rotation in plaintext multiplications (encoding included), measured at level 2: 2.8.
ROTATION_COST = 2.8


def _group_size(outputs: int, chunks: int) -> int:
    """Outputs per packed ciphertext with the least work in ``rmatmul``: a group of K costs K multiplications
    per chunk and K - 1 + log2(4096 / K) rotations, so wide matrices pack best in groups of 16 to 64."""
    def cost(size: int) -> float:
        return math.ceil(outputs / size) * (size * chunks + (size - 1 + math.log2(SLOTS // size)) * ROTATION_COST)

    return min((2**i for i in range(int(math.log2(SLOTS)) + 1)), key=cost)


def _encode(values: np.ndarray, level: int, scale: float):
    encoder, _ = _tools()
    plain = _seal().Plaintext()
    encoder.encode(np.asarray(values, dtype=np.float64).tolist(), _parms_id(level), scale, plain)
    return plain


def _decode(plain) -> np.ndarray:
    encoder, _ = _tools()
    return np.asarray(encoder.decode_double(plain))


def _random_words(count: int) -> np.ndarray:
    """``count`` uniform 64-bit words straight from the operating system's CSPRNG: masks and flooding noise
    are secrets, and numpy's generators (PCG64) are predictable from enough of their outputs."""
    return np.frombuffer(os.urandom(8 * count), dtype=np.uint64)


def _gaussian(count: int, sigma: float) -> np.ndarray:
    """Flooding noise: Box-Muller over CSPRNG uniforms in (0, 1] (53 bits each)."""
    u1, u2 = _random_words(2 * count).reshape(2, count) >> np.uint64(11)
    u1 = (u1.astype(np.float64) + 1.0) / 2.0**53
    u2 = u2.astype(np.float64) / 2.0**53
    return sigma * np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _uniform(count: int, bits: int) -> np.ndarray:
    """Uniform integers in [-2^bits, 2^bits) from the CSPRNG, as floats (exact: bits + 1 <= 53)."""
    return (_random_words(count) >> np.uint64(63 - bits)).astype(np.float64) - 2.0**bits


class CkksArray:
    """A 1-D array of encrypted values: ``segments[i]`` holds the next ``lengths[i]`` values in its first slots."""

    def __init__(self, public_key: CkksPublicKey, segments: list, lengths: list[int]):
        self.public_key, self.segments, self.lengths = public_key, segments, lengths

    def __len__(self) -> int:
        return sum(self.lengths)

    @property
    def size(self) -> int:
        return len(self)

    # -------------------------------------------------------------- arithmetic
    def __add__(self, other: CkksArray | np.ndarray) -> CkksArray:
        """Sum with another array of the same layout, or with plaintext values, encrypted afresh so that
        the result is re-randomised (a peer that knows one addend cannot subtract it to read the other)."""
        if not isinstance(other, CkksArray):
            other = self.public_key.encrypt(np.broadcast_to(np.asarray(other, dtype=np.float64), (len(self),)),
                                            self.lengths)
        if other.lengths != self.lengths:
            raise ValueError(f"cannot add encrypted arrays of layouts {self.lengths} and {other.lengths}")
        _, evaluator = _tools()
        total = []
        for a, b in zip(self.segments, other.segments):
            a, b = _aligned(a, b)
            out = _seal().Ciphertext()
            evaluator.add(a, b, out)
            total.append(out)
        return CkksArray(self.public_key, total, list(self.lengths))

    __radd__ = __add__

    def __mul__(self, factor: float) -> CkksArray:
        """Times a public power of two: exact, by the scale alone (no level is spent)."""
        mantissa, exponent = math.frexp(float(factor))
        if mantissa != 0.5:
            raise ValueError(f"CKKS arrays multiply only by powers of two here, not {factor}")
        scaled = []
        for segment in self.segments:
            copy = _copy(segment)
            copy.scale = segment.scale / 2.0 ** (exponent - 1)
            scaled.append(copy)
        return CkksArray(self.public_key, scaled, list(self.lengths))

    def rmatmul(self, matrix: np.ndarray, precision: int | None = None) -> CkksArray:
        """``matrix @ self`` for a plaintext (k, n) matrix: k sums, packed several per ciphertext.

        ``precision`` is the Paillier path's fixed-point parameter; CKKS encodes at its own scale.
        Hybrid diagonal method (Juvekar et al., GAZELLE 2018) per group of K outputs (a power of two),
        one rescale per group: u_r = sum_c d_c * P_cr with P_cr[l] = X_c[l, (l - r) mod K], accumulated
        Horner-style as t = rot(t, 1) + u_r (K - 1 rotations by one in all), then log2(4096 / K) folds
        leave output j in every slot i = j mod K. Rotating each output separately would cost 12 k.
        """
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != len(self):
            raise ValueError(f"cannot multiply a {matrix.shape} matrix by {len(self)} encrypted values")
        group = _group_size(len(matrix), len(self.segments))
        starts = range(0, max(len(matrix), 1), group)
        return CkksArray(self.public_key, [self._packed_products(matrix[s:s + group]) for s in starts],
                         [max(len(matrix[s:s + group]), 1) for s in starts])

    def _packed_products(self, rows: np.ndarray):
        sa, (_, evaluator) = _seal(), _tools()
        k = max(len(rows), 1)
        width = 1 << (k - 1).bit_length()  # K
        level = min(_level(c) for c in self.segments)
        if level < FRESH_LEVEL:
            raise ValueError("a plaintext-matrix product needs fresh ciphertexts (level 2)")
        prime = _last_prime(level)
        padded = np.zeros((width, rows.shape[1]))
        padded[:k] = rows
        starts = np.cumsum([0, *self.lengths[:-1]])
        total = None
        for r in reversed(range(width)):
            term = None
            for segment, start, n in zip(self.segments, starts, self.lengths):
                slots = np.arange(n)
                diagonal = padded[(slots - r) % width, start + slots]  # P_cr: zero beyond the chunk's rows
                if not diagonal.any():
                    continue
                product = sa.Ciphertext()
                evaluator.multiply_plain(segment, _encode(diagonal, level, float(prime)), product)
                if term is None:
                    term = product
                else:
                    evaluator.add_inplace(term, product)
            if total is not None:
                evaluator.rotate_vector_inplace(total, 1, self.public_key.galois_keys)
            if term is not None:
                total = term if total is None else _add(evaluator, total, term)
        if total is None:  # an all-zero matrix: an encryption of zeros at the product level
            total = self.public_key.encrypt(np.zeros(k)).segments[0]
            evaluator.mod_switch_to_next_inplace(total)
            return total
        step = SLOTS // 2
        while step >= width:
            rotated = sa.Ciphertext()
            evaluator.rotate_vector(total, step, self.public_key.galois_keys, rotated)
            evaluator.add_inplace(total, rotated)
            step //= 2
        evaluator.rescale_to_next_inplace(total)
        total.scale = SCALE  # exact: SCALE * prime / prime
        return total

    @classmethod
    def concatenate(cls, arrays: Sequence[CkksArray]) -> CkksArray:
        return cls(arrays[0].public_key, [s for a in arrays for s in a.segments], [n for a in arrays for n in a.lengths])

    # ---------------------------------------------------------------- masking
    def masked(self) -> tuple[CkksArray, CkksMask]:
        """Add a uniform mask and flooding noise to every slot; keep the mask to unblind the decryption."""
        _, evaluator = _tools()
        masked, masks = [], []
        for segment, n in zip(self.segments, self.lengths):
            mask = _uniform(SLOTS, MASK_BITS)
            blinded = _copy(segment)
            evaluator.add_plain_inplace(blinded, _encode(mask + _gaussian(SLOTS, EVALUATOR_FLOOD),
                                                         _level(segment), segment.scale))
            masked.append(blinded)
            masks.append(mask[:n])
        return CkksArray(self.public_key, masked, list(self.lengths)), CkksMask(np.concatenate(masks))

    # ------------------------------------------------------------------ wire
    def to_wire(self) -> dict[str, Any]:
        return {"lengths": list(self.lengths), "segments": [_save(s) for s in self.segments]}

    @classmethod
    def from_wire(cls, obj: Any, public_key: CkksPublicKey, *, size: int | None, level: int | None = None) -> CkksArray:
        """A peer's ciphertexts; raises ``ValueError`` unless each is a 2-part SEAL ciphertext of isthmus'
        parameters at a known level and scale, and the layout matches ``size`` values."""
        sa = _seal()
        if not isinstance(obj, dict) or set(obj) != {"lengths", "segments"}:
            raise ValueError("a CKKS array is a map with exactly 'lengths' and 'segments'")
        lengths, segments = obj["lengths"], obj["segments"]
        if (not isinstance(lengths, list) or not isinstance(segments, list) or not 0 < len(segments) <= MAX_SEGMENTS
                or len(lengths) != len(segments) or not all(type(n) is int and 0 < n <= SLOTS for n in lengths)):
            raise ValueError(f"a CKKS array has 1..{MAX_SEGMENTS} segments of 1..{SLOTS} values each")
        if size is not None and sum(lengths) != size:
            raise ValueError(f"expected {size} encrypted values, got {sum(lengths)}")
        loaded = []
        for data in segments:
            ciphertext = _load(sa.Ciphertext(), data, MAX_CIPHERTEXT_BYTES, "CKKS ciphertext")
            if ciphertext.size() != 2 or ciphertext.poly_modulus_degree() != POLY_DEGREE or not ciphertext.is_ntt_form():
                raise ValueError("CKKS ciphertext: expected 2 polynomials of degree 8192 in NTT form")
            if _level(ciphertext) not in ((FRESH_LEVEL, PRODUCT_LEVEL) if level is None else (level,)):
                raise ValueError("CKKS ciphertext at an unexpected level of the modulus chain")
            if ciphertext.scale not in (SCALE, SCALE * 2, SCALE * 4, SCALE * 8):
                raise ValueError(f"CKKS ciphertext at an unexpected scale {ciphertext.scale}")
            loaded.append(ciphertext)
        return cls(public_key, loaded, list(lengths))


def _aligned(a, b):
    """Bring two ciphertexts to the same level (mod switch) and scale (integer factor of a power of two)."""
    sa, (encoder, evaluator) = _seal(), _tools()
    if _level(a) > _level(b):
        a = _copy(a, b.parms_id())
    elif _level(b) > _level(a):
        b = _copy(b, a.parms_id())
    if a.scale != b.scale:
        small, large = (a, b) if a.scale < b.scale else (b, a)
        ratio = large.scale / small.scale
        if ratio != int(ratio) or int(ratio) & (int(ratio) - 1):
            raise ValueError("cannot align CKKS scales that differ by more than a power of two")
        plain = sa.Plaintext()
        encoder.encode([ratio] * SLOTS, small.parms_id(), 1.0, plain)
        scaled = sa.Ciphertext()
        evaluator.multiply_plain(small, plain, scaled)
        scaled.scale = large.scale
        a, b = scaled, large
    return a, b


def _copy(ciphertext, parms_id=None):
    """A copy (the binding has no copy constructor), switched down to ``parms_id`` if given."""
    out = _seal().Ciphertext()
    _tools()[1].mod_switch_to(ciphertext, parms_id or ciphertext.parms_id(), out)
    return out


def _add(evaluator, a, b):
    evaluator.add_inplace(a, b)
    return a


class CkksMask:
    """The masks of one masked array: subtract them from the key holder's (flooded) decryption."""

    def __init__(self, masks: np.ndarray):
        self._masks = masks

    def unmask(self, raw: Any) -> np.ndarray:
        return np.asarray(raw, dtype=np.float64) - self._masks
