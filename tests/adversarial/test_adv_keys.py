"""Joining a federation as an attacker: forged, altered or impostor certificate requests sent to the CA
operator, and swapped files sent back to a party. Each is refused with one clear line, and nothing is
issued or pinned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from isthmus.cli import app
from isthmus.errors import ConfigError
from isthmus.transport.ca import init_ca, sign_request
from isthmus.transport.keyfiles import pin_signing_key
from isthmus.transport.party_keys import PartyRequest, init_party_keys, install_party_files


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    """A CA that has admitted ``guest`` (made on its own machine, installed there)."""
    folder = tmp_path / "ca"
    init_ca(folder)
    made = init_party_keys(tmp_path / "guest-machine", "guest")
    issued = sign_request(folder, made.request, made.signing_pub)
    install_party_files(tmp_path / "guest-machine", "guest", cert=issued.cert, ca=folder / "ca.pem",
                        federation=folder / "federation.json")
    return folder


def cli(*args: str | Path):
    """``isthmus ARGS`` in process: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def forged_request(folder: Path, common_name: str, dns_names: list[str], key=None) -> Path:
    """A request built by hand, as an attacker would, with any names and key."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "request.csr"
    path.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path


def unchanged(ca: Path) -> tuple[bytes, list[str]]:
    return (ca / "federation.json").read_bytes(), sorted(p.name for p in (ca / "issued").iterdir())


def test_an_impostor_request_for_a_pinned_party_is_refused(ca, tmp_path):
    """Mallory makes her own keys under the name ``guest``: the CA would otherwise hand her guest's identity."""
    before = unchanged(ca)
    impostor = init_party_keys(tmp_path / "mallory-machine", "guest")
    code, _, err = cli("ca", "sign", impostor.request, "--ca", ca, "--signing-key", impostor.signing_pub,
                       "--out", tmp_path / "mallory.pem")
    assert code == 1
    assert "party 'guest' already has a pinned signing key" in one_error_line(err)
    assert unchanged(ca) == before and not (tmp_path / "mallory.pem").exists()


def test_an_impostor_cannot_renew_a_members_certificate(ca, tmp_path):
    """A renewal issues a member's identity again: only the holder of its pinned signing key gets one."""
    before, issued = unchanged(ca), (ca / "issued" / "guest.pem").read_bytes()
    impostor = init_party_keys(tmp_path / "mallory-machine", "guest")
    code, _, err = cli("ca", "sign", impostor.request, "--ca", ca, "--signing-key", impostor.signing_pub, "--renew")
    assert code == 1
    assert "is not the one ca/federation.json pins for 'guest'" in one_error_line(err).replace(str(tmp_path) + "/", "")
    assert unchanged(ca) == before and (ca / "issued" / "guest.pem").read_bytes() == issued


@pytest.mark.parametrize("name", ["Guest", "host_1", "-host", "../x", "a..b", "*.bank"])
def test_a_request_with_a_bad_name_is_refused(ca, tmp_path, name):
    before = unchanged(ca)
    request = forged_request(tmp_path / "m", name, [name])
    made = init_party_keys(tmp_path / "m2", "mallory")  # a real signing key file for a valid name
    code, _, err = cli("ca", "sign", request, "--ca", ca, "--signing-key", made.signing_pub)
    assert code == 1
    assert f"party name {name!r} cannot name a certificate" in one_error_line(err)
    assert unchanged(ca) == before


