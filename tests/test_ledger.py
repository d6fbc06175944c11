"""The ledger: append-only chains of signed records, and verification catching every kind of tampering."""

from __future__ import annotations

import json
import sqlite3
import stat

import pytest
from ledger_helpers import ROLES, copy_ledger, federation, record_job, tamper

from isthmus.errors import ConfigError
from isthmus.incentive.ledger import Ledger, LedgerError, ledger_path
from isthmus.incentive.record import GENESIS, Record, canonical
from isthmus.transport.keyfiles import federation_file, load_pinned_keys, load_signing_key
from isthmus.incentive.signing import sign_record
from isthmus.incentive.verify import verify_ledgers
from isthmus.transport.ca import sign_request
from isthmus.transport.certs import create_federation
from isthmus.transport.party_keys import init_party_keys, install_party_files

PARTIES = sorted(ROLES)


@pytest.fixture(scope="module")
def ledgers(tmp_path_factory):
    """Three parties, three jobs: every party's ledger holds the same three records."""
    folder = tmp_path_factory.mktemp("ledger")
    certs = federation(folder, PARTIES)
    hashes = [record_job(certs, f"job-{n}", ROLES) for n in (1, 2, 3)]
    return certs, hashes


@pytest.fixture
def pinned(ledgers):
    return load_pinned_keys(federation_file(ledgers[0]))


def originals(certs):
    return [ledger_path(certs, party) for party in PARTIES]


def findings(paths, pinned):
    return [str(f) for f in verify_ledgers(paths, pinned).findings]


def test_every_party_holds_the_same_chain_and_it_verifies(ledgers, pinned):
    certs, hashes = ledgers
    assert all(len(set(h.values())) == 1 for h in hashes)  # one record per job, the same at every party
    result = verify_ledgers(originals(certs), pinned)
    assert result.ok, result.findings
    assert sorted(result.replicas.values()) == [(party, 3) for party in PARTIES]
    with Ledger(ledger_path(certs, "host"), read_only=True) as ledger:
        entries = ledger.entries()
        assert [e.record.hash for e in entries] == [h["host"] for h in hashes]
        assert entries[0].record.previous("host") == GENESIS
        assert entries[2].record.previous("host") == entries[1].record.hash
        assert entries[1].record.content["parties"]["host"]["input"] is not None


