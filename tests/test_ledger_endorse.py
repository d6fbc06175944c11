"""Unanimous endorsement over the transport: a record is appended only when every present party signed it."""

from __future__ import annotations

import pytest
from conftest import run_parties
from ledger_helpers import ROLES, federation

from isthmus.errors import PeerAbortedError, PeerUnreachableError, ProtocolError
from isthmus.incentive import endorse as protocol
from isthmus.incentive.endorse import JobFacts, Statement, endorse
from isthmus.incentive.record import GENESIS, canonical, now_utc, sha256_hex
from isthmus.transport.keyfiles import federation_file, load_pinned_keys, load_signing_key
from isthmus.incentive.signing import sign_record
from isthmus.transport.local import LocalHub

DIGEST = sha256_hex(b"steps")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return federation(tmp_path_factory.mktemp("endorse"), ["aggregator", "arbiter", "client-1", "client-2",
                                                            "guest", "host"])


def statement(party: str) -> Statement:
    return Statement(previous=GENESIS, input=sha256_hex(party.encode()), model=None, metrics={})


def honest(hub, certs, roles, party, *, proposer="guest", contributions=None, channel=None):
    """A party that endorses, and on failure aborts the job as the job runner does."""
    facts = JobFacts(job="job", job_digest=DIGEST, roles=roles, contributions=contributions)
    channel = channel or hub.channel(party)

    def run():
        try:
            return endorse(channel, proposer=proposer, facts=facts, statement=statement(party),
                           signing_key=load_signing_key(certs, party), pinned=load_pinned_keys(federation_file(certs)))
        except Exception as exc:
            channel.abort(str(exc))
            raise
    return run


def failure(roles: dict, name: str) -> BaseException:
    with pytest.raises(AssertionError) as caught:
        run_parties(roles, timeout=30)
    assert f"party {name} failed" in str(caught.value), caught.value
    return caught.value.__cause__


def test_every_party_ends_with_the_same_record_signed_by_all(certs):
    hub = LocalHub(list(ROLES))
    records = run_parties({p: honest(hub, certs, ROLES, p, contributions=None) for p in ROLES})
    assert len({r.hash for r in records.values()}) == 1
    record = records["host"]
    assert sorted(record.signatures) == sorted(ROLES) and record.content["absent"] == {}
    assert record.content["parties"]["arbiter"]["input"] == sha256_hex(b"arbiter")


PAIR = {"guest": "guest", "host": "host"}


def lying_proposer(hub, *, body_change):
    """A guest that changes the body it proposes after collecting the host's statement."""
    def run():
        channel = hub.channel("guest")
        channel.send("host", protocol.CALL, None)
        parties = {"guest": {"role": "guest", **vars(statement("guest"))},
                   "host": {"role": "host", **channel.recv("host", protocol.STATEMENT)}}
        body = {"format": "isthmus-ledger/1", "job": "job", "job_digest": DIGEST, "created": now_utc(),
                "parties": parties, "absent": {}, "contributions": None}
        body_change(body)
        channel.send("host", protocol.PROPOSAL, canonical(body))
        with pytest.raises(PeerAbortedError):
            channel.recv("host", protocol.SIGNATURE)
    return run


@pytest.mark.parametrize("change, why", [
    (lambda body: body["parties"]["host"].update(input="f" * 64), "misstates what host said"),
    (lambda body: body.update(job_digest="e" * 64), "another job, or other steps"),
    (lambda body: body["parties"]["host"].update(role="guest"), "parties and roles"),
    (lambda body: body.update(created="2001-01-01T00:00:00Z"), "from this party's clock"),
])
def test_a_party_refuses_a_proposal_that_is_not_what_it_knows(certs, change, why):
    hub = LocalHub(list(PAIR))
    error = failure({"guest": lying_proposer(hub, body_change=change), "host": honest(hub, certs, PAIR, "host")},
                    "host")
    assert isinstance(error, ProtocolError) and why in str(error)
    assert "peer='guest'" in str(error) and "tag='ledger/proposal'" in str(error)


def test_a_party_refuses_contributions_other_than_it_was_sent(certs):
    hub = LocalHub(list(ROLES))
    told = {"values": 1}  # never checked as a report here: only compared with what the proposer puts in
    error = failure({p: honest(hub, certs, ROLES, p, contributions=told if p == "host" else None) for p in ROLES},
                    "host")
    assert "contributions differ" in str(error)


def test_a_forged_signature_from_a_peer_is_refused_and_nothing_is_final(certs):
    hub = LocalHub(list(ROLES))
    pinned = load_pinned_keys(federation_file(certs))

    def forger():  # the arbiter signs with the host's key
        channel = hub.channel("arbiter")
        channel.recv("guest", protocol.CALL)
        channel.send("guest", protocol.STATEMENT, vars(statement("arbiter")))
        body = channel.recv("guest", protocol.PROPOSAL)
        forged = sign_record(load_signing_key(certs, "host"), sha256_hex(body))
        channel.broadcast(["guest", "host"], protocol.SIGNATURE, {"record": sha256_hex(body), "signature": forged})

    roles = {"guest": honest(hub, certs, ROLES, "guest"), "host": honest(hub, certs, ROLES, "host"), "arbiter": forger}
    with pytest.raises(AssertionError) as caught:
        run_parties(roles, timeout=30)
    error = caught.value.__cause__
    assert isinstance(error, ProtocolError) and "pinned key" in str(error) and "peer='arbiter'" in str(error)
    assert pinned  # the keys exist: the signature is wrong, not missing


class _Gone:
    """A channel to which some parties cannot be reached any more (their process died)."""

    def __init__(self, inner, gone):
        self.inner, self.gone = inner, gone

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def send(self, to, tag, obj):
        if to in self.gone:
            raise PeerUnreachableError("no connection", peer=to, tag=tag)
        self.inner.send(to, tag, obj)

    def broadcast(self, to, tag, obj):
        for party in to:
            self.send(party, tag, obj)


def test_a_client_that_dropped_out_is_named_absent_and_the_others_still_agree(certs):
    roles = {"aggregator": "aggregator", "client-1": "client", "client-2": "client"}
    hub = LocalHub(list(roles))
    gone = _Gone(hub.channel("aggregator"), {"client-2"})
    records = run_parties({
        "aggregator": honest(hub, certs, roles, "aggregator", proposer="aggregator", channel=gone),
        "client-1": honest(hub, certs, roles, "client-1", proposer="aggregator"),
    })
    assert records["aggregator"].hash == records["client-1"].hash
    assert records["client-1"].content["absent"] == {"client-2": "client"}
    assert sorted(records["client-1"].signatures) == ["aggregator", "client-1"]


def test_an_unreachable_host_is_not_absent_but_an_error(certs):
    hub = LocalHub(list(ROLES))
    gone = _Gone(hub.channel("guest"), {"host"})
    error = failure({"guest": honest(hub, certs, ROLES, "guest", channel=gone),
                     "arbiter": honest(hub, certs, ROLES, "arbiter")}, "guest")
    assert isinstance(error, PeerUnreachableError)


def test_a_party_that_gives_up_aborts_the_endorsement_for_everyone(certs):
    hub = LocalHub(list(ROLES))

    def quitter():
        hub.channel("arbiter").abort("disk full")

    with pytest.raises(AssertionError) as caught:
        run_parties({"guest": honest(hub, certs, ROLES, "guest"), "arbiter": quitter}, timeout=30)
    assert isinstance(caught.value.__cause__, PeerAbortedError)