def test_a_tampered_request_is_refused(ca, tmp_path):
    """Bytes changed after signing (here the name, to one of the same length) break the request's signature."""
    made = init_party_keys(tmp_path / "host-machine", "host")
    der = x509.load_pem_x509_csr(made.request.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert der.count(b"host") == 2  # the subject and the DNS name
    altered = x509.load_der_x509_csr(der.replace(b"host", b"hose"))
    made.request.write_bytes(altered.public_bytes(serialization.Encoding.PEM))
    before = unchanged(ca)
    code, _, err = cli("ca", "sign", made.request, "--ca", ca, "--signing-key", made.signing_pub)
    assert code == 1
    assert "its signature does not verify" in one_error_line(err)
    assert unchanged(ca) == before


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_file_readable_by_others_is_refused(ca, tmp_path, mode):
    guest_key = tmp_path / "guest-machine" / "guest" / "key.pem"
    guest_key.chmod(mode)
    code, _, err = cli("keys", "install", "--party", "guest", "--dir", tmp_path / "guest-machine",
                       "--federation", ca / "federation.json")
    assert code == 1
    assert f"{guest_key} is accessible to other users; run: chmod 600 {guest_key}" in one_error_line(err)
    (ca / "ca.key").chmod(mode)
    made = init_party_keys(tmp_path / "host-machine", "host")
    code, _, err = cli("ca", "sign", made.request, "--ca", ca, "--signing-key", made.signing_pub)
    assert code == 1
    assert f"CA private key {ca / 'ca.key'} is accessible to other users" in one_error_line(err)


@pytest.mark.parametrize("common_name, dns_names, expected", [
    ("host", [], "has no DNS name"),
    ("host", ["guest"], "must be the same one party name"),
    ("host", ["host", "guest"], "must be the same one party name"),
])
def test_a_request_whose_names_disagree_is_refused(ca, tmp_path, common_name, dns_names, expected):
    """A request for ``host`` that also names ``guest`` would let its holder answer as guest in TLS."""
    made = init_party_keys(tmp_path / "host-machine", "host")
    key = serialization.load_pem_private_key((tmp_path / "host-machine" / "host" / "key.pem").read_bytes(), None)
    forged_request(made.request.parent, common_name, dns_names, key)
    with pytest.raises(ConfigError, match=expected):
        sign_request(ca, made.request, made.signing_pub)


def test_a_request_with_extra_subject_fields_is_refused(ca, tmp_path):
    made = init_party_keys(tmp_path / "host-machine", "host")
    key = serialization.load_pem_private_key((tmp_path / "host-machine" / "host" / "key.pem").read_bytes(), None)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "host"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CA")])
    request = (x509.CertificateSigningRequestBuilder().subject_name(subject)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("host")]), critical=False)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(key, hashes.SHA256()))
    made.request.write_bytes(request.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ConfigError, match="the subject must be the party name alone"):
        sign_request(ca, made.request, made.signing_pub)


def test_a_request_with_another_key_type_is_refused(ca, tmp_path):
    made = init_party_keys(tmp_path / "host-machine", "host")
    forged_request(made.request.parent, "host", ["host"], rsa.generate_private_key(65537, 1024))
    with pytest.raises(ConfigError, match="must be EC P-256"):
        sign_request(ca, made.request, made.signing_pub)


@pytest.mark.parametrize("content", [b"not a request", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                                     b"A" * (64 * 1024 + 1)])
def test_garbage_and_oversized_requests_are_refused(ca, tmp_path, content):
    made = init_party_keys(tmp_path / "host-machine", "host")
    made.request.write_bytes(content)
    with pytest.raises(ConfigError, match="not a PEM certificate signing request|larger than"):
        sign_request(ca, made.request, made.signing_pub)


