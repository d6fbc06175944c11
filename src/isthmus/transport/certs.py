"""A federation's certificates: one CA, one certificate per party, for mutual TLS between nodes.

The party name is the identity: it is the certificate's common name and its only DNS subject
alternative name, so a node can check that a peer is who it claims to be, and a client can check
that it reached the party it meant to. Keys are EC P-256 (what every TLS stack and gRPC accept).

Across machines, each party makes its own keys and a certificate request
(:mod:`isthmus.transport.party_keys`), the CA operator signs requests and pins each party's public
signing key in ``federation.json`` (:mod:`isthmus.transport.ca`), and the party installs what comes
back; no one but the party ever holds its private keys. :func:`create_federation` runs the same
steps for every party in one folder: the one-machine shortcut (tests, demos, ``isthmus launch``),
where whoever holds the folder holds every key. The folder layout is in
:mod:`isthmus.transport.keyfiles`.
"""

from __future__ import annotations

import logging
import stat
from dataclasses import dataclass
from pathlib import Path

from isthmus.errors import ConfigError
from isthmus.transport.ca import init_ca, sign_request
from isthmus.transport.keyfiles import (
    CA_CERT,
    CA_KEY,
    FEDERATION_FILE,
    PARTY_CERT,
    PARTY_KEY,
    RENEW_PARTY_CERT,
    SIGNING_KEY,
    check_party_name,
    days_left,
    load_certificate,
    load_pinned_tls_keys,
)
from isthmus.transport.party_keys import init_party_keys

__all__ = ["CA_CERT", "CA_KEY", "FEDERATION_FILE", "PARTY_CERT", "PARTY_KEY", "SIGNING_KEY", "TlsFiles",
           "create_federation", "tls_files_for"]

WARN_DAYS = 30
_NEW_CA = ("every party's certificate ends with it; the federation needs a new CA (`isthmus ca init`), and each "
           "member its certificate from it")
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsFiles:
    """Where one party's TLS material lives: the federation CA, its certificate and its private key, and the
    federation file that pins each member's TLS key (none: any certificate of the CA naming a member will do)."""

    ca_cert: Path
    cert: Path
    key: Path
    federation: Path | None = None

    def pinned_tls_keys(self) -> dict[str, str]:
        """Each member's pinned TLS key digest, from the federation file (:func:`load_pinned_tls_keys`)."""
        return load_pinned_tls_keys(self.federation) if self.federation is not None else {}

    def load(self) -> tuple[bytes, bytes, bytes]:
        """The PEM bytes ``(ca, cert, key)``; refuses a private key that others may read."""
        if self.key.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"private key {self.key} is accessible to other users; run: chmod 600 {self.key}")
        return self.ca_cert.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()


def create_federation(out_dir: Path, parties: list[str], *, valid_days: int = 365) -> dict[str, TlsFiles]:
    """One machine's shortcut: a new CA in ``out_dir`` and every party's keys and certificate beside it.

    Writes ``ca.pem``, ``ca.key``, ``federation.json`` and, per party, the files of
    ``isthmus keys init`` plus ``cert.pem``. Refuses to replace an existing CA.
    """
    out_dir = Path(out_dir)
    if len(set(parties)) != len(parties):
        raise ConfigError(f"party names must be unique: {parties}")
    for party in parties:
        check_party_name(party)
    init_ca(out_dir, valid_days=valid_days)
    for party in parties:
        request = init_party_keys(out_dir, party)
        sign_request(out_dir, request.request, request.signing_pub, out=out_dir / party / PARTY_CERT,
                     valid_days=valid_days)
    return {party: tls_files_for(out_dir, party) for party in parties}


def tls_files_for(cert_dir: Path, party: str) -> TlsFiles:
    """The TLS files of ``party`` in its certificate folder (layout in :mod:`isthmus.transport.keyfiles`)."""
    cert_dir = Path(cert_dir)
    files = TlsFiles(cert_dir / CA_CERT, cert_dir / party / PARTY_CERT, cert_dir / party / PARTY_KEY,
                     cert_dir / FEDERATION_FILE)
    missing = [str(p) for p in (files.ca_cert, files.cert, files.key) if not p.is_file()]
    if missing and cert_dir.name == party and (cert_dir.parent / CA_CERT).is_file():
        raise ConfigError(f"{cert_dir} is the folder of party {party!r} itself; give the one that holds it and "
                          f"{CA_CERT}: {cert_dir.parent}")
    if missing:
        raise ConfigError(f"TLS files for party {party!r} are missing: {', '.join(missing)} (make them with "
                          "`isthmus keys init` and install the CA's answer with `isthmus keys install`, or on one "
                          "machine with `isthmus certs`)")
    _check_dates(files, party)
    return files


def _check_dates(files: TlsFiles, party: str) -> None:
    """Refuse certificates TLS would refuse, naming the file and the remedy, and warn a month ahead."""
    for path, what, remedy in ((files.ca_cert, "the federation CA's certificate", _NEW_CA),
                               (files.cert, f"{party}'s certificate", RENEW_PARTY_CERT)):
        left = days_left(load_certificate(path, what), path, what, remedy)
        if left < WARN_DAYS:
            _log.warning("%s %s expires in %d days; %s", what, path, left, remedy)
