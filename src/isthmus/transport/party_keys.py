"""A party's own keys: made on its own machine, never seen by anyone else.

``init_party_keys`` makes the party's TLS key and Ed25519 signing key (0600, never overwritten)
and the two public files it sends to the CA operator: a certificate signing request naming the
party, and its public signing key with a proof that the holder of that key made it for this party
and this request. ``install_party_files`` takes back what the CA operator returns (the party's
certificate, ``ca.pem``, ``federation.json``) after checking that each fits the keys in the folder,
so that :func:`isthmus.transport.certs.tls_files_for` and the ledger find everything.
``rekey_party_keys`` makes a member's next TLS key and its request, for a key that may have leaked.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from isthmus.errors import ConfigError
from isthmus.files import sync_folder
from isthmus.transport.keyfiles import (
    CA_CERT,
    FEDERATION_FILE,
    NEXT_KEY,
    PARTY_CERT,
    PARTY_KEY,
    REQUEST,
    SIGNING_KEY,
    SIGNING_PUB,
    TLS_KEYS,
    check_party_name,
    days_left,
    load_certificate,
    load_private_key,
    possession_message,
    raw_public_key,
    read_federation,
    read_limited,
    removed_on_failure,
    tls_key_digest,
    write_private_key,
    write_public,
)

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartyRequest:
    """What a party sends to the CA operator (both files are public)."""

    party: str
    request: Path
    signing_pub: Path
    signing_key: str  # the public signing key in hex, to compare with the federation file out of band


def init_party_keys(cert_dir: Path, party: str) -> PartyRequest:
    """Make ``<cert_dir>/<party>/``: key.pem, signing.key (0600), request.csr and signing.pub."""
    party = check_party_name(party)
    folder = Path(cert_dir) / party
    for key_file in (folder / PARTY_KEY, folder / SIGNING_KEY):
        if key_file.exists():
            raise ConfigError(f"party {party!r} has keys in {folder} already; private keys are never overwritten")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    tls_key = ec.generate_private_key(ec.SECP256R1())
    signing_key = ed25519.Ed25519PrivateKey.generate()
    with removed_on_failure(folder / PARTY_KEY, folder / SIGNING_KEY):
        write_private_key(folder / PARTY_KEY, tls_key)
        write_private_key(folder / SIGNING_KEY, signing_key)
        return _request(folder, party, tls_key, signing_key)


def rekey_party_keys(cert_dir: Path, party: str) -> PartyRequest:
    """A new TLS key for a member whose key may have leaked: ``key.next.pem`` (0600) and its request, proven
    with the member's pinned signing key. ``key.pem`` serves until the certificate for the new key is
    installed (:func:`install_party_files`), which puts the new key in its place."""
    party = check_party_name(party)
    folder = Path(cert_dir) / party
    signing_key = load_private_key(folder / SIGNING_KEY, f"{party}'s signing key (made by `isthmus keys init`)")
    if (folder / NEXT_KEY).exists():
        raise ConfigError(f"{folder / NEXT_KEY} exists already: a re-key is under way; send its request.csr and "
                          "signing.pub to the CA operator (`ca sign --renew`) and install the certificate it returns")
    tls_key = ec.generate_private_key(ec.SECP256R1())
    with removed_on_failure(folder / NEXT_KEY):
        write_private_key(folder / NEXT_KEY, tls_key)
        return _request(folder, party, tls_key, signing_key)


def _request(folder: Path, party: str, tls_key: ec.EllipticCurvePrivateKey,
             signing_key: ed25519.Ed25519PrivateKey) -> PartyRequest:
    """Write ``request.csr`` for ``tls_key`` and ``signing.pub``, whose proof binds the signing key to it."""
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(party)]), critical=False)
        .sign(tls_key, hashes.SHA256())
    )
    write_public(folder / REQUEST, request.public_bytes(serialization.Encoding.PEM), replace=True)
    public = raw_public_key(signing_key)
    proof = signing_key.sign(possession_message(party, tls_key.public_key()))
    document = {"party": party, "signing_key": public, "proof": proof.hex()}
    write_public(folder / SIGNING_PUB, (json.dumps(document, indent=2) + "\n").encode(), replace=True)
    return PartyRequest(party, folder / REQUEST, folder / SIGNING_PUB, public)


def install_party_files(cert_dir: Path, party: str, *, cert: Path | None = None, ca: Path | None = None,
                        federation: Path | None = None) -> list[Path]:
    """Check and copy what the CA operator sent into the party's folder; returns the files written.

    The certificate must name the party, hold the public half of ``key.pem`` (or of a re-key's
    ``key.next.pem``, which then replaces it) and be signed by the CA; a folder's CA is never replaced by
    another; the federation file must pin this party's own signing key (and TLS key, if it pins one) and
    keep every signing key pinned in the copy installed before (a new member may be added, a pinned
    signing key never changes).
    """
    party = check_party_name(party)
    cert_dir = Path(cert_dir)
    folder = cert_dir / party
    if cert is None and ca is None and federation is None:
        raise ConfigError("nothing to install: give the party's certificate, the CA certificate or the federation file")
    tls_keys = {name: load_private_key(folder / name, f"{party}'s private key")
                for name in (PARTY_KEY, NEXT_KEY) if name == PARTY_KEY or (folder / name).exists()}
    signing_key = load_private_key(folder / SIGNING_KEY, f"{party}'s signing key")
    writes: dict[Path, bytes] = {}
    ca_cert = _installed_ca(cert_dir, ca, writes)
    rekeyed = False
    if cert is not None:
        if ca_cert is None:
            raise ConfigError(f"{cert_dir} holds no federation CA certificate yet: install it with {party}'s "
                              f"certificate (add `--ca {CA_CERT}`, the file the CA operator sent), which is checked "
                              "against it")
        writes[folder / PARTY_CERT], key_file = _checked_certificate(cert, party, tls_keys, ca_cert)
        rekeyed = key_file == NEXT_KEY
    if federation is not None:
        writes[cert_dir / FEDERATION_FILE] = _checked_federation(federation, party, signing_key,
                                                                 cert_dir / FEDERATION_FILE, tls_keys.values())
    for path, data in writes.items():
        write_public(path, data, replace=True)
    if rekeyed:  # the certificate is for the new key: it takes the old one's place, which is gone
        os.replace(folder / NEXT_KEY, folder / PARTY_KEY)
        sync_folder(folder)
    return list(writes)


def _installed_ca(cert_dir: Path, ca: Path | None, writes: dict[Path, bytes]) -> x509.Certificate | None:
    installed = cert_dir / CA_CERT
    if ca is None:
        return load_certificate(installed, "federation CA certificate") if installed.exists() else None
    pem = read_limited(ca, "federation CA certificate")
    ca_cert = load_certificate(ca, "federation CA certificate")
    try:
        is_ca = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        is_ca = False
    if not is_ca:
        raise ConfigError(f"{ca} is not a CA certificate")
    if installed.exists() and installed.read_bytes() != pem:
        raise ConfigError(f"{installed} is the certificate of another federation CA; a folder's CA is never replaced")
    writes[installed] = pem
    return ca_cert


def _checked_certificate(path: Path, party: str, tls_keys: dict[str, ec.EllipticCurvePrivateKey],
                         ca_cert: x509.Certificate) -> tuple[bytes, str]:
    """The certificate's PEM, and the name of the key file whose public half it holds."""
    pem = read_limited(path, "certificate")
    cert = load_certificate(path, "certificate")
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except (x509.ExtensionNotFound, ValueError):
        names = []
    if names != [party]:
        raise ConfigError(f"certificate {path} names {names}, not party {party!r}")
    key_file = next((name for name, key in tls_keys.items()
                     if tls_key_digest(key.public_key()) == tls_key_digest(cert.public_key())), None)
    if key_file is None:
        raise ConfigError(f"certificate {path} is not for {party}'s private key (made from another request?)")
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise ConfigError(f"certificate {path} is not signed by the federation CA") from None
    days_left(cert, path, "certificate", "ask the CA operator for a new one (`isthmus ca sign --renew`)")
    return pem, key_file


