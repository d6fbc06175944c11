"""A member asking about, or answering about, ledger replicas: it learns only the records it signed itself, cannot
answer in another member's name or twice, cannot make a node upload without bound, and a malformed answer is refused."""

from __future__ import annotations

import threading
import time

import pytest

from isthmus.errors import ProtocolError
from isthmus.node.replicas import ANSWERS_PER_MINUTE, ASK, HELD
from tests.ledger_helpers import ROLES, record_at_nodes
from tests.node_helpers import federation, local_nodes


@pytest.fixture
def nodes(tmp_path):
    nodes = local_nodes(federation(tmp_path))
    yield nodes
    nodes.stop()


def captured(coordinator) -> list[tuple[str, dict]]:
    """What ``coordinator`` sends from now on, kept instead of sent."""
    sent: list[tuple[str, dict]] = []
    coordinator.send = lambda peer, message: sent.append((peer, message))
    return sent


def test_an_answer_holds_only_the_records_the_asker_signed(nodes, tmp_path):
    """The guest's replica also holds a job the host was not in: the host's question must not learn of it."""
    shared = record_at_nodes(nodes.keys(), tmp_path / "merged", "credit", ROLES, holders=())
    record_at_nodes(nodes.keys(), tmp_path / "merged", "private", {"guest": "guest", "arbiter": "arbiter"},
                    holders=("guest",))
    guest = nodes.coordinators["guest"]
    assert len(guest.replicas.replica().records) == 2
    sent = captured(guest)
    guest.handle("host", {"kind": ASK, "job": "question-1"})
    [(peer, answer)] = sent
    assert peer == "host" and answer["count"] == 1 and answer["hashes"] == bytes.fromhex(shared["guest"])


def test_answers_in_another_members_name_twice_or_malformed_are_refused(nodes, tmp_path):
    record_at_nodes(nodes.keys(), tmp_path / "merged", "credit", ROLES, holders=("guest", "host"))
    guest, host = nodes.coordinators["guest"], nodes.coordinators["host"]
    asks = captured(guest)
    guest.replicas.wait = 2.0  # the arbiter is never asked (asks are captured): it cannot answer
    result: dict = {}
    checking = threading.Thread(target=lambda: result.update(guest.replicas.check()))
    checking.start()
    while len(asks) < 2:
        time.sleep(0.01)
    rid = {peer: message["job"] for peer, message in asks}
    host_sent = captured(host)  # the host's own answer, as its node would send it
    host.handle("guest", {"kind": ASK, "job": rid["host"]})
    [(_, answer)] = host_sent
    with pytest.raises(ProtocolError, match="asked another member"):
        guest.handle("arbiter", answer)  # the arbiter answering the question put to the host
    with pytest.raises(ProtocolError, match="31 bytes of hashes for 1 records"):
        guest.handle("host", {**answer, "hashes": answer["hashes"][:31]})
    for verdict in ("yes", 1, 0):
        with pytest.raises(ProtocolError, match="verified must be"):
            guest.handle("host", {**answer, "verified": verdict})
    with pytest.raises(ProtocolError, match="expected a map with keys"):
        guest.handle("host", {**answer, "extra": 1})
    guest.handle("host", answer)
    with pytest.raises(ProtocolError, match="answered twice"):
        guest.handle("host", {**answer, "hashes": b"", "count": 0})  # a second, different answer is not taken
    checking.join()
    assert result["host"]["status"] == "agrees" and result["host"]["in_common"] == 1
    assert result["arbiter"]["status"] == "no answer"
    guest.handle("host", answer)  # after the check: dropped without an error


def test_a_member_asking_in_a_loop_is_answered_a_bounded_number_of_times(nodes):
    guest = nodes.coordinators["guest"]
    sent = captured(guest)
    for i in range(ANSWERS_PER_MINUTE + 10):
        guest.handle("host", {"kind": ASK, "job": f"q{i}"})
    assert len(sent) == ANSWERS_PER_MINUTE
    guest.handle("arbiter", {"kind": ASK, "job": "q-arbiter"})  # another member's budget is its own
    assert len(sent) == ANSWERS_PER_MINUTE + 1
