"""What the gRPC transport tests share: a federation's certificates and nodes started on loopback."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from isthmus.transport.audit import AuditLog
from isthmus.transport.certs import TlsFiles, create_federation
from isthmus.transport.grpc_transport import GrpcNode
from isthmus.transport.keyfiles import load_private_key

PARTIES = ["alice", "bob", "carol", "dave"]


def make_certs(out: Path) -> Path:
    """Certificates for :data:`PARTIES`, and a rogue CA's certificate for ``bob``."""
    create_federation(out / "fed", PARTIES)
    create_federation(out / "rogue", ["bob"])  # same name, another CA
    return out


def redate(folder: Path, party: str, *, starts_in_days: float, ends_in_days: float, signer=None) -> None:
    """Re-sign ``party``'s certificate in a one-machine federation folder with other dates (an expired one, one
    not valid yet): what a year's wait or a wrong clock would give. ``signer``: another key than the folder's
    ``ca.key`` (for a folder without it, where only the dates matter)."""
    path = folder / party / "cert.pem"
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(ca.subject).public_key(cert.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now + dt.timedelta(days=starts_in_days))
               .not_valid_after(now + dt.timedelta(days=ends_in_days)))
    for extension in cert.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    signed = builder.sign(signer or load_private_key(folder / "ca.key", "CA key"), hashes.SHA256())
    path.write_bytes(signed.public_bytes(serialization.Encoding.PEM))


def tls(certs: Path, party: str, federation: str = "fed") -> TlsFiles:
    """``party``'s certificate from ``federation``, trusting the real federation's CA."""
    return TlsFiles(certs / "fed" / "ca.pem", certs / federation / party / "cert.pem", certs / federation / party / "key.pem")


@contextmanager
def node_starter(certs: Path, addresses: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., GrpcNode]]:
    """Start nodes named ``party`` (with ``cert_of``'s certificate, to impersonate), all stopped at the end.

    ``jobs`` are opened before the node serves, as a real party does.
    """
    started: list[GrpcNode] = []

    def start(party: str, *, cert_of: str | None = None, federation: str = "fed", peers: dict[str, str] | None = None,
              jobs: Iterable[str] = (), **options) -> GrpcNode:
        options.setdefault("connect_timeout", 5.0)
        options.setdefault("audit", AuditLog(tmp_path / party / "audit.jsonl", party))
        node = GrpcNode(party, addresses[party], addresses if peers is None else peers, tls(certs, cert_of or party, federation), **options)
        for job in jobs:
            node.open_job(job)
        node.start()
        started.append(node)
        return node

    try:
        yield start
    finally:
        for node in started:
            node.stop(grace=0)