def test_the_database_refuses_updates_and_deletes(ledgers):
    db = sqlite3.connect(ledger_path(ledgers[0], "guest"))
    for statement in ("UPDATE records SET body = x'00'", "DELETE FROM signatures", "DELETE FROM records"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(statement)
    db.close()


def test_an_edited_field_is_detected(ledgers, pinned, tmp_path):
    certs = ledgers[0]
    copy = copy_ledger(certs, "guest", tmp_path)
    tamper(copy, "UPDATE records SET body = replace(body, '\"auc\":0.75', '\"auc\":0.95') WHERE seq = 2")
    assert any("record 2: its body does not hash to the stored hash" in f for f in findings([copy], pinned))
    # rewriting the stored hash as well leaves the signatures signing another hash
    fixed = copy_ledger(certs, "host", tmp_path / "fixed")
    with Ledger(fixed, read_only=True) as ledger:
        original = ledger.entries()[1].record
    edited = original.body.replace(b'"auc":0.75', b'"auc":0.95')
    old, new = original.hash, Record(edited, {}).hash
    tamper(fixed, "UPDATE records SET body = ?, hash = ? WHERE seq = 2", params=(edited, new))
    tamper(fixed, "UPDATE signatures SET record = ? WHERE record = ?", params=(new, old))
    problems = findings([fixed], pinned)
    assert sum("signature of" in p and "is invalid" in p for p in problems) == 3
    assert any("record 3: names" in p for p in problems)  # the next record still names the original


def test_a_deleted_record_is_detected(ledgers, pinned, tmp_path):
    copy = copy_ledger(ledgers[0], "arbiter", tmp_path)
    tamper(copy, "DELETE FROM signatures WHERE record = (SELECT hash FROM records WHERE seq = 2)",
           "DELETE FROM records WHERE seq = 2")
    problems = findings([copy], pinned)
    assert any("record 3: is numbered 3 but is the ledger's record 2" in p for p in problems)
    assert any("record 3: names" in p and "reordered" in p for p in problems)
    # renumbering to hide the gap does not help: the chain still breaks
    tamper(copy, "UPDATE records SET seq = 2 WHERE seq = 3")
    assert any("record 2: names" in p for p in findings([copy], pinned))


def test_reordered_records_are_detected(ledgers, pinned, tmp_path):
    copy = copy_ledger(ledgers[0], "guest", tmp_path)
    tamper(copy, "UPDATE records SET seq = 100 WHERE seq = 1", "UPDATE records SET seq = 1 WHERE seq = 2",
           "UPDATE records SET seq = 2 WHERE seq = 100")
    problems = findings([copy], pinned)
    assert any("record 1: names" in p and "the record before it is 0000000000000000" in p for p in problems)
    assert any("record 2: names" in p for p in problems)


def test_a_record_signed_by_too_few_parties_is_detected(ledgers, pinned, tmp_path):
    copy = copy_ledger(ledgers[0], "host", tmp_path)
    tamper(copy, "DELETE FROM signatures WHERE party = 'arbiter' AND record = (SELECT hash FROM records WHERE seq = 3)")
    assert findings([copy], pinned) == [f"{copy} record 3: not signed by arbiter"]


def test_a_forged_signature_is_detected(ledgers, pinned, tmp_path):
    certs = ledgers[0]
    copy = copy_ledger(certs, "host", tmp_path)
    with Ledger(copy, read_only=True) as ledger:
        record = ledger.entries()[0].record
    forged = sign_record(load_signing_key(certs, "host"), record.hash)  # the host signing in the guest's name
    tamper(copy, "UPDATE signatures SET signature = ? WHERE party = 'guest' AND record = ?", params=(forged, record.hash))
    assert findings([copy], pinned) == [f"{copy} record 1: signature of guest is invalid"]


def test_a_replica_that_disagrees_is_detected(ledgers, pinned, tmp_path):
    certs = ledgers[0]
    copy = copy_ledger(certs, "host", tmp_path)
    tamper(copy, "UPDATE records SET body = replace(body, '\"auc\":0.75', '\"auc\":0.95') WHERE seq = 1")
    problems = findings([ledger_path(certs, "guest"), ledger_path(certs, "arbiter"), copy], pinned)
    assert any("host's ledger at" in p and "does not hold it" in p and "record 1" in p for p in problems)
    assert any(p.startswith(str(copy)) and "names guest as a party" in p for p in problems)
    # a copy of one party's ledger that differs from the original is a disagreement too
    assert any("another copy of host's ledger" in p for p in findings([ledger_path(certs, "host"), copy], pinned))


def test_append_refuses_a_record_that_is_not_final_or_does_not_continue_the_chain(ledgers, pinned, tmp_path):
    certs = ledgers[0]
    with Ledger(ledger_path(certs, "guest"), read_only=True) as ledger:
        last = ledger.entries()[-1].record
    with Ledger(tmp_path / "fresh.sqlite", owner="guest") as fresh:
        with pytest.raises(LedgerError, match="not this ledger's head"):
            fresh.append(last, pinned)  # it follows record 2, which this ledger lacks
        unsigned = Record(last.body, {p: s for p, s in last.signatures.items() if p != "host"})
        with pytest.raises(LedgerError, match="not signed by host"):
            fresh.append(unsigned, pinned)
        assert fresh.head() == GENESIS


def test_opening_someone_elses_ledger_or_a_foreign_file_is_refused(ledgers, tmp_path):
    with pytest.raises(ConfigError, match="ledger of 'guest', not of 'host'"):
        Ledger(ledger_path(ledgers[0], "guest"), owner="host")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 10)
    with pytest.raises(ConfigError, match="not an isthmus ledger"):
        Ledger(junk, read_only=True)
    assert not verify_ledgers([junk], {}).ok


def test_signing_keys_are_private_and_pinned_in_the_federation_file(tmp_path):
    certs = tmp_path / "certs"
    create_federation(certs, ["guest", "host"])
    assert stat.S_IMODE((certs / "guest" / "signing.key").stat().st_mode) == 0o600
    pinned = json.loads((certs / "federation.json").read_text())["signing_keys"]
    assert sorted(pinned) == ["guest", "host"] and pinned["guest"] != pinned["host"]
    joiner = tmp_path / "joiner"
    request = init_party_keys(joiner, "host-2")
    sign_request(certs, request.request, request.signing_pub)
    install_party_files(joiner, "host-2", federation=certs / "federation.json")
    assert sorted(load_pinned_keys(joiner / "federation.json")) == ["guest", "host", "host-2"]
    assert sorted(load_pinned_keys(certs / "federation.json")) == ["guest", "host", "host-2"]
    (certs / "host" / "signing.key").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_signing_key(certs, "host")


def test_bodies_are_canonical():
    assert canonical({"b": 1.0, "a": [1, "x"]}) == b'{"a":[1,"x"],"b":1.0}'
    with pytest.raises(ValueError):
        canonical({"x": float("nan")})
