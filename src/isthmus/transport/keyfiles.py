"""Where a party's key material lives, and the rules every key file follows.

A party's certificate folder (``isthmus run --certs FOLDER``) holds::

    ca.pem                the federation CA's certificate             public, from the CA operator
    federation.json       the members' pinned public signing keys     public, from the CA operator
    <party>/key.pem       the party's TLS private key                 0600, made by the party
    <party>/signing.key   its Ed25519 key for signing ledger records  0600, made by the party
    <party>/request.csr   its certificate signing request             public, goes to the CA operator
    <party>/signing.pub   its public signing key, with a proof        public, goes to the CA operator
    <party>/cert.pem      its certificate, signed by the CA           public, from the CA operator

The CA operator's folder holds ``ca.key`` (0600), ``ca.pem``, ``federation.json`` and ``issued/``.
Private keys are created with mode 0600 from the start, never overwritten, and refused when others
may read them. Files a peer sends (requests, certificates, federation files) are read with a size
limit: they are hostile input.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from isthmus.errors import ConfigError
from isthmus.files import create_private, write_whole

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
PARTY_CERT = "cert.pem"
PARTY_KEY = "key.pem"
NEXT_KEY = "key.next.pem"  # a re-key's new TLS key, until its certificate is installed
SIGNING_KEY = "signing.key"
SIGNING_PUB = "signing.pub"
REQUEST = "request.csr"
FEDERATION_FILE = "federation.json"
ISSUED = "issued"

# Lower-case DNS names only: the name is compared byte for byte with the certificate, while TLS
# host name checks ignore case, so mixed case would let two spellings name one party.
_PARTY_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")
_HEX_KEY = re.compile(r"[0-9a-f]{64}")
#: The federation file's map of each member's pinned TLS key (:func:`tls_key_digest`).
TLS_KEYS = "tls_keys"
_PROOF_CONTEXT = b"isthmus signing key of a federation member v1\x00"
MAX_PEM_BYTES = 64 * 1024
MAX_FEDERATION_BYTES = 1024 * 1024

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def check_party_name(party: object) -> str:
    if not isinstance(party, str) or not _PARTY_NAME.fullmatch(party):
        raise ConfigError(
            f"party name {party!r} cannot name a certificate: use lower-case letters, digits, '-' and '.' (a DNS name)"
        )
    return party


def read_limited(path: Path, what: str, limit: int = MAX_PEM_BYTES) -> bytes:
    """A file that came from someone else, refused when missing or larger than ``limit`` bytes."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} is missing")
    if path.stat().st_size > limit:
        raise ConfigError(f"{what} {path} is larger than {limit} bytes")
    return path.read_bytes()


