"""KKRT16's OT extension: one OPRF instance per row, its input a pseudo-random codeword (sections 3-4).

With ``w`` base OTs (seeds ``k_i^0, k_i^1`` at the receiver, ``k_i^{s_i}`` at the sender, ``s``
secret to the sender), the receiver expands each seed into a column of ``m`` bits and sends
``u^i = G(k_i^0) xor G(k_i^1) xor c^i``, where ``c^i`` is column ``i`` of the matrix whose row ``j`` is
the codeword ``C(r_j)`` of its input for instance ``j``. The sender's columns
``q^i = G(k_i^{s_i}) xor s_i u^i`` form rows ``q_j = t_j xor (C(r_j) and s)``, ``t_j`` being the
receiver's rows of ``G(k^0)``. The OPRF is ``F_j(x) = H(j, q_j xor (C(x) and s))``; the receiver
knows ``F_j(r_j) = H(j, t_j)`` only (section 4.1: for ``x != r_j``, ``C(x) xor C(r_j)`` has so many
ones that ``s`` hides the value).

Parameters: ``w = 512`` code bits (the paper uses 424 to 448 for 128-bit security and sets up to
2^24 ids; 512 is four AES blocks). The code is ``C(x) = AES_k1(x) || ... || AES_k4(x)`` on a 16-byte
input (section 4.2's pseudo-random code, instantiated with AES as the paper does); the PRG ``G`` is
AES-128-CTR; ``H`` is BLAKE2b-128. The bit-matrix transpose is vectorised (8x8 bit blocks in uint64).
"""

from __future__ import annotations

import hashlib

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

WIDTH = 512  # code length in bits = number of base OTs
ROW_BYTES = WIDTH // 8
OUTPUT_BYTES = 16  # 128-bit OPRF outputs: a false match among 3 * 2^30 pairs has probability < 2^-95
ROW_ALIGN = 128  # rows are processed in multiples of one AES block of column bits
_PERSON = b"isthmus-kkrt-prf"


class PseudoRandomCode:
    """``C(x)`` for 16-byte inputs: four AES-128 permutations, keys from a public seed (section 4.2)."""

    def __init__(self, seed: bytes):
        keys = hashlib.blake2b(seed, digest_size=64, person=b"isthmus-kkrt-prc").digest()
        self._ciphers = [Cipher(algorithms.AES(keys[i : i + 16]), modes.ECB()) for i in range(0, 64, 16)]

    def encode(self, inputs: np.ndarray) -> np.ndarray:
        """Rows of ``ROW_BYTES`` codeword bytes for an (n, 16) uint8 array of inputs."""
        data = np.ascontiguousarray(inputs, dtype=np.uint8).tobytes()
        blocks = [np.frombuffer(c.encryptor().update(data), dtype=np.uint8).reshape(-1, 16) for c in self._ciphers]
        return np.concatenate(blocks, axis=1) if len(inputs) else np.empty((0, ROW_BYTES), dtype=np.uint8)


class Receiver:
    """The OPRF receiver's half of the extension (the guest), given both keys of every base OT."""

    def __init__(self, key_pairs: list[tuple[bytes, bytes]]):
        self._keys0 = [k0 for k0, _ in key_pairs]
        self._keys1 = [k1 for _, k1 in key_pairs]

    def extend(self, start: int, codewords: np.ndarray) -> tuple[bytes, np.ndarray]:
        """For rows ``start ..`` holding ``codewords``: the message ``u`` (columns) and our rows ``t_j``."""
        t = prg(self._keys0, start, len(codewords))
        u = t ^ prg(self._keys1, start, len(codewords)) ^ transpose(codewords)
        return u.tobytes(), transpose(t)


class Sender:
    """The OPRF sender's half (the host): secret choice bits ``s`` and one key per base OT."""

    def __init__(self, choices: np.ndarray, keys: list[bytes]):
        self._keys = keys
        self._column_mask = np.where(choices.astype(bool), 0xFF, 0).astype(np.uint8)[:, None]
        self.secret = np.packbits(choices.astype(np.uint8), bitorder="little")  # s as a row

    def extend(self, start: int, u: bytes, rows: int) -> np.ndarray:
        """Our rows ``q_j`` for ``rows`` rows from ``start``, given the receiver's ``u`` for them."""
        columns = np.frombuffer(u, dtype=np.uint8).reshape(WIDTH, rows // 8)
        return transpose(prg(self._keys, start, rows) ^ (columns & self._column_mask))


def prg(keys: list[bytes], start: int, rows: int) -> np.ndarray:
    """Bits ``start .. start + rows`` of each key's AES-CTR stream, one row of bytes per key."""
    counter = (start // ROW_ALIGN).to_bytes(16, "big")
    zeros = bytes(rows // 8)
    out = np.empty((len(keys), rows // 8), dtype=np.uint8)
    for i, key in enumerate(keys):
        out[i] = np.frombuffer(Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor().update(zeros), dtype=np.uint8)
    return out


def hash_rows(rows: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``H(j, row)`` for each row and its instance ``j``: (n, OUTPUT_BYTES) uint8 (BLAKE2b, one call per row)."""
    data = np.concatenate([np.ascontiguousarray(rows, dtype=np.uint8), indices.astype("<u8").view(np.uint8).reshape(-1, 8)], axis=1)
    width = data.shape[1]
    view = memoryview(data.tobytes())
    digests = b"".join([hashlib.blake2b(view[i : i + width], digest_size=OUTPUT_BYTES, person=_PERSON).digest() for i in range(0, len(view), width)])
    return np.frombuffer(digests, dtype=np.uint8).reshape(-1, OUTPUT_BYTES)


def transpose(bits: np.ndarray) -> np.ndarray:
    """Transpose a bit matrix: (R, C/8) bytes -> (C, R/8) bytes, bit ``k`` of a byte being column
    ``8 * byte + k``. Each 8x8 bit block is one uint64 transposed with three delta swaps."""
    rows, col_bytes = bits.shape
    if rows % 8:
        raise ValueError("rows must be a multiple of 8")
    blocks = np.ascontiguousarray(bits.reshape(rows // 8, 8, col_bytes).transpose(0, 2, 1)).view("<u8")[..., 0]
    for shift, mask in ((7, 0x00AA00AA00AA00AA), (14, 0x0000CCCC0000CCCC), (28, 0x00000000F0F0F0F0)):
        swap = (blocks ^ (blocks >> np.uint64(shift))) & np.uint64(mask)
        blocks ^= swap ^ (swap << np.uint64(shift))
    swapped = blocks[..., None].view(np.uint8)  # (R/8, C/8, 8): byte k holds column 8 c + k's bits
    return np.ascontiguousarray(swapped.transpose(1, 2, 0)).reshape(col_bytes * 8, rows // 8)
