"""A party forging ledger records on its own, and a verifier handed keys that came with the ledgers.

host-1 owns its ledger file and its signing key: it can append anything it signs. What it must not
manage is a record, accepted by `verify`, that says something about the guest or host-2 (here: that
host-1 earned the whole reward) without their signatures.
"""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from conftest import run_parties
from ledger_helpers import copy_ledger, federation, record_job
from typer.testing import CliRunner

from isthmus.cli_ledger import ledger_app
from isthmus.errors import PeerAbortedError, ProtocolError
from isthmus.incentive import endorse as protocol
from isthmus.incentive.contribution import ContributionReport
from isthmus.incentive.endorse import JobFacts, Statement, endorse
from isthmus.incentive.ledger import Ledger, LedgerError
from isthmus.incentive.record import FORMAT, GENESIS, Record, canonical, now_utc, sha256_hex
from isthmus.transport.keyfiles import federation_file, load_pinned_keys, load_signing_key
from isthmus.incentive.signing import sign_record
from isthmus.transport.local import LocalHub

ROLES = {"guest": "guest", "host-1": "host", "host-2": "host"}
PARTIES = sorted(ROLES)
DIGEST = sha256_hex(b"steps")


def whole_reward_to(winner: str, players: list[str]) -> dict:
    values = {player: (0.2 if player == winner else 0.0) for player in players}
    return ContributionReport.measured(method="sampled shapley", metric="auc", values=values, budget=1000.0,
                                       empty_value=0.5, grand_value=0.7,
                                       std_errors={player: 0.0 for player in players}).to_dict()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """Three parties that endorsed one honest job: each ledger holds the same record."""
    certs = federation(tmp_path_factory.mktemp("adv-ledger"), PARTIES)
    record_job(certs, "honest-job", ROLES)
    return certs


@pytest.fixture
def replicas(certs, tmp_path):
    """Copies of the three ledgers, for the forger to write into."""
    return {party: copy_ledger(certs, party, tmp_path / "ledgers") for party in PARTIES}


def forged_record(certs, ledger, *, present_role: str, absent: dict[str, str]) -> Record:
    """host-1 alone: a record continuing its own chain, signed by itself, rewarding itself."""
    with Ledger(ledger, read_only=True) as opened:
        head = opened.head()
    body = canonical({
        "format": FORMAT, "job": "forged-job", "job_digest": DIGEST, "created": now_utc(),
        "parties": {"host-1": {"role": present_role, "previous": head, "input": None, "model": None, "metrics": {}}},
        "absent": absent,
        "contributions": whole_reward_to("host-1", PARTIES),
    })
    return Record(body, {"host-1": sign_record(load_signing_key(certs, "host-1"), sha256_hex(body))})


def smuggle(ledger, record: Record) -> None:
    """Append past the Ledger class, as the file's owner can."""
    db = sqlite3.connect(ledger)
    with db:
        db.execute("INSERT INTO records (hash, body) VALUES (?, ?)", (record.hash, record.body))
        db.executemany("INSERT INTO signatures VALUES (?, ?, ?)",
                       [(record.hash, party, sig) for party, sig in record.signatures.items()])
    db.close()


