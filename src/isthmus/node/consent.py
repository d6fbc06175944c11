"""A participant's consent: its Ed25519 signing key's signature on the accepted proposal's digest.

A node starts its side of a job only when it holds a valid signature of every participant, checked
against the keys pinned in the federation file, so no proposer can start a job someone refused.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

#: Prefix of every signed digest, so a consent signature can mean nothing else (not a ledger record).
_CONTEXT = b"isthmus job consent v1\x00"


def sign_consent(key: Ed25519PrivateKey, digest: str) -> bytes:
    return key.sign(_CONTEXT + bytes.fromhex(digest))


def consent_valid(key: Ed25519PublicKey, digest: str, signature: object) -> bool:
    if not isinstance(signature, bytes) or len(signature) != 64:
        return False
    try:
        key.verify(signature, _CONTEXT + bytes.fromhex(digest))
    except InvalidSignature:
        return False
    return True
