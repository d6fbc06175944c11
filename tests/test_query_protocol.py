"""The query protocol among institutions and the aggregator, over the in-process hub."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from isthmus.crypto.oprf import OprfKey
from isthmus.crypto.paillier import generate_keypair
from isthmus.errors import ConfigError, DataError, PeerTimeoutError
from isthmus.query import protocol
from isthmus.query.asker import NoAnswerError, QueryClient
from isthmus.query.config import Policy, QueryConfig
from isthmus.query.loans import load_exposures
from isthmus.query.parties import AggregatorParty, InstitutionParty
from isthmus.query.querylog import QueryLog
from isthmus.query.synthetic import generate_loans, truth
from isthmus.transport import codec
from isthmus.transport.local import LocalHub

BANKS = ["bank1", "bank2", "bank3", "bank4"]
ASKER = "bank1"


@pytest.fixture(scope="module")
def private_key():
    return generate_keypair(1024)[1]


@pytest.fixture(scope="module")
def tables():
    return generate_loans(BANKS, 400, seed=11)


def make_config(**policy) -> QueryConfig:
    return QueryConfig("test-lenders", "agg", {name: "in-process" for name in [*BANKS, "agg"]},
                       Policy(paillier_bits=1024, **policy), answer_timeout=2.0)


class Consortium:
    """Every party on one LocalHub; ``offline`` institutions get a channel but no service."""

    def __init__(self, root: Path, tables, private_key, config: QueryConfig, offline=()):
        self.root, self.config = root, config
        self.hub = LocalHub([*BANKS, "agg"], audit_dir=root / "audit", keep_payloads=True)
        self.aggregator = AggregatorParty(self.hub.channel("agg", protocol.JOB), config, self.log("agg"))
        self.aggregator.start()
        self.institutions = {}
        for name in BANKS:
            if name in offline:
                continue
            party = InstitutionParty(self.hub.channel(name, protocol.JOB), config, OprfKey.generate(), self.log(name),
                                     private_key=private_key, workers=1)
            party.start()
            path = root / f"{name}.csv"
            tables[name].to_csv(path, index=False)
            party.load(load_exposures(path, config.table, config.policy, party=name), wait=30)
            self.institutions[name] = party

    def log(self, name: str) -> QueryLog:
        return QueryLog(self.root / "logs" / f"{name}.jsonl")

    def ask(self, ids, asker=ASKER):
        return self.institutions[asker].ask(ids)

    def stop(self):
        for party in self.institutions.values():
            party.stop()
        self.aggregator.stop()


@pytest.fixture
def consortium(tmp_path, tables, private_key):
    running = Consortium(tmp_path, tables, private_key, make_config())
    yield running
    running.stop()


def sample_ids(tables, count=60):
    everyone = sorted({c for frame in tables.values() for c in frame["customer_id"]})
    return everyone[::max(1, len(everyone) // count)] + ["NEVER-SEEN-1", "NEVER-SEEN-2"]


def test_counts_and_sums_match_the_plaintext_computation(consortium, tables):
    ids = sample_ids(tables)
    batch = consortium.ask(ids)
    assert batch.complete and sorted(batch.answered) == BANKS[1:]
    assert [(a.institutions, a.exposure) for a in batch.answers] == truth(tables, ASKER, ids)
    assert any(a.institutions >= 2 for a in batch.answers) and any(a.institutions == 0 for a in batch.answers)
    assert all(a.per_institution is None for a in batch.answers)


def test_repeated_ids_and_id_canonicalisation(consortium, tables):
    customer = next(iter(tables["bank2"]["customer_id"]))
    batch = consortium.ask([customer, f"  {customer}\t", customer])
    assert len({(a.id, a.institutions, a.exposure) for a in batch.answers}) == 1
    assert batch.answers[0].institutions >= 1


def test_no_plaintext_or_unsalted_hash_of_an_id_leaves_any_party(consortium, tables):
    ids = sample_ids(tables, 20)
    consortium.ask(ids)
    payloads = [p for audit in consortium.hub.audits.values() for p in audit.sent_payloads()]
    assert payloads
    every_id = {c for frame in tables.values() for c in frame["customer_id"]} | set(ids)
    needles = set()
    for customer in every_id:
        raw = customer.encode()
        needles.add(raw)
        for algorithm in ("md5", "sha1", "sha256", "sha512", "blake2b", "sha3_256"):
            digest = hashlib.new(algorithm, raw).digest()
            needles.update({digest[:16], digest.hex().encode()[:32]})
    blob = b"\x00".join(payloads)
    leaked = [n for n in needles if n in blob]
    assert not leaked


def test_every_party_logs_the_query_without_ids(consortium, tables):
    ids = sample_ids(tables, 10)
    batch = consortium.ask(ids)
    for name in [*BANKS, "agg"]:
        records = [r for r in consortium.log(name).records() if r.request == batch.request]
        expected_role = {"bank1": "asker", "agg": "aggregator"}.get(name, "responder")
        assert [(r.role, r.asker) for r in records] == [(expected_role, ASKER)]
        assert records[0].ids == (len(ids) if name in ("bank1", "agg") else len(set(ids)))
        text = (consortium.root / "logs" / f"{name}.jsonl").read_text()
        assert not any(customer in text for customer in ids)


def test_a_responder_offline_gives_a_partial_answer_that_says_so(tmp_path, tables, private_key):
    running = Consortium(tmp_path, tables, private_key, make_config(), offline=["bank4"])
    try:
        ids = sample_ids(tables, 30)
        batch = running.ask(ids)
    finally:
        running.stop()
    assert not batch.complete
    assert sorted(batch.answered) == ["bank2", "bank3"] and list(batch.unanswered) == ["bank4"]
    assert "2 of 3 institutions answered" in batch.coverage() and "bank4" in batch.coverage()
    without = {name: frame for name, frame in tables.items() if name != "bank4"}
    assert [(a.institutions, a.exposure) for a in batch.answers] == truth(without, ASKER, ids)


def test_with_partial_answers_off_the_aggregator_refuses_while_it_lacks_an_institutions_records():
    from isthmus.query.aggregator import _every_other_institution

    _every_other_institution(BANKS, "bank1", 3, {"bank2": 1, "bank3": 1, "bank4": 1})  # complete: no refusal
    with pytest.raises(protocol.Refusal, match="holds 3 of 3; none published here by bank4"):
        _every_other_institution(BANKS, "bank1", 3, {"bank2": 1, "bank3": 1})


def test_per_institution_mode_reveals_which_institutions(tmp_path, tables, private_key):
    running = Consortium(tmp_path, tables, private_key, make_config(mode="per_institution"))
    try:
        ids = sample_ids(tables, 30)
        batch = running.ask(ids)
    finally:
        running.stop()
    for answer in batch.answers:
        expected = {name: truth({name: tables[name]}, ASKER, [answer.id])[0][0] == 1 for name in BANKS[1:]}
        assert answer.per_institution == expected
        assert answer.institutions == sum(expected.values())


def test_an_asker_under_another_policy_is_refused_everywhere(consortium, private_key):
    weaker = replace(consortium.config, policy=replace(consortium.config.policy, mode="per_institution"))
    channel = consortium.hub.channel(ASKER, protocol.JOB)
    client = QueryClient(channel, weaker, consortium.log("rogue"), private_key=private_key)
    with pytest.raises(NoAnswerError, match=r"no other institution answered: \w+ \([^{}]*different consortium policy"):
        client.ask(["C000000001"])  # each institution's reason in words (it was a Python dict)


@pytest.mark.parametrize("ids, message", [
    ([], "1 to 50"),
    ([f"C{i}" for i in range(51)], "1 to 50"),
    (["ok-id", ""], "id 2: empty"),
    (["has space"], "white space"),
    (["x" * 65], "longer than 64"),
    ([None], "text or an integer"),
])
def test_bad_batches_are_refused_before_anything_is_sent(tmp_path, private_key, ids, message):
    hub = LocalHub([*BANKS, "agg"], audit_dir=tmp_path)
    client = QueryClient(hub.channel(ASKER, protocol.JOB), make_config(max_batch=50), QueryLog(tmp_path / "q.jsonl"),
                         private_key=private_key)
    with pytest.raises(DataError, match=message):
        client.ask(ids)
    assert not any(audit.entries() for audit in hub.audits.values())


def test_id_pattern_from_the_policy(tmp_path, private_key):
    hub = LocalHub([*BANKS, "agg"])
    client = QueryClient(hub.channel(ASKER, protocol.JOB), make_config(id_pattern=r"C\d{9}"), QueryLog(tmp_path / "q.jsonl"),
                         private_key=private_key)
    with pytest.raises(DataError, match="id 2: does not match"):
        client.ask(["C000000001", "C12"])


def test_unknown_institution_is_a_config_error(tmp_path):
    hub = LocalHub(["stranger", *BANKS, "agg"])
    with pytest.raises(ConfigError, match="unknown party 'stranger'"):
        QueryClient(hub.channel("stranger", protocol.JOB), make_config(), QueryLog(tmp_path / "q.jsonl"))
    with pytest.raises(ConfigError, match="is the aggregator"):
        QueryClient(hub.channel("agg", protocol.JOB), make_config(), QueryLog(tmp_path / "q.jsonl"))


def test_refresh_publishes_only_what_changed(consortium, tables):
    bank2 = consortium.institutions["bank2"]
    frame = tables["bank2"].copy()
    active = frame.index[frame["status"] == "active"]
    changed_customer = frame.loc[active[0], "customer_id"]
    closed_customer = frame.loc[active[1], "customer_id"]
    frame.loc[frame["customer_id"] == changed_customer, "amount"] += 1000
    frame.loc[frame["customer_id"] == closed_customer, "status"] = "closed"
    path = consortium.root / "bank2-v2.csv"
    frame.to_csv(path, index=False)
    change = bank2.load(load_exposures(path, consortium.config.table, consortium.config.policy, party="bank2"), wait=30)
    assert (len(change.upserted), change.removed) == (1, [closed_customer])
    updated = {**tables, "bank2": frame}
    ids = [changed_customer, closed_customer]
    assert [(a.institutions, a.exposure) for a in consortium.ask(ids).answers] == truth(updated, ASKER, ids)


def test_malformed_requests_get_an_error_reply(consortium):
    channel = consortium.hub.channel(ASKER, protocol.JOB)
    digest = consortium.config.policy.digest()
    bad_element = protocol.new_request(digest, elements=b"\x00" * 32)
    reply_bad = raw_call(channel, "bank2", protocol.EVALUATE, bad_element)
    assert reply_bad["ok"] is False and "not a valid ristretto255 element" in reply_bad["error"]
    wrong_fields = protocol.new_request(digest, points=b"")
    assert "expected a map with keys" in raw_call(channel, "bank3", protocol.EVALUATE, wrong_fields)["error"]
    too_many = protocol.new_request(digest, elements=b"\x00" * 32 * 10_001)
    assert "policy.max_batch" in raw_call(channel, "bank2", protocol.EVALUATE, too_many)["error"]
    odd_width = protocol.new_request(digest, width=9, tags=b"\x01" * 16, unpads=b"")
    assert "type bytes" in raw_call(channel, "agg", protocol.LOOKUP, odd_width)["error"]


def test_the_aggregator_refuses_a_snapshot_with_repeated_pseudonyms(consortium):
    channel = consortium.hub.channel("bank2", protocol.JOB)
    record = b"\x07" * 32
    request = protocol.new_request(consortium.config.policy.digest(), version=99, records=record * 2)
    reply = raw_call(channel, "agg", protocol.PUBLISH, request)
    assert reply["ok"] is False and "repeats a pseudonym" in reply["error"]
    assert consortium.aggregator.aggregator.tables()["bank2"].version == 1


def raw_call(channel, peer, tag, request):
    channel.send(peer, tag, request)
    return channel.recv(peer, protocol.reply_tag(tag, request["rid"]), timeout=10)


def test_a_responder_never_sees_the_same_element_twice_for_one_id(consortium):
    """Blinding is fresh per query: two asks of one id send unrelated group elements."""
    consortium.ask(["C000000001"])
    consortium.ask(["C000000001"])
    sent = [codec.decode(p) for p in consortium.hub.audits[ASKER].sent_payloads()]
    elements = [m["elements"] for m in sent if isinstance(m, dict) and "elements" in m]
    assert len(elements) == 2 * len(BANKS[1:])
    assert len(set(elements)) == 2  # one blinded element per ask, the same for every responder


def test_a_daily_limit_below_one_batch_is_a_configuration_error():
    with pytest.raises(ConfigError, match=r"max_ids_per_day \(10\) is below policy.max_batch \(50\)"):
        make_config(max_batch=50, max_ids_per_day=10)


def test_a_reply_that_comes_after_its_asker_stopped_waiting_is_dropped():
    """A member's channel never ends, so a late reply would wait there for ever, held against the
    replier's quota."""
    hub = LocalHub(["asker", "institution"])
    asker = hub.channel("asker", "query")
    asker.keep_open()
    request = protocol.new_request("digest")
    with pytest.raises(PeerTimeoutError):
        protocol.call(asker, "institution", protocol.HELLO, request, timeout=0.05)
    hub.channel("institution", "query").send("asker", protocol.reply_tag(protocol.HELLO, request["rid"]), {"ok": True})
    assert hub.mailboxes["asker"].backlog("institution") == (0, 0)