def test_deeply_nested_or_garbage_key_files_are_refused_cleanly(ca, tmp_path):
    """JSON nested past the interpreter's recursion limit must be a ConfigError, not a crash."""
    made = init_party_keys(tmp_path / "host-machine", "host")
    for content in ("[" * 4000 + "]" * 4000, '{"party": "host", "signing_key": 5, "proof": []}', "\xff"):
        made.signing_pub.write_text(content[:4096], encoding="latin-1")
        with pytest.raises(ConfigError, match="not a public signing key file"):
            sign_request(ca, made.request, made.signing_pub)
    nested = tmp_path / "nested.json"
    nested.write_text('{"signing_keys": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ConfigError, match="is not JSON"):
        install_party_files(tmp_path / "guest-machine", "guest", federation=nested)


def test_another_partys_signing_key_cannot_be_pinned_under_a_new_name(ca, tmp_path):
    """Mallory sends her own request with guest's public signing key (from guest's signing.pub)."""
    guest_pub = tmp_path / "guest-machine" / "guest" / "signing.pub"
    mallory = init_party_keys(tmp_path / "mallory-machine", "mallory")
    with pytest.raises(ConfigError, match="is the signing key of 'guest'"):
        sign_request(ca, mallory.request, guest_pub)
    relabelled = {**json.loads(guest_pub.read_text()), "party": "mallory"}
    mallory.signing_pub.write_text(json.dumps(relabelled))
    with pytest.raises(ConfigError, match="its proof does not verify"):
        sign_request(ca, mallory.request, mallory.signing_pub)


def test_a_signing_key_file_made_for_another_request_is_refused(ca, tmp_path):
    first = init_party_keys(tmp_path / "one", "host")
    second = init_party_keys(tmp_path / "two", "host")
    with pytest.raises(ConfigError, match="its proof does not verify"):
        sign_request(ca, first.request, second.signing_pub)


def test_one_signing_key_is_never_pinned_for_two_parties(ca):
    guest_key = json.loads((ca / "federation.json").read_text())["signing_keys"]["guest"]
    with pytest.raises(ConfigError, match="pinned for party 'guest'"):
        pin_signing_key(ca / "federation.json", "mallory", guest_key)


def test_a_federation_file_that_swaps_a_pinned_key_is_not_installed(ca, tmp_path):
    host = join(ca, tmp_path, "host")
    guest_folder = tmp_path / "guest-machine"
    install_party_files(guest_folder, "guest", federation=ca / "federation.json")
    installed = (guest_folder / "federation.json").read_bytes()
    swapped = json.loads(installed)
    swapped["signing_keys"]["host"] = init_party_keys(tmp_path / "mallory", "mallory").signing_key
    (tmp_path / "swapped.json").write_text(json.dumps(swapped))
    code, _, err = cli("keys", "install", "--party", "guest", "--dir", guest_folder, "--federation", tmp_path / "swapped.json")
    assert code == 1
    assert "would replace or drop the pinned signing keys of ['host']" in one_error_line(err)
    dropped = {"signing_keys": {"guest": swapped["signing_keys"]["guest"]}}
    (tmp_path / "dropped.json").write_text(json.dumps(dropped))
    with pytest.raises(ConfigError, match=r"replace or drop .*\['host'\]"):
        install_party_files(guest_folder, "guest", federation=tmp_path / "dropped.json")
    assert (guest_folder / "federation.json").read_bytes() == installed
    with pytest.raises(ConfigError, match="does not pin host's own signing key"):
        install_party_files(tmp_path / "host-machine", "host", federation=tmp_path / "swapped.json")
    assert host.signing_key in installed.decode()


def test_a_certificate_for_another_key_or_from_another_ca_is_not_installed(ca, tmp_path):
    join(ca, tmp_path, "host")
    guest_folder = tmp_path / "guest-machine"
    with pytest.raises(ConfigError, match="names \\['host'\\], not party 'guest'"):
        install_party_files(guest_folder, "guest", cert=ca / "issued" / "host.pem")
    other_ca = tmp_path / "other-ca"
    init_ca(other_ca)
    stranger = init_party_keys(tmp_path / "stranger", "guest")
    with pytest.raises(ConfigError, match="is not for guest's private key"):
        install_party_files(guest_folder, "guest", cert=sign_request(other_ca, stranger.request, stranger.signing_pub).cert)
    with pytest.raises(ConfigError, match="another federation CA; a folder's CA is never replaced"):
        install_party_files(guest_folder, "guest", ca=other_ca / "ca.pem")
    with pytest.raises(ConfigError, match="not signed by the federation CA"):
        install_party_files(tmp_path / "stranger", "guest", ca=ca / "ca.pem", cert=other_ca / "issued" / "guest.pem")


def join(ca: Path, tmp_path: Path, party: str) -> PartyRequest:
    made = init_party_keys(tmp_path / f"{party}-machine", party)
    issued = sign_request(ca, made.request, made.signing_pub)
    install_party_files(tmp_path / f"{party}-machine", party, cert=issued.cert, ca=ca / "ca.pem",
                        federation=ca / "federation.json")
    return made
