"""A deviating asker in the private query's `aggregate` mode.

This test documents a limit, stated in docs/security.md ("Private query", limits) and docs/query.md:
`aggregate` mode assumes a semi-honest asker. An asker that offsets each institution's encrypted
unpad reads, from the count field of one ordinary answer, WHICH institutions hold a loan. The
aggregator cannot tell: it only sees ciphertexts under the asker's key. If this test starts failing,
the attack was prevented: update both documents.
"""

from __future__ import annotations

import itertools

import pytest

from isthmus.crypto.oprf import OprfKey
from isthmus.crypto.paillier import generate_keypair
from isthmus.query import asker, protocol
from isthmus.query.config import Policy, QueryConfig
from isthmus.query.loans import load_exposures
from isthmus.query.parties import AggregatorParty, InstitutionParty
from isthmus.query.querylog import QueryLog
from isthmus.query.records import PAD_BITS, tag_and_pad
from isthmus.query.synthetic import ACTIVE, generate_loans, truth
from isthmus.transport.local import LocalHub

BANKS = ["bank1", "bank2", "bank3", "bank4"]
ASKER = "bank1"
OTHERS = BANKS[1:]  # the asker's column order: every other institution, in configuration order


@pytest.fixture
def consortium(tmp_path):
    config = QueryConfig("adv-lenders", "agg", {name: "in-process" for name in [*BANKS, "agg"]},
                         Policy(paillier_bits=1024), answer_timeout=5.0)
    hub = LocalHub([*BANKS, "agg"])
    aggregator = AggregatorParty(hub.channel("agg", protocol.JOB), config, QueryLog(tmp_path / "agg.jsonl"))
    aggregator.start()
    tables = generate_loans(BANKS, 60, seed=5)
    private_key = generate_keypair(1024)[1]
    parties = []
    for name in BANKS:
        party = InstitutionParty(hub.channel(name, protocol.JOB), config, OprfKey.generate(),
                                 QueryLog(tmp_path / f"{name}.jsonl"), private_key=private_key, workers=1)
        party.start()
        tables[name].to_csv(tmp_path / f"{name}.csv", index=False)
        party.load(load_exposures(tmp_path / f"{name}.csv", config.table, config.policy, party=name), wait=30)
        parties.append(party)
    yield tables, parties[0]
    for party in parties:
        party.stop()
    aggregator.stop()


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
