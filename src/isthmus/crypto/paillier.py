"""Paillier encryption for isthmus: the public entry point.

Encryption is Paillier with g = n + 1, DJN randomness ``hs**a`` (a uniform exponent of at least 256
bits, raised by a precomputed fixed-base table) and CRT decryption. Keys and the security argument
for the short exponent live in :mod:`isthmus.crypto.keys`, ciphertext arrays in
:mod:`isthmus.crypto.cipherarray`, fixed-point encoding in :mod:`isthmus.crypto.fixedpoint`,
packing several values per plaintext in :mod:`isthmus.crypto.packing`.

    public_key, private_key = generate_keypair()           # 2048 bits
    d = public_key.encrypt(residuals)                       # CipherArray, 32 fractional bits
    gradient = X.T @ d                                      # bucket multi-exponentiation
    masked, mask = gradient.masked()                        # send masked; the arbiter returns
    values = mask.unmask(private_key.decrypt_raw(masked))   # decrypt_raw(masked) as ints
"""

from isthmus.crypto.cipherarray import DEFAULT_MATMUL_PRECISION, DEFAULT_SCALAR_PRECISION, CipherArray, Mask
from isthmus.crypto.fixedpoint import DEFAULT_PRECISION
from isthmus.crypto.keys import (
    DEFAULT_KEY_BITS,
    MAX_KEY_BITS,
    MIN_KEY_BITS,
    PaillierPrivateKey,
    PaillierPublicKey,
    generate_keypair,
)
from isthmus.crypto.packing import Packer, decrypt_packed, encrypt_packed

__all__ = [
    "DEFAULT_KEY_BITS",
    "DEFAULT_MATMUL_PRECISION",
    "DEFAULT_PRECISION",
    "DEFAULT_SCALAR_PRECISION",
    "MAX_KEY_BITS",
    "MIN_KEY_BITS",
    "CipherArray",
    "Mask",
    "Packer",
    "PaillierPrivateKey",
    "PaillierPublicKey",
    "decrypt_packed",
    "encrypt_packed",
    "generate_keypair",
]
