"""Unanimous endorsement: every present party signs the same record before any party appends it.

1. The proposer (the job's guest, or its aggregator) calls every party; a horizontal client that
   cannot be reached any more is recorded as absent.
2. Each party called sends the proposer its statement: the head of its own ledger, its input
   commitment, its model fingerprint and its own metrics.
3. The proposer assembles the record body and sends it to every present party.
4. Each party checks the body against what it knows by itself (its own statement, the job's parties
   and roles, the digest of the job's steps, the contribution report it was sent), signs the body's
   hash and sends the signature to every other present party.
5. Each party verifies every signature against the pinned keys; only then is the record final.

A party that disagrees raises, which aborts the job for everyone: no honest party appends a record
that some present party did not sign.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from isthmus.errors import ConfigError, ProtocolError
from isthmus.incentive.presence import send_to_present
from isthmus.incentive.record import (
    FORMAT,
    SIGNATURE_BYTES,
    Record,
    canonical,
    check_party_entry,
    created_at,
    listed_roles,
    now_utc,
    parse_body,
    sha256_hex,
)
from isthmus.incentive.signing import sign_record, signature_valid
from isthmus.transport.channel import Channel
from isthmus.transport.keyfiles import check_keys

CALL = "ledger/call"
STATEMENT = "ledger/statement"
PROPOSAL = "ledger/proposal"
SIGNATURE = "ledger/signature"
#: How far the proposer's clock may be from a party's before the party refuses the record's time.
MAX_CLOCK_SKEW = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Statement:
    """What one party says about itself in the record."""

    previous: str  # the head of its own ledger
    input: str | None  # commitment to its input rows and schema
    model: str | None  # fingerprint of its model part
    metrics: dict[str, float]  # its own evaluation, if it made one

    @classmethod
    def from_wire(cls, obj: Any, *, role: str, peer: str) -> Statement:
        if not isinstance(obj, dict) or set(obj) != {"previous", "input", "model", "metrics"}:
            raise ProtocolError("a statement has exactly previous, input, model and metrics", peer=peer, tag=STATEMENT)
        try:
            check_party_entry(peer, {"role": role, **obj})
        except ValueError as exc:
            raise ProtocolError(str(exc), peer=peer, tag=STATEMENT) from None
        return cls(**obj)


@dataclass(frozen=True)
class JobFacts:
    """What every party knows about the job by itself, and checks a proposed record against."""

    job: str
    job_digest: str
    roles: dict[str, str]  # every party of the job
    contributions: dict[str, Any] | None  # the report the party was sent, if the job measured one


def endorse(channel: Channel, *, proposer: str, facts: JobFacts, statement: Statement,
            signing_key: Ed25519PrivateKey, pinned: dict[str, Ed25519PublicKey]) -> Record:
    """Run this party's side of the endorsement; returns the final record, signed by every present party."""
    me = channel.party
    check_keys(me, facts.roles, signing_key, pinned)
    if me == proposer:
        body = _propose(channel, facts, statement)
    else:
        channel.recv(proposer, CALL)
        channel.send(proposer, STATEMENT, asdict(statement))
        body = channel.recv(proposer, PROPOSAL)
        _check_proposal(body, facts, me, statement, proposer)
    record_hash = sha256_hex(body)
    others = [party for party in parse_body(body)["parties"] if party != me]
    own = sign_record(signing_key, record_hash)
    channel.broadcast(others, SIGNATURE, {"record": record_hash, "signature": own})
    signatures = {me: own}
    for party in others:
        signatures[party] = _checked_signature(channel.recv(party, SIGNATURE), record_hash, pinned[party], party)
    return Record(body, signatures)


def _propose(channel: Channel, facts: JobFacts, statement: Statement) -> bytes:
    me = channel.party
    absent = send_to_present(channel, facts.roles, CALL, None)
    present = sorted(set(facts.roles) - set(absent))
    statements = {me: statement}
    for party in present:
        if party != me:
            statements[party] = Statement.from_wire(channel.recv(party, STATEMENT), role=facts.roles[party], peer=party)
    body = canonical({
        "format": FORMAT,
        "job": facts.job,
        "job_digest": facts.job_digest,
        "created": now_utc(),
        "parties": {party: {"role": facts.roles[party], **asdict(statements[party])} for party in present},
        "absent": absent,
        "contributions": facts.contributions,
    })
    try:
        parse_body(body)
    except ValueError as exc:  # e.g. the report pays a party outside the job: no party would sign it
        raise ConfigError(f"job {facts.job!r}: its ledger record cannot be proposed: {exc}") from None
    channel.broadcast([party for party in present if party != me], PROPOSAL, body)
    return body


def _check_proposal(body: Any, facts: JobFacts, me: str, statement: Statement, proposer: str) -> None:
    def refuse(why: str) -> ProtocolError:
        return ProtocolError(f"proposed ledger record refused: {why}", peer=proposer, tag=PROPOSAL)

    try:
        content = parse_body(body)
    except ValueError as exc:
        raise refuse(str(exc)) from None
    parties, roles = content["parties"], listed_roles(content)
    if (content["job"], content["job_digest"]) != (facts.job, facts.job_digest):
        raise refuse("it is about another job, or other steps")
    if roles != facts.roles or proposer not in parties:
        raise refuse(f"its parties and roles {roles} are not the job's {facts.roles}")
    if me not in parties or parties[me] != {"role": facts.roles[me], **asdict(statement)}:
        raise refuse(f"it misstates what {me} said about itself")
    if canonical(content["contributions"]) != canonical(facts.contributions):
        raise refuse("its contributions differ from the report this party was sent")
    if abs(created_at(content) - dt.datetime.now(dt.UTC)) > MAX_CLOCK_SKEW:
        raise refuse(f"its time {content['created']} is more than {MAX_CLOCK_SKEW} from this party's clock")


def _checked_signature(message: Any, record_hash: str, key: Ed25519PublicKey, party: str) -> bytes:
    if not isinstance(message, dict) or set(message) != {"record", "signature"} or message["record"] != record_hash:
        raise ProtocolError("expected a signature of this job's record", peer=party, tag=SIGNATURE)
    signature = message["signature"]
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES or not signature_valid(
            key, record_hash, signature):
        raise ProtocolError("the signature does not verify under the party's pinned key", peer=party, tag=SIGNATURE)
    return signature