def test_a_service_that_cannot_record_its_reply_says_so_and_goes_on(tmp_path, caplog):
    """Its disk full, a responder's reply cannot be audited, so it is not sent: the error vanished in its worker's
    future, without a line in its log. Once there is room, the next request is answered."""
    from isthmus.query.service import Service

    hub = LocalHub(["asker", "lender"], audit_dir=tmp_path)
    audit = hub.audits["lender"].path
    service = Service(hub.channel("lender", protocol.JOB))

    def answer(sender: str, message: dict) -> dict:
        if message["n"] == 1:  # the request was recorded; the disk fills before the reply
            audit.rename(audit.with_suffix(".full"))
            audit.mkdir()
        return {"n": message["n"]}

    service.route("ask", ["asker"], answer)
    service.start()
    asker = hub.channel("asker", protocol.JOB)
    try:
        with caplog.at_level("WARNING", logger="isthmus.query.service"):
            asker.send("lender", "ask", {"rid": "a" * 32, "n": 1})
            with pytest.raises(PeerTimeoutError):
                asker.recv("lender", protocol.reply_tag("ask", "a" * 32), timeout=1.0)
        assert any("could not deliver the reply to asker: party 'lender' cannot write its audit log" in r.getMessage()
                   for r in caplog.records), [r.getMessage() for r in caplog.records]
        audit.rmdir()  # room again
        asker.send("lender", "ask", {"rid": "b" * 32, "n": 2})
        assert asker.recv("lender", protocol.reply_tag("ask", "b" * 32), timeout=5) == {"ok": True, "n": 2}
    finally:
        service.stop()


