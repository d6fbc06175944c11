"""The federation CA: signs the parties' certificate requests and pins their public signing keys.

The CA operator never sees a party's private key: each party makes its keys on its own machine
(:mod:`isthmus.transport.party_keys`) and sends a certificate signing request plus its public
signing key. A request is hostile input until checked: its signature must verify (it was made by
the holder of its key and not altered since), its only name must be a valid party name, its key
must be EC P-256, and the name must not be a member already (unless the request renews a member's
certificate, proven by the signing key pinned for it). The certificate copies nothing from the
request but that name and that public key; everything else is the CA's choice.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from isthmus.errors import ConfigError
from isthmus.transport.keyfiles import (
    CA_CERT,
    CA_KEY,
    FEDERATION_FILE,
    ISSUED,
    check_party_name,
    days_left,
    load_certificate,
    load_private_key,
    pin_signing_key,
    pin_tls_key,
    possession_message,
    read_federation,
    read_limited,
    removed_on_failure,
    tls_key_digest,
    write_federation,
    write_private_key,
    write_public,
)

_CLOCK_SKEW = dt.timedelta(minutes=5)
#: A CA outlives its members' certificates, which it can renew: every certificate ends with the CA's.
CA_DAYS = 3650
PARTY_DAYS = 365


@dataclass(frozen=True)
class Issued:
    party: str
    cert: Path
    valid_until: dt.datetime
    ends_with_ca: bool  # shorter than asked: no certificate outlives the CA that signed it
    rekeyed: bool = False  # a renewal with another TLS key: every member needs the updated federation.json


def init_ca(ca_dir: Path, *, valid_days: int = CA_DAYS) -> Path:
    """Create the CA key (0600), its certificate ``ca.pem`` and an empty ``federation.json``.

    Refuses to replace an existing CA: that would silently cut every member issued by it out of
    the federation.
    """
    ca_dir = Path(ca_dir)
    if (ca_dir / CA_KEY).exists():
        raise ConfigError(f"{ca_dir / CA_KEY} exists already; add members with `isthmus ca sign`")
    ca_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"isthmus federation CA {os.urandom(4).hex()}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
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
    with removed_on_failure(ca_dir / CA_KEY):
        write_private_key(ca_dir / CA_KEY, key)
        write_public(ca_dir / CA_CERT, cert.public_bytes(serialization.Encoding.PEM), replace=True)
    if not (ca_dir / FEDERATION_FILE).exists():
        write_federation(ca_dir / FEDERATION_FILE, {"signing_keys": {}})
    return ca_dir / CA_CERT


def sign_request(ca_dir: Path, request: Path, signing_pub: Path, *, out: Path | None = None,
                 valid_days: int = PARTY_DAYS, renew: bool = False) -> Issued:
    """Check a party's request and public signing key, issue its certificate, pin its signing key.

    Writes the certificate to ``out`` (default ``<ca_dir>/issued/<party>.pem``) and adds the key, and a
    digest of the request's TLS key, to ``<ca_dir>/federation.json``, which every member then needs a copy
    of: a node refuses a certificate under a member's name with another TLS key (one the CA issued by hand,
    or a key replaced since). ``renew`` issues a member's next certificate instead: its signing key must be
    the one pinned; with the same TLS key nothing changes for the other members, with a new one (a re-key)
    the pin is replaced. The certificate it replaces is kept beside it, named by its serial number.
    """
    ca_dir = Path(ca_dir)
    ca_cert = load_certificate(ca_dir / CA_CERT, "federation CA certificate")
    ca_key = load_private_key(ca_dir / CA_KEY, "CA private key")
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{ca_dir / CA_KEY} is not the EC key `isthmus ca init` makes")
    days_left(ca_cert, ca_dir / CA_CERT, "the federation CA's certificate",
              "it can sign nothing more; the federation needs a new CA")
    csr = load_request(request)
    party = requested_name(csr, request)
    signing_hex = _checked_signing_key(signing_pub, party, csr.public_key())
    federation = ca_dir / FEDERATION_FILE
    pinned = read_federation(federation)["signing_keys"] if federation.exists() else {}
    out = Path(out) if out else ca_dir / ISSUED / f"{party}.pem"
    if renew:
        _check_renewal(party, signing_hex, pinned, federation)
        _keep_earlier(out)
    else:
        _check_new_member(party, pinned, federation, out)
    cert = _certificate(ca_cert, ca_key, party, csr.public_key(), valid_days)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_public(out, cert.public_bytes(serialization.Encoding.PEM))
    if not renew:
        try:
            pin_signing_key(federation, party, signing_hex)
        except ConfigError:
            out.unlink()  # no certificate without its pinned key
            raise
    replaced = pin_tls_key(federation, party, tls_key_digest(csr.public_key()))
    ends = cert.not_valid_after_utc
    return Issued(party, out, ends, ends == ca_cert.not_valid_after_utc, rekeyed=replaced is not None)


def _check_new_member(party: str, pinned: dict, federation: Path, out: Path) -> None:
    if party in pinned:
        raise ConfigError(f"party {party!r} already has a pinned signing key in {federation}; a pinned key is never "
                          "replaced, so a second request for one name is refused (to renew its certificate, add "
                          "--renew)")
    if out.exists():
        raise ConfigError(f"{out} exists already: a certificate for {party!r} was issued before")


def _check_renewal(party: str, signing_hex: str, pinned: dict, federation: Path) -> None:
    if party not in pinned:
        raise ConfigError(f"party {party!r} is not a member ({federation} pins no key for it): there is nothing to "
                          "renew; sign its request without --renew")
    if pinned[party] != signing_hex:
        raise ConfigError(f"the signing key in this request's signing.pub is not the one {federation} pins for "
                          f"{party!r}: a renewal keeps the member's signing key (a pinned key is never replaced)")


def _keep_earlier(out: Path) -> None:
    """Move the certificate a renewal replaces aside, named by its serial number: what was issued stays on record."""
    if out.exists():
        serial = load_certificate(out, "earlier certificate").serial_number
        out.rename(out.with_name(f"{out.stem}.{serial:x}{out.suffix}"))


def load_request(path: Path) -> x509.CertificateSigningRequest:
    """A PEM certificate signing request whose signature verifies under its own public key."""
    try:
        csr = x509.load_pem_x509_csr(read_limited(path, "certificate request"))
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM certificate signing request: {exc}") from None
    try:
        valid = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise ConfigError(f"certificate request {path}: its signature does not verify (altered after it was made, "
                          "or not made by the holder of its key)")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError(f"certificate request {path}: the key must be EC P-256 (make requests with `isthmus keys init`)")
    return csr


def requested_name(csr: x509.CertificateSigningRequest, path: Path) -> str:
    """The party a request names: its only subject attribute (CN) and its only DNS name, equal."""
    try:
        attributes = list(csr.subject)
        subject = csr.subject.rfc4514_string()
    except ValueError as exc:
        raise ConfigError(f"certificate request {path}: unreadable subject: {exc}") from None
    if len(attributes) != 1 or attributes[0].oid != NameOID.COMMON_NAME:
        raise ConfigError(f"certificate request {path}: the subject must be the party name alone (CN=<party>), "
                          f"not {subject!r}")
    name = check_party_name(attributes[0].value)
    try:
        alternatives = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ConfigError(f"certificate request {path}: it has no DNS name; it must name {name!r} there too") from None
    except ValueError as exc:  # duplicate or malformed extensions
        raise ConfigError(f"certificate request {path}: unreadable extensions: {exc}") from None
    if list(alternatives) != [x509.DNSName(name)]:
        raise ConfigError(f"certificate request {path}: its common name {name!r} and its alternative names "
                          f"{[str(a.value) for a in alternatives]} must be the same one party name")
    return name


def _checked_signing_key(path: Path, party: str, tls_key: ec.EllipticCurvePublicKey) -> str:
    """The public signing key in ``signing.pub``, after checking it was made for this party and request."""
    try:
        doc = json.loads(read_limited(path, "public signing key file", 4096))
        named, key_hex, proof = doc["party"], doc["signing_key"], bytes.fromhex(doc["proof"])
        key = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex))
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise ConfigError(f"{path} is not a public signing key file made by `isthmus keys init` "
                          f"({type(exc).__name__})") from None
    if named != party:
        raise ConfigError(f"{path} is the signing key of {named!r}, but the certificate request names {party!r}")
    try:
        key.verify(proof, possession_message(party, tls_key))
    except InvalidSignature:
        raise ConfigError(f"{path}: its proof does not verify for {party!r} and this certificate request (made for "
                          "another request, or altered)") from None
    return key_hex.lower()


def _certificate(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, party: str,
                 public_key: ec.EllipticCurvePublicKey, valid_days: int) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(min(now + dt.timedelta(days=valid_days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        # Every node is both a server (receiving) and a client (sending).
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(party)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


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
