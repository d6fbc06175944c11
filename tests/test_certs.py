"""Federation CA and party certificates: names, signatures, file modes, refusals."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from isthmus.errors import ConfigError
from isthmus.transport.certs import (
    TlsFiles,
    create_federation,
    issue_party_certificate,
    tls_files_for,
)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, TlsFiles]]:
    out = tmp_path_factory.mktemp("fed")
    return out, create_federation(out, ["guest", "host-1", "arbiter"], valid_days=30)


def test_party_certificate_names_the_party_and_is_signed_by_the_ca(federation):
    out, files = federation
    ca = _cert(out / "ca.pem")
    for party, tls in files.items():
        cert = _cert(tls.cert)
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == party
        assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [party]
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert 29 <= lifetime.days <= 30


def test_ca_is_a_ca_and_private_keys_are_owner_only(federation):
    out, files = federation
    assert _cert(out / "ca.pem").extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert _mode(out / "ca.key") == 0o600
    for tls in files.values():
        assert _mode(tls.key) == 0o600
        assert tls.ca_cert == out / "ca.pem"


def test_load_returns_pem_bytes_and_tls_files_for_finds_them(federation):
    out, files = federation
    found = tls_files_for(out, "guest")
    assert found == files["guest"]
    ca, cert, key = found.load()
    assert ca.startswith(b"-----BEGIN CERTIFICATE") and cert.startswith(b"-----BEGIN CERTIFICATE")
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    assert load_pem_private_key(key, password=None).public_key() is not None


def test_every_federation_has_its_own_ca(tmp_path):
    first = create_federation(tmp_path / "one", ["guest"])["guest"]
    second = create_federation(tmp_path / "two", ["guest"])["guest"]
    with pytest.raises((ValueError, TypeError)):
        _cert(second.cert).verify_directly_issued_by(_cert(first.ca_cert))


def test_existing_federation_is_never_overwritten(tmp_path):
    create_federation(tmp_path, ["guest"])
    before = (tmp_path / "ca.key").read_bytes()
    with pytest.raises(ConfigError, match="issue_party_certificate"):
        create_federation(tmp_path, ["host"])
    assert (tmp_path / "ca.key").read_bytes() == before


@pytest.mark.parametrize("name", ["Guest", "host_1", "", "-host", "a/b", "../x", "host\n"])
def test_names_that_cannot_be_dns_names_are_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="party name"):
        create_federation(tmp_path, [name])
    assert not (tmp_path / "ca.key").exists()


def test_duplicate_party_names_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unique"):
        create_federation(tmp_path, ["guest", "guest"])


def test_new_member_joins_an_existing_federation(tmp_path):
    create_federation(tmp_path / "fed", ["guest"])
    joined = issue_party_certificate(tmp_path / "fed", "host", tmp_path / "ship")
    assert joined == tls_files_for(tmp_path / "ship", "host")
    assert (tmp_path / "ship" / "ca.pem").read_bytes() == (tmp_path / "fed" / "ca.pem").read_bytes()
    _cert(joined.cert).verify_directly_issued_by(_cert(tmp_path / "fed" / "ca.pem"))
    assert _mode(joined.key) == 0o600


def test_issuing_twice_for_one_party_is_refused(tmp_path):
    create_federation(tmp_path, ["guest"])
    with pytest.raises(ConfigError, match="already has a certificate"):
        issue_party_certificate(tmp_path, "guest", tmp_path)


def test_issuing_into_a_folder_of_another_federation_is_refused(tmp_path):
    create_federation(tmp_path / "one", ["guest"])
    create_federation(tmp_path / "two", ["guest"])
    with pytest.raises(ConfigError, match="another federation"):
        issue_party_certificate(tmp_path / "one", "host", tmp_path / "two")


def test_issuing_without_a_ca_names_the_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"ca\.pem is missing"):
        issue_party_certificate(tmp_path, "guest", tmp_path / "out")


def test_missing_files_are_named(tmp_path):
    create_federation(tmp_path, ["guest"])
    with pytest.raises(ConfigError, match=r"host[/\\]cert\.pem"):
        tls_files_for(tmp_path, "host")


def test_a_key_readable_by_others_is_refused(tmp_path):
    tls = create_federation(tmp_path, ["guest"])["guest"]
    tls.key.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        tls.load()
