"""Federation CA and party certificates: names, signatures, file modes, refusals.

Hostile requests and files are in tests/adversarial/test_adv_keys.py; the whole multi-machine flow
with a real job in tests/test_e2e_keys.py.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_helpers import redate

from isthmus.errors import ConfigError
from isthmus.transport.keyfiles import federation_file, load_pinned_keys, load_signing_key, tls_key_digest
from isthmus.incentive.signing import same_key
from isthmus.transport.ca import init_ca, sign_request
from isthmus.transport.certs import TlsFiles, create_federation, tls_files_for
from isthmus.transport.party_keys import init_party_keys, install_party_files


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
    with pytest.raises(ConfigError, match="isthmus ca sign"):
        create_federation(tmp_path, ["host"])
    assert (tmp_path / "ca.key").read_bytes() == before


def test_the_federation_file_pins_each_partys_own_signing_key(federation):
    out, files = federation
    pinned = load_pinned_keys(federation_file(out))
    assert sorted(pinned) == sorted(files)
    for party in files:
        assert same_key(pinned[party], load_signing_key(out, party).public_key())
        assert _mode(out / party / "signing.key") == 0o600


@pytest.mark.parametrize("name", ["Guest", "host_1", "", "-host", "a/b", "../x", "host\n"])
def test_names_that_cannot_be_dns_names_are_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="party name"):
        create_federation(tmp_path, [name])
    assert not (tmp_path / "ca.key").exists()


def test_duplicate_party_names_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unique"):
        create_federation(tmp_path, ["guest", "guest"])


def test_a_party_makes_its_keys_and_the_ca_signs_its_request(tmp_path):
    made = init_party_keys(tmp_path / "host-machine", "host")
    folder = tmp_path / "host-machine" / "host"
    assert {p.name for p in folder.iterdir()} == {"key.pem", "signing.key", "request.csr", "signing.pub"}
    assert _mode(folder) == 0o700 and _mode(folder / "key.pem") == 0o600 and _mode(folder / "signing.key") == 0o600
    assert json.loads(made.signing_pub.read_text())["signing_key"] == made.signing_key

    init_ca(tmp_path / "ca")
    issued = sign_request(tmp_path / "ca", made.request, made.signing_pub)
    assert issued.party == "host" and issued.cert == tmp_path / "ca" / "issued" / "host.pem"
    cert = _cert(issued.cert)
    cert.verify_directly_issued_by(_cert(tmp_path / "ca" / "ca.pem"))
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == ["host"]
    pinned_tls_key = tls_key_digest(cert.public_key())  # the request's key, which the certificate carries
    assert json.loads((tmp_path / "ca" / "federation.json").read_text()) == {"signing_keys": {"host": made.signing_key},
                                                                           "tls_keys": {"host": pinned_tls_key}}

    with pytest.raises(ConfigError, match=r"holds no federation CA certificate yet: install it with host's certificate "
                                          r"\(add `--ca ca.pem`"):  # it said neither the option nor the file
        install_party_files(tmp_path / "host-machine", "host", cert=issued.cert)
    written = install_party_files(tmp_path / "host-machine", "host", cert=issued.cert, ca=tmp_path / "ca" / "ca.pem",
                                  federation=tmp_path / "ca" / "federation.json")
    assert sorted(p.name for p in written) == ["ca.pem", "cert.pem", "federation.json"]
    tls = tls_files_for(tmp_path / "host-machine", "host")
    assert tls.load()[1] == issued.cert.read_bytes()
    assert same_key(load_pinned_keys(federation_file(tmp_path / "host-machine"))["host"],
                    load_signing_key(tmp_path / "host-machine", "host").public_key())


def test_a_member_installs_a_newer_federation_file_that_adds_a_member(tmp_path):
    init_ca(tmp_path / "ca")
    for party in ("guest", "host"):
        made = init_party_keys(tmp_path / party, party)
        issued = sign_request(tmp_path / "ca", made.request, made.signing_pub)
        install_party_files(tmp_path / party, party, cert=issued.cert, ca=tmp_path / "ca" / "ca.pem",
                            federation=tmp_path / "ca" / "federation.json")
    assert sorted(load_pinned_keys(federation_file(tmp_path / "guest"))) == ["guest"]
    install_party_files(tmp_path / "guest", "guest", federation=tmp_path / "ca" / "federation.json")
    assert sorted(load_pinned_keys(federation_file(tmp_path / "guest"))) == ["guest", "host"]


def test_a_partys_keys_are_never_overwritten(tmp_path):
    init_party_keys(tmp_path, "guest")
    before = (tmp_path / "guest" / "key.pem").read_bytes(), (tmp_path / "guest" / "signing.key").read_bytes()
    with pytest.raises(ConfigError, match="never overwritten"):
        init_party_keys(tmp_path, "guest")
    assert ((tmp_path / "guest" / "key.pem").read_bytes(), (tmp_path / "guest" / "signing.key").read_bytes()) == before


def test_a_second_ca_in_one_folder_is_refused(tmp_path):
    init_ca(tmp_path)
    with pytest.raises(ConfigError, match="exists already"):
        init_ca(tmp_path)


def test_signing_without_a_ca_names_the_missing_file(tmp_path):
    made = init_party_keys(tmp_path / "guest-machine", "guest")
    with pytest.raises(ConfigError, match=r"ca\.pem is missing"):
        sign_request(tmp_path / "nowhere", made.request, made.signing_pub)


def test_missing_files_are_named(tmp_path):
    create_federation(tmp_path, ["guest"])
    with pytest.raises(ConfigError, match=r"host[/\\]cert\.pem"):
        tls_files_for(tmp_path, "host")


def test_a_key_readable_by_others_is_refused(tmp_path):
    tls = create_federation(tmp_path, ["guest"])["guest"]
    tls.key.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        tls.load()


def test_a_ca_outlives_the_certificates_it_signs(tmp_path):
    """A member's certificate is renewed each year; the CA, which cannot be, lasts ten by default."""
    init_ca(tmp_path / "ca")
    made = init_party_keys(tmp_path / "guest-machine", "guest")
    issued = sign_request(tmp_path / "ca", made.request, made.signing_pub, valid_days=100_000)
    ca_end = _cert(tmp_path / "ca" / "ca.pem").not_valid_after_utc
    assert (ca_end - dt.datetime.now(dt.UTC)).days >= 3649
    assert issued.valid_until == _cert(issued.cert).not_valid_after_utc == ca_end and issued.ends_with_ca  # never beyond
    assert not sign_request(tmp_path / "ca", made.request, made.signing_pub, renew=True).ends_with_ca