def test_a_service_that_cannot_record_a_request_drops_it_and_goes_on_listening(tmp_path, caplog):
    """In process, a request is recorded as it is taken: with the disk full, the error ended the route's listening
    thread, and the service answered nothing under that tag again, room or not."""
    from isthmus.query.service import Service

    hub = LocalHub(["asker", "lender"], audit_dir=tmp_path)
    audit = hub.audits["lender"].path
    service = Service(hub.channel("lender", protocol.JOB))
    service.route("ask", ["asker"], lambda sender, message: {"n": message["n"]})
    service.start()
    asker = hub.channel("asker", protocol.JOB)
    try:
        audit.parent.mkdir(parents=True, exist_ok=True)
        audit.mkdir()  # the disk is full: nothing can be written there
        with caplog.at_level("WARNING", logger="isthmus.query.service"):
            asker.send("lender", "ask", {"rid": "a" * 32, "n": 1})
            with pytest.raises(PeerTimeoutError):
                asker.recv("lender", protocol.reply_tag("ask", "a" * 32), timeout=1.0)
        assert any("dropped a request it could not record" in r.getMessage() for r in caplog.records), \
            [r.getMessage() for r in caplog.records]
        audit.rmdir()  # room again
        asker.send("lender", "ask", {"rid": "b" * 32, "n": 2})
        assert asker.recv("lender", protocol.reply_tag("ask", "b" * 32), timeout=5) == {"ok": True, "n": 2}
    finally:
        service.stop()


def test_a_query_log_gives_back_the_recent_answers_and_skips_a_cut_line(tmp_path):
    from isthmus.query.querylog import QueryRecord

    log = QueryLog(tmp_path / "queries.jsonl")
    log.record(QueryRecord("bank2", "responder", "bank1", "a" * 32, 10, "answered", time=1_000.0))
    log.record(QueryRecord("bank2", "responder", "bank1", "b" * 32, 20, "answered", time=2_000.0))
    log.record(QueryRecord("bank2", "responder", "bank3", "c" * 32, 30, "refused: policy", time=2_000.0))
    log.record(QueryRecord("bank2", "asker", "bank2", "d" * 32, 40, "complete", time=2_000.0))
    with open(log.path, "a") as cut:
        cut.write('{"party": "bank2", "role": "responder", "asker": "bank1", "request": "e", "ids": "10", '
                  '"outcome": "answered", "time": "now"}\n')  # not this release's types
        cut.write('{"party": "bank2", "role": "resp')  # a write cut by a crash
    assert [entry.request for entry in log.answered_since(1_500.0)] == ["b" * 32]
