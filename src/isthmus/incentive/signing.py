"""Ed25519 endorsements of ledger records: each party's signing key and the federation's pinned keys.

The keys are made with the party's certificates (:func:`isthmus.transport.certs.create_federation`);
a verifier trusts only the public keys pinned in the federation file, never keys found in a ledger.
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from isthmus.errors import ConfigError
from isthmus.transport.certs import FEDERATION_FILE, SIGNING_KEY

#: Prefix of every signed message, so a signing key's signature on a record can mean nothing else.
_CONTEXT = b"isthmus ledger record v1\x00"
_HEX_KEY = re.compile(r"[0-9a-f]{64}")


def load_signing_key(certs_dir: Path, party: str) -> Ed25519PrivateKey:
    """``certs_dir/<party>/signing.key``; refuses a key file that others may read."""
    path = Path(certs_dir) / party / SIGNING_KEY
    if not path.is_file():
        raise ConfigError(f"party {party!r} has no signing key at {path}; certificates made by `isthmus certs` "
                          "include one")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"signing key {path} is accessible to other users; run: chmod 600 {path}")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key")
    return key


def load_pinned_keys(federation_file: Path) -> dict[str, Ed25519PublicKey]:
    """The public signing key of every member, as pinned in the federation file."""
    path = Path(federation_file)
    try:
        pinned = json.loads(path.read_text(encoding="utf-8"))["signing_keys"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read pinned signing keys from {path}: {exc}") from None
    if not isinstance(pinned, dict) or not all(isinstance(v, str) and _HEX_KEY.fullmatch(v) for v in pinned.values()):
        raise ConfigError(f"{path}: 'signing_keys' must map party names to 32-byte public keys in hex")
    return {party: Ed25519PublicKey.from_public_bytes(bytes.fromhex(key)) for party, key in pinned.items()}


def federation_file(certs_dir: Path) -> Path:
    return Path(certs_dir) / FEDERATION_FILE


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