def test_a_member_renews_its_certificate_and_nothing_else_changes(tmp_path):
    init_ca(tmp_path / "ca")
    made = init_party_keys(tmp_path / "guest-machine", "guest")
    first = sign_request(tmp_path / "ca", made.request, made.signing_pub, valid_days=10)
    install_party_files(tmp_path / "guest-machine", "guest", cert=first.cert, ca=tmp_path / "ca" / "ca.pem",
                        federation=tmp_path / "ca" / "federation.json")
    pins = (tmp_path / "ca" / "federation.json").read_bytes()
    with pytest.raises(ConfigError, match="add --renew"):
        sign_request(tmp_path / "ca", made.request, made.signing_pub)
    earlier = _cert(first.cert)

    renewed = sign_request(tmp_path / "ca", made.request, made.signing_pub, renew=True)
    assert renewed.cert == first.cert and (renewed.valid_until - earlier.not_valid_after_utc).days >= 354
    kept = tmp_path / "ca" / "issued" / f"guest.{earlier.serial_number:x}.pem"
    assert _cert(kept) == earlier  # what was issued stays on record
    assert (tmp_path / "ca" / "federation.json").read_bytes() == pins
    install_party_files(tmp_path / "guest-machine", "guest", cert=renewed.cert)
    assert tls_files_for(tmp_path / "guest-machine", "guest").load()[1] == renewed.cert.read_bytes()


def test_only_a_member_is_renewed(tmp_path):
    init_ca(tmp_path / "ca")
    made = init_party_keys(tmp_path / "host-machine", "host")
    with pytest.raises(ConfigError, match="'host' is not a member.*without --renew"):
        sign_request(tmp_path / "ca", made.request, made.signing_pub, renew=True)
    assert not (tmp_path / "ca" / "issued").exists()


def test_an_expired_certificate_is_refused_before_anything_starts(tmp_path):
    """TLS would refuse it too, but the peers would see only a failed handshake, and this party a silent wait."""
    create_federation(tmp_path, ["guest"])
    redate(tmp_path, "guest", starts_in_days=-400, ends_in_days=-1)
    with pytest.raises(ConfigError, match=r"guest's certificate .*cert\.pem expired on .*ca sign --renew"):
        tls_files_for(tmp_path, "guest")


def test_a_certificate_not_valid_yet_names_the_clock(tmp_path):
    create_federation(tmp_path, ["guest"])
    redate(tmp_path, "guest", starts_in_days=2, ends_in_days=300)
    with pytest.raises(ConfigError, match="valid only from .* set the clock right"):
        tls_files_for(tmp_path, "guest")


def test_a_certificate_about_to_expire_is_warned_of(tmp_path, caplog):
    create_federation(tmp_path, ["guest", "host"])
    redate(tmp_path, "guest", starts_in_days=-350, ends_in_days=12.5)
    with caplog.at_level(logging.WARNING, logger="isthmus.transport.certs"):
        tls_files_for(tmp_path, "host")
        assert caplog.messages == []
        tls_files_for(tmp_path, "guest")
    assert len(caplog.messages) == 1 and re.search(r"guest's certificate .* expires in 12 days; .*--renew", caplog.messages[0])