def _checked_federation(path: Path, party: str, signing_key: ed25519.Ed25519PrivateKey, installed: Path,
                        tls_keys: Iterable[ec.EllipticCurvePrivateKey]) -> bytes:
    doc = read_federation(path)
    pinned = doc["signing_keys"]
    if pinned.get(party) != raw_public_key(signing_key):
        raise ConfigError(f"federation file {path} does not pin {party}'s own signing key "
                          f"({'it pins another' if party in pinned else 'it has no key for ' + party})")
    own = {tls_key_digest(key.public_key()) for key in tls_keys}  # key.pem, and a re-key's new key
    if doc.get(TLS_KEYS, {}).get(party, next(iter(own))) not in own:
        raise ConfigError(f"federation file {path} pins another TLS key for {party} than its key.pem: every member "
                          f"installing it would refuse {party}'s certificate (a file older than a re-key, or another "
                          "party's folder?)")
    if installed.exists():
        earlier = read_federation(installed)
        changed = sorted(name for name, key in earlier["signing_keys"].items() if pinned.get(name) != key)
        if changed:
            raise ConfigError(f"federation file {path} would replace or drop the pinned signing keys of {changed}; "
                              "a pinned key is never replaced")
        rekeyed = sorted(name for name, key in earlier.get(TLS_KEYS, {}).items()
                         if name != party and doc.get(TLS_KEYS, {}).get(name) != key)
        if rekeyed:
            _log.warning("federation file %s pins new TLS keys for %s (a re-key): compare them with those members "
                         "out of band; this party's node refuses their old keys once it starts again", path, rekeyed)
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
