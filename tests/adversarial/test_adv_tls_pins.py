"""The federation file pins each member's TLS key, and a node refuses a certificate under a member's name that
carries another key. TLS alone accepts any certificate the CA signed: a deviating CA operator could issue a
second certificate for an existing member by hand and send as that member, and a member's replaced key (leaked,
then re-keyed) stayed usable until its certificate's date."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from isthmus.errors import ConfigError, PeerRefusedError
from isthmus.transport import codec
from isthmus.transport.ca import _certificate, sign_request
from isthmus.transport.certs import TlsFiles, create_federation, tls_files_for
from isthmus.transport.grpc_transport import GrpcNode
from isthmus.transport.keyfiles import load_certificate, load_private_key, write_private_key, write_public
from isthmus.transport.party_keys import install_party_files, rekey_party_keys
from isthmus.transport.ports import free_ports

REFUSED = "presented a certificate whose TLS key 'bob''s federation.json does not pin for it"


@pytest.fixture
def federation(tmp_path: Path) -> dict:
    """alice and bob, their keys made by create_federation (which pins both TLS keys), and their addresses."""
    create_federation(tmp_path / "fed", ["alice", "bob"])
    return {"certs": tmp_path / "fed", **dict(zip(["alice", "bob"], (f"127.0.0.1:{p}" for p in free_ports(2))))}


def node(federation: dict, party: str, tls: TlsFiles) -> GrpcNode:
    return GrpcNode(party, federation[party], {p: federation[p] for p in ("alice", "bob")}, tls, connect_timeout=3)


def certificate_by_hand(certs: Path, party: str, out: Path) -> TlsFiles:
    """What a deviating CA operator can make: a certificate for ``party`` over a key of its own choosing."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(load_certificate(certs / "ca.pem", "CA"), load_private_key(certs / "ca.key", "CA key"), party,
                        key.public_key(), 30)
    (out / party).mkdir(parents=True)
    write_private_key(out / party / "key.pem", key)
    write_public(out / party / "cert.pem", cert.public_bytes(serialization.Encoding.PEM))
    shutil.copy(certs / "ca.pem", out / "ca.pem")
    return TlsFiles(out / "ca.pem", out / party / "cert.pem", out / party / "key.pem")


def test_a_certificate_the_ca_issued_by_hand_for_a_member_cannot_send_as_it(federation, tmp_path):
    bob = node(federation, "bob", tls_files_for(federation["certs"], "bob"))
    bob.open_job("job")
    forger = node(federation, "alice", certificate_by_hand(federation["certs"], "alice", tmp_path / "forged"))
    alice = node(federation, "alice", tls_files_for(federation["certs"], "alice"))
    with bob:
        with pytest.raises(PeerRefusedError, match=REFUSED):
            forger.deliver("bob", "job", "x", codec.encode("from the forger"))
        alice.deliver("bob", "job", "x", codec.encode("from alice"))
        assert bob.channel("job").recv("alice", "x", timeout=5) == "from alice"


def test_a_members_replaced_key_is_refused_once_the_new_pin_is_installed(federation, tmp_path, caplog):
    """A re-key (`keys rekey`, `ca sign --renew`, `keys install`): the renewal replaces the pin, members installing
    the new federation file refuse the old key, and the member's folder holds only the new one."""
    certs = federation["certs"]
    old = tmp_path / "old-alice"
    shutil.copytree(certs, old)  # alice's folder as it was, as a thief who copied its key holds it
    made = rekey_party_keys(certs, "alice")
    with pytest.raises(ConfigError, match="a re-key is under way"):
        rekey_party_keys(certs, "alice")
    issued = sign_request(certs, made.request, made.signing_pub, out=tmp_path / "alice.pem", renew=True)
    assert issued.rekeyed
    with caplog.at_level(logging.WARNING, logger="isthmus.transport.party_keys"):  # bob installs the new file
        install_party_files(old, "bob", federation=certs / "federation.json")
    assert "pins new TLS keys for ['alice'] (a re-key): compare them with those members out of band" in caplog.text
    new_key = (certs / "alice" / "key.next.pem").read_bytes()
    install_party_files(certs, "alice", cert=tmp_path / "alice.pem")
    assert (certs / "alice" / "key.pem").read_bytes() == new_key and not (certs / "alice" / "key.next.pem").exists()
    bob = node(federation, "bob", tls_files_for(certs, "bob"))  # started with the updated federation.json
    bob.open_job("job")
    with bob:
        with pytest.raises(PeerRefusedError, match=REFUSED):
            node(federation, "alice", tls_files_for(old, "alice")).deliver("bob", "job", "x", codec.encode("old"))
        node(federation, "alice", tls_files_for(certs, "alice")).deliver("bob", "job", "x", codec.encode("new"))
        assert bob.channel("job").recv("alice", "x", timeout=5) == "new"


def test_a_federation_file_pinning_another_tls_key_for_the_party_is_not_installed(federation, tmp_path):
    """Installed, it would have every member refuse this party: it is a file older than a re-key, or altered."""
    certs = federation["certs"]
    doc = json.loads((certs / "federation.json").read_text())
    doc["tls_keys"]["alice"] = "00" * 32
    (tmp_path / "altered.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="pins another TLS key for alice than its key.pem"):
        install_party_files(certs, "alice", federation=tmp_path / "altered.json")


def test_keys_rekey_says_what_to_send_and_refuses_a_second_one_under_way(federation):
    from typer.testing import CliRunner

    from isthmus.cli import app

    def rekey():
        return CliRunner().invoke(app, ["keys", "rekey", "--party", "alice", "--dir", str(federation["certs"])])

    first, second = rekey(), rekey()
    assert first.exit_code == 0 and "send to the CA operator" in first.stdout and "ca sign --renew" in first.stdout
    assert second.exit_code == 1 and "a re-key is under way" in second.stderr