FORGERIES = {
    # the others are only in the contributions
    "contributions name non-parties": ("host", {}),
    # the others are listed, as clients that dropped out of a job host-1 aggregated alone
    "others absent, no client present": ("aggregator", {"guest": "client", "host-2": "client"}),
    # ... or of a job in which host-1 was the only client left, without its aggregator
    "others absent, no aggregator present": ("client", {"guest": "client", "host-2": "client"}),
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_record_only_its_beneficiary_signed_fails_verification(certs, replicas, forgery, tmp_path):
    from isthmus.incentive.verify import verify_ledgers

    present_role, absent = FORGERIES[forgery]
    record = forged_record(certs, replicas["host-1"], present_role=present_role, absent=absent)
    pinned = load_pinned_keys(federation_file(certs))
    smuggle(replicas["host-1"], record)

    result = verify_ledgers(list(replicas.values()), pinned)
    assert not result.ok
    assert [(f.ledger, f.seq) for f in result.findings] == [(str(replicas["host-1"]), 2)], result.findings
    assert "malformed body" in result.findings[0].problem
    # nor does the ledger take it through its own door
    with Ledger(copy_ledger(certs, "host-1", tmp_path / "fresh"), owner="host-1") as ledger:
        with pytest.raises(LedgerError, match="cannot be appended"):
            ledger.append(record, pinned)


def test_a_record_naming_a_stranger_as_absent_fails_verification(certs, replicas):
    """Signed by all its present parties, but the client it names is no member of the federation."""
    from isthmus.incentive.verify import verify_ledgers

    with Ledger(replicas["guest"], read_only=True) as ledger:
        head = ledger.head()
    entry = {"input": None, "model": None, "metrics": {}}
    body = canonical({
        "format": FORMAT, "job": "hfl", "job_digest": DIGEST, "created": now_utc(),
        "parties": {"guest": {"role": "aggregator", "previous": head, **entry},
                    "host-2": {"role": "client", "previous": GENESIS, **entry}},
        "absent": {"client-9": "client"}, "contributions": None})
    record = Record(body, {party: sign_record(load_signing_key(certs, party), sha256_hex(body))
                           for party in ("guest", "host-2")})
    smuggle(replicas["guest"], record)
    findings = verify_ledgers([replicas["guest"]], load_pinned_keys(federation_file(certs))).findings
    assert [f.problem for f in findings] == ["names client-9 as absent, but the federation pins no key for them "
                                             "(not members)"]


def test_the_honest_ledgers_verify(certs, replicas):
    from isthmus.incentive.verify import verify_ledgers

    result = verify_ledgers(list(replicas.values()), load_pinned_keys(federation_file(certs)))
    assert result.ok, result.findings


def test_a_party_refuses_to_sign_contributions_for_a_stranger(certs):
    """The guest sent host-1 a report that pays a party outside the job, then proposes it for the ledger."""
    report = whole_reward_to("host-9", ["guest", "host-1", "host-9"])
    roles = {"guest": "guest", "host-1": "host"}
    hub = LocalHub(list(roles))
    guest_key = load_signing_key(certs, "guest")

    def lying_guest():
        channel = hub.channel("guest")
        channel.send("host-1", protocol.CALL, None)
        statement = channel.recv("host-1", protocol.STATEMENT)
        body = canonical({
            "format": FORMAT, "job": "job", "job_digest": DIGEST, "created": now_utc(),
            "parties": {"guest": {"role": "guest", "previous": GENESIS, "input": None, "model": None, "metrics": {}},
                        "host-1": {"role": "host", **statement}},
            "absent": {}, "contributions": report})
        channel.send("host-1", protocol.PROPOSAL, body)
        try:
            channel.recv("host-1", protocol.SIGNATURE)
        except PeerAbortedError:
            return "refused"
        channel.send("host-1", protocol.SIGNATURE, {"record": sha256_hex(body),
                                                     "signature": sign_record(guest_key, sha256_hex(body))})
        return "signed"

    def host():
        channel = hub.channel("host-1")
        try:
            return endorse(channel, proposer="guest", pinned=load_pinned_keys(federation_file(certs)),
                           facts=JobFacts(job="job", job_digest=DIGEST, roles=roles, contributions=report),
                           statement=Statement(previous=GENESIS, input=None, model=None, metrics={}),
                           signing_key=load_signing_key(certs, "host-1"))
        except ProtocolError as exc:  # as the job runner does: tell the other party, then fail
            channel.abort(type(exc).__name__)
            return exc

    outcome = run_parties({"guest": lying_guest, "host-1": host}, timeout=30)
    assert outcome["guest"] == "refused"
    assert isinstance(outcome["host-1"], ProtocolError)
    assert "contributions name ['host-9'], who are not parties of the record" in str(outcome["host-1"])
    assert f"tag='{protocol.PROPOSAL}'" in str(outcome["host-1"])


# --- which keys `isthmus ledger verify` trusts -----------------------------------------------------


def verify(*args: str):
    return CliRunner().invoke(ledger_app, ["verify", *args])


def test_verify_takes_the_federation_file_of_one_certificate_folder(certs):
    result = verify(str(certs))
    assert result.exit_code == 0 and "ledger verified" in result.output, result.output
    assert verify(str(certs / "guest")).exit_code == 0


def test_verify_asks_for_the_federation_file_when_the_ledgers_come_from_several_folders(certs, tmp_path):
    """A folder handed over by host-1 holds its own federation.json: its keys must not be the ones trusted."""
    handed_over = tmp_path / "from-host-1"
    copy_ledger(certs, "host-1", handed_over)
    shutil.copy(federation_file(certs), handed_over / "federation.json")  # could pin any key for anyone
    result = verify(str(handed_over / "host-1"), str(certs / "guest"))
    assert result.exit_code == 1
    assert "--federation" in result.output and "ledger verified" not in result.output, result.output
    trusted = verify(str(handed_over / "host-1"), str(certs / "guest"), "--federation", str(federation_file(certs)))
    assert trusted.exit_code == 0, trusted.output


def test_a_ledger_whose_tables_were_dropped_is_a_finding_not_a_crash(certs, replicas):
    """Its owner (or a disk fault) can drop a table: verify, show and export said so with a traceback."""
    db = sqlite3.connect(replicas["host-1"])
    db.execute("DROP TABLE signatures")
    db.close()
    result = verify(str(replicas["host-1"]), str(replicas["guest"]), "--federation", str(federation_file(certs)))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "host-1/ledger.sqlite is a damaged isthmus ledger: no such table: signatures" in result.output
    for command in ("show", "export"):
        shown = CliRunner().invoke(ledger_app, [command, str(replicas["host-1"])])
        assert isinstance(shown.exception, SystemExit) and "is a damaged isthmus ledger" in shown.stderr, shown.output
