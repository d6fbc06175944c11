"""A federation's certificates: one CA, one certificate per party, for mutual TLS between nodes.

The party name is the identity: it is the certificate's common name and its only DNS subject
alternative name, so a node can check that a peer is who it claims to be, and a client can check
that it reached the party it meant to. Keys are EC P-256 (what every TLS stack and gRPC accept);
private keys are created with mode 0600 and never overwritten.

Each party also gets an Ed25519 signing key (``<party>/signing.key``) for endorsing ledger records,
and the federation file (``federation.json``, beside ``ca.pem``) pins every party's public signing key.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from isthmus.errors import ConfigError

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
PARTY_CERT = "cert.pem"
PARTY_KEY = "key.pem"
SIGNING_KEY = "signing.key"
FEDERATION_FILE = "federation.json"

# Lower-case DNS names only: the name is compared byte for byte with the certificate, while TLS
# host name checks ignore case, so mixed case would let two spellings name one party.
_PARTY_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")
_CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class TlsFiles:
    """Where one party's TLS material lives: the federation CA, its certificate and its private key."""

    ca_cert: Path
    cert: Path
    key: Path

    def load(self) -> tuple[bytes, bytes, bytes]:
        """The PEM bytes ``(ca, cert, key)``; refuses a private key that others may read."""
        if self.key.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"private key {self.key} is accessible to other users; run: chmod 600 {self.key}")
        return self.ca_cert.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()


def create_federation(out_dir: Path, parties: list[str], *, valid_days: int = 365) -> dict[str, TlsFiles]:
    """Create a new federation CA in ``out_dir`` and issue one certificate per party.

    Writes ``ca.pem``, ``ca.key``, ``federation.json`` and ``<party>/cert.pem``, ``<party>/key.pem``,
    ``<party>/signing.key``. Refuses to replace an existing CA: that would silently cut every member
    issued by it out of the federation.
    """
    out_dir = Path(out_dir)
    if len(set(parties)) != len(parties):
        raise ConfigError(f"party names must be unique: {parties}")
    for party in parties:
        _check_party_name(party)
    if (out_dir / CA_KEY).exists():
        raise ConfigError(f"{out_dir / CA_KEY} exists already; use issue_party_certificate to add a member")
    out_dir.mkdir(parents=True, exist_ok=True)

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"isthmus federation CA {os.urandom(4).hex()}")])
    now = dt.datetime.now(dt.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private_key(out_dir / CA_KEY, key)
    (out_dir / CA_CERT).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files = {party: _issue(ca_cert, key, party, out_dir, valid_days) for party in parties}
    _pin_signing_keys(out_dir / FEDERATION_FILE, {party: _new_signing_key(out_dir / party) for party in parties})
    return files


def issue_party_certificate(ca_dir: Path, party: str, out_dir: Path, *, valid_days: int = 365) -> TlsFiles:
    """Issue a certificate for a party joining later, signed by the CA in ``ca_dir``.

    Writes ``out_dir/<party>/cert.pem``, ``key.pem`` and ``signing.key``, pins the signing key in the
    CA folder's ``federation.json`` (copied to ``out_dir``; the members need the new copy), and writes
    ``out_dir/ca.pem`` when ``out_dir`` is not the CA's own folder, so ``tls_files_for(out_dir, party)``
    finds everything.
    """
    ca_dir, out_dir = Path(ca_dir), Path(out_dir)
    _check_party_name(party)
    for required in (ca_dir / CA_CERT, ca_dir / CA_KEY):
        if not required.is_file():
            raise ConfigError(f"no federation CA here: {required} is missing")
    ca_pem = (ca_dir / CA_CERT).read_bytes()
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
    out_dir.mkdir(parents=True, exist_ok=True)
    copied_ca = out_dir / CA_CERT
    if not copied_ca.exists():
        copied_ca.write_bytes(ca_pem)
    elif copied_ca.read_bytes() != ca_pem:
        raise ConfigError(f"{copied_ca} belongs to another federation CA than {ca_dir / CA_CERT}")
    files = _issue(ca_cert, ca_key, party, out_dir, valid_days)
    _pin_signing_keys(ca_dir / FEDERATION_FILE, {party: _new_signing_key(out_dir / party)})
    if out_dir.resolve() != ca_dir.resolve():
        (out_dir / FEDERATION_FILE).write_bytes((ca_dir / FEDERATION_FILE).read_bytes())
    return files


def tls_files_for(cert_dir: Path, party: str) -> TlsFiles:
    """The TLS files of ``party`` in a folder laid out by :func:`create_federation`."""
    cert_dir = Path(cert_dir)
    files = TlsFiles(cert_dir / CA_CERT, cert_dir / party / PARTY_CERT, cert_dir / party / PARTY_KEY)
    missing = [str(p) for p in (files.ca_cert, files.cert, files.key) if not p.is_file()]
    if missing:
        raise ConfigError(f"TLS files for party {party!r} are missing: {', '.join(missing)} (run `isthmus certs`)")
    return files


def _issue(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, party: str, out_dir: Path, valid_days: int) -> TlsFiles:
    party_dir = out_dir / party
    files = TlsFiles(out_dir / CA_CERT, party_dir / PARTY_CERT, party_dir / PARTY_KEY)
    if files.key.exists() or files.cert.exists():
        raise ConfigError(f"party {party!r} already has a certificate in {party_dir}; remove it first to re-issue")
    party_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(min(now + dt.timedelta(days=valid_days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        # Every node is both a server (receiving) and a client (sending).
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(party)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private_key(files.key, key)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _new_signing_key(party_dir: Path) -> str:
    """Create ``party_dir/signing.key``; returns the raw public key in hex, as the federation file pins it."""
    key = ed25519.Ed25519PrivateKey.generate()
    _write_private_key(party_dir / SIGNING_KEY, key)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _pin_signing_keys(path: Path, keys: dict[str, str]) -> None:
    """Add parties' public signing keys to the federation file; a pinned key is never replaced."""
    pinned = json.loads(path.read_text(encoding="utf-8"))["signing_keys"] if path.exists() else {}
    taken = sorted(set(pinned) & set(keys))
    if taken:
        raise ConfigError(f"{path} already pins a signing key for {taken}")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"signing_keys": {**pinned, **keys}}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> None:
    """Create the file with mode 0600 from the start (no window where others may read it)."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def _check_party_name(party: str) -> None:
    if not isinstance(party, str) or not _PARTY_NAME.fullmatch(party):
        raise ConfigError(
            f"party name {party!r} cannot name a certificate: use lower-case letters, digits, '-' and '.' (a DNS name)"
        )
