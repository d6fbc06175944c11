"""Deviating askers in the private query: one asking about every id it can think of (closed by
policy.max_ids_per_day), one comparing answers with and without an institution (closed by
policy.partial_answers: false) and one offsetting its unpads in `aggregate` mode (a limit, documented).

The second documents a limit, stated in docs/security.md ("Private query", limits) and docs/query.md:
`aggregate` mode assumes a semi-honest asker. An asker that offsets each institution's encrypted
unpad reads, from the count field of one ordinary answer, WHICH institutions hold a loan. The
aggregator cannot tell: it only sees ciphertexts under the asker's key. If this test starts failing,
the attack was prevented: update both documents.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from isthmus.errors import PeerRefusedError
from isthmus.query import asker, protocol
from isthmus.query.records import PAD_BITS, tag_and_pad
from isthmus.query.synthetic import ACTIVE, truth
from tests.test_query_protocol import (  # noqa: F401 (private_key and tables are fixtures)
    ASKER, BANKS, Consortium, make_config, private_key, raw_call, sample_ids, tables)

OTHERS = BANKS[1:]  # the asker's column order: every other institution, in configuration order


@pytest.fixture
def consortium(tmp_path, tables, private_key):
    running = Consortium(tmp_path, tables, private_key, make_config())
    yield tables, running.institutions[ASKER]
    running.stop()


def test_an_asker_offsetting_its_unpads_reads_which_institutions_matched(consortium, monkeypatch):
    tables, bank1 = consortium
    ids = sorted(set(tables["bank2"]["customer_id"]) | set(tables["bank3"]["customer_id"]))[:40]
    # Deviation: each cell's pad lowered by 2**j - 1 for the j-th other institution, so every matched term
    # adds 2**j - 1 to the sum and the count field becomes sum over matched j of 2**j. The cells are
    # computed row by row in column order before the (honest) shuffle, which moves the offset along.
    calls = itertools.count()

    def offset_pad(output: bytes) -> tuple[bytes, int]:
        tag, pad = tag_and_pad(output)
        return tag, (pad - (2 ** (next(calls) % len(OTHERS)) - 1)) % (1 << PAD_BITS)

    monkeypatch.setattr(asker, "tag_and_pad", offset_pad)
    answers = bank1.ask(ids).answers
    holders = {name: set(frame[frame["status"] == ACTIVE]["customer_id"]) for name, frame in tables.items()}
    learned = {a.id: {OTHERS[j] for j in range(len(OTHERS)) if a.institutions >> j & 1} for a in answers}
    assert learned == {i: {name for name in OTHERS if i in holders[name]} for i in ids}
    assert any(0 < len(found) < len(OTHERS) for found in learned.values())  # not all-or-nothing
    assert [a.exposure for a in answers] == [total for _, total in truth(tables, ASKER, ids)]  # amounts still right


def test_a_member_asking_past_the_daily_limit_is_refused_everywhere(tmp_path, tables, private_key):
    """Each answer says whether someone in the consortium lends to that person: with no limit a member could
    ask about every possible id and list the consortium's borrowers. The institutions and the aggregator
    each count a member's ids over 24 hours, so leaving any one of them out does not get round it."""
    running = Consortium(tmp_path, tables, private_key, make_config(max_batch=50, max_ids_per_day=100))
    try:
        ids = sample_ids(tables, 60)[:50]
        assert running.ask(ids).complete and running.ask(ids).complete
        with pytest.raises(asker.NoAnswerError, match=r"policy\.max_ids_per_day"):
            running.ask(ids[:1])
        assert running.ask(ids[:1], asker="bank2").complete  # every member has its own budget
        channel = running.hub.channel(ASKER, protocol.JOB)  # straight to the aggregator, past the asker's code
        request = protocol.new_request(running.config.policy.digest(), width=3, tags=b"\x01" * 16 * 3,
                                       unpads=private_key.public_key.encrypt(np.zeros((1, 3), dtype=object), precision=0))
        assert "policy.max_ids_per_day" in raw_call(channel, "agg", protocol.LOOKUP, request)["error"]
    finally:
        running.stop()
    # Restarted, the services count again what their query logs say they answered today: a member that could get
    # any of them restarted (or waited for an upgrade) no longer starts from nothing.
    restarted = Consortium(tmp_path, tables, private_key, make_config(max_batch=50, max_ids_per_day=100))
    try:
        with pytest.raises(asker.NoAnswerError, match=r"policy\.max_ids_per_day"):
            restarted.ask(ids[:1])
        assert restarted.ask(ids[:1], asker="bank2").complete
    finally:
        restarted.stop()



def test_a_members_abort_notice_silences_no_service(tmp_path, tables, private_key):
    """The query job lives as long as the services: an abort notice, which ends a training job at every
    party, failed every later receive of the service it reached until that service restarted."""
    running = Consortium(tmp_path, tables, private_key, make_config())
    try:
        rogue = running.hub.channel("bank4", protocol.JOB)
        rogue.abort("nothing is wrong, stop answering")  # to every other member and the aggregator
        ids = sample_ids(tables, 20)
        for member in ("bank1", "bank2"):
            batch = running.ask(ids, asker=member)
            assert batch.complete and [(a.institutions, a.exposure) for a in batch.answers] == truth(tables, member, ids)
    finally:
        running.stop()


def test_answers_with_and_without_an_institution_tell_its_loans_unless_partial_answers_is_off(
        tmp_path, tables, private_key):
    """Asked while bank4 is down and again once it is back, the same ids' answers differ by bank4's count and
    amount for each (the default, partial_answers: true). With false the asker asks the aggregator nothing
    while an institution is missing, and the aggregator refuses a query that leaves one out (an asker
    that sends it anyway)."""
    ids = sample_ids(tables, 20)
    answers = {}
    for state, offline in (("down", ["bank4"]), ("back", [])):
        running = Consortium(tmp_path / state, tables, private_key, make_config(), offline=offline)
        try:
            answers[state] = running.ask(ids).answers
        finally:
            running.stop()
    differences = [(back.institutions - down.institutions, back.exposure - down.exposure)
                   for back, down in zip(answers["back"], answers["down"])]
    assert differences == truth({"bank4": tables["bank4"]}, ASKER, ids)

    config = make_config(partial_answers=False)
    running = Consortium(tmp_path / "refusing", tables, private_key, config, offline=["bank4"])
    try:
        with pytest.raises(asker.NoAnswerError, match=r"partial_answers: false\), and these did not answer: bank4"):
            running.ask(ids)
        assert not running.log("agg").records()  # the aggregator was not asked
        client = running.institutions[ASKER].client  # deviating: it asks anyway, under the agreed policy's digest
        client.config = replace(config, policy=replace(config.policy, partial_answers=True))
        with pytest.raises(PeerRefusedError, match="only queries over every other institution .* holds 2 of 3"):
            running.ask(ids)
    finally:
        running.stop()
