"""Ed25519 endorsements of ledger records: each party's signing key and the federation's pinned keys.

Each party makes its own signing key (``isthmus keys init``); the key files are read by
:mod:`isthmus.transport.keyfiles`. A verifier trusts only the public keys pinned in the federation
file, never keys found in a ledger.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


#: Prefix of every signed message, so a signing key's signature on a record can mean nothing else.
_CONTEXT = b"isthmus ledger record v1\x00"


def same_key(a: Ed25519PublicKey, b: Ed25519PublicKey) -> bool:
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    return a.public_bytes(*raw) == b.public_bytes(*raw)


def sign_record(key: Ed25519PrivateKey, record_hash: str) -> bytes:
    return key.sign(_CONTEXT + bytes.fromhex(record_hash))


def signature_valid(key: Ed25519PublicKey, record_hash: str, signature: bytes) -> bool:
    try:
        key.verify(signature, _CONTEXT + bytes.fromhex(record_hash))
    except InvalidSignature:
        return False
    return True