def load_certificate(path: Path, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(read_limited(path, what))
    except ValueError as exc:
        raise ConfigError(f"{what} {path} is not a PEM certificate: {exc}") from None


RENEW_PARTY_CERT = ("the CA operator renews it from the party's request.csr and signing.pub (`isthmus ca sign "
                    "--renew`), and `isthmus keys install --cert` puts it in place")


def days_left(cert: x509.Certificate, path: Path, what: str, remedy: str = RENEW_PARTY_CERT) -> int:
    """Whole days until the certificate expires; refused when it has expired or is not valid yet (this
    machine's clock behind), since TLS would then fail with only a handshake error on the peer's side."""
    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc <= now:
        raise ConfigError(f"{what} {path} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC: {remedy}")
    if cert.not_valid_before_utc > now:
        raise ConfigError(f"{what} {path} is valid only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC, and "
                          f"this machine's clock says {now:%Y-%m-%d %H:%M} UTC: set the clock right")
    return (cert.not_valid_after_utc - now).days


def write_private_key(path: Path, key: PrivateKey) -> None:
    """Create the file with mode 0600, whole or not at all; never overwrite."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        create_private(path, pem)
    except FileExistsError:
        raise ConfigError(f"{path} exists already; a private key is never overwritten") from None


@contextmanager
def removed_on_failure(*keys: Path) -> Iterator[None]:
    """Remove the private keys ``keys``, made in the block, if the block fails: left without the request or
    certificate made with them, they would block the command's next try (a key is never overwritten)."""
    try:
        yield
    except BaseException:
        for key in keys:
            key.unlink(missing_ok=True)
        raise


def load_private_key(path: Path, what: str) -> PrivateKey:
    """A private key of ours; refused when others may read the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} is missing")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{what} {path} is accessible to other users; run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(read_limited(path, what), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what} {path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, PrivateKey):
        raise ConfigError(f"{what} {path} holds a {type(key).__name__}, not an EC P-256 or Ed25519 key")
    return key


def write_public(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write a public file whole (via a temporary file), refusing to replace one unless asked."""
    path = Path(path)
    if path.exists() and not replace:
        raise ConfigError(f"{path} exists already; remove it first to write a new one")
    write_whole(path, data)


def raw_public_key(key: ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey) -> str:
    """The raw 32-byte public key in hex: how the federation file pins it."""
    public = key.public_key() if isinstance(key, ed25519.Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def possession_message(party: str, tls_public_key: ec.EllipticCurvePublicKey) -> bytes:
    """What a party signs with its new signing key: this key is ``party``'s, beside this TLS key.

    The CA operator checks the signature, so nobody can have another party's signing key pinned
    under their own name, and the key travels bound to the request it was made with.
    """
    spki = tls_public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _PROOF_CONTEXT + party.encode() + b"\x00" + hashlib.sha256(spki).digest()


def read_federation(path: Path) -> dict:
    """The federation file as a document whose ``signing_keys`` map member names to hex public keys."""
    try:
        doc = json.loads(read_limited(path, "federation file", MAX_FEDERATION_BYTES))
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than any real file's
        raise ConfigError(f"federation file {path} is not JSON: {type(exc).__name__}") from None
    if not isinstance(doc, dict) or not _names_to_hex(doc.get("signing_keys")):
        raise ConfigError(f"federation file {path}: 'signing_keys' must map party names to 32-byte public keys in hex")
    if not _names_to_hex(doc.get(TLS_KEYS, {})):
        raise ConfigError(f"federation file {path}: '{TLS_KEYS}' must map party names to SHA-256 digests in hex")
    return doc


def _names_to_hex(pinned: object) -> bool:
    return isinstance(pinned, dict) and all(
        isinstance(name, str) and _PARTY_NAME.fullmatch(name) and isinstance(key, str) and _HEX_KEY.fullmatch(key)
        for name, key in pinned.items())


def tls_key_digest(key: ec.EllipticCurvePublicKey) -> str:
    """What the federation file pins of a member's TLS key: the SHA-256 of its DER SubjectPublicKeyInfo."""
    return hashlib.sha256(key.public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def pin_tls_key(path: Path, party: str, digest: str) -> str | None:
    """Pin ``party``'s TLS key (:func:`tls_key_digest`) in the federation file; returns the digest it replaces
    (a re-key), if any. Unlike a signing key's, it may change: a member whose TLS key leaked makes a new one."""
    doc = read_federation(path)
    pinned = doc.get(TLS_KEYS, {})
    write_federation(path, {**doc, TLS_KEYS: {**pinned, party: digest}})
    return pinned.get(party) if pinned.get(party) != digest else None


def load_pinned_tls_keys(federation_file: Path) -> dict[str, str]:
    """Each member's pinned TLS key digest; none from a file without them (made before they were pinned)."""
    return dict(read_federation(federation_file).get(TLS_KEYS, {})) if Path(federation_file).is_file() else {}


def write_federation(path: Path, doc: dict) -> None:
    write_public(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), replace=True)


def pin_signing_key(path: Path, party: str, key_hex: str) -> None:
    """Add one member's public signing key to the federation file; a pinned key is never replaced."""
    doc = read_federation(path) if Path(path).exists() else {"signing_keys": {}}
    pinned = doc["signing_keys"]
    if party in pinned:
        raise ConfigError(f"party {party!r} already has a pinned signing key in {path}; a pinned key is never replaced")
    holder = next((name for name, key in pinned.items() if key == key_hex), None)
    if holder is not None:
        raise ConfigError(f"this signing key is pinned for party {holder!r} in {path} already; one key per party")
    write_federation(path, {**doc, "signing_keys": {**pinned, party: key_hex}})


def load_signing_key(certs_dir: Path, party: str) -> Ed25519PrivateKey:
    """``certs_dir/<party>/signing.key``; refuses a key file that others may read."""
    path = Path(certs_dir) / party / SIGNING_KEY
    key = load_private_key(path, f"signing key of party {party!r} (made by `isthmus keys init`)")
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key")
    return key


def load_pinned_keys(federation_file: Path) -> dict[str, Ed25519PublicKey]:
    """The public signing key of every member, as pinned in the federation file."""
    pinned = read_federation(federation_file)["signing_keys"]
    return {party: Ed25519PublicKey.from_public_bytes(bytes.fromhex(key)) for party, key in pinned.items()}


def federation_file(certs_dir: Path) -> Path:
    return Path(certs_dir) / FEDERATION_FILE


def check_keys(me: str, parties: Iterable[str], signing_key: Ed25519PrivateKey,
               pinned: dict[str, Ed25519PublicKey]) -> None:
    """Every party has a pinned key, and ``me`` holds the private half of its own."""
    unpinned = sorted(set(parties) - set(pinned))
    if unpinned:
        raise ConfigError(f"the federation file pins no signing key for {unpinned}")
    if raw_public_key(signing_key) != raw_public_key(pinned[me]):
        raise ConfigError(f"party {me!r}: its signing key is not the one the federation file pins for it")
