"""The ledger inside the node: ``GET /v1/ledger`` reads this node's replica and verifies it against the keys
pinned in its key folder, ``GET /v1/ledger/peers`` compares it with the peers' replicas through their nodes;
``isthmus ledger show/verify --node URL`` and the board's ledger page are clients of them."""

from __future__ import annotations

from concurrent.futures import Future

import pytest
from typer.testing import CliRunner

from isthmus.cli_ledger import ledger_app
from isthmus.incentive.ledger import ledger_path
from tests.board_helpers import board
from tests.ledger_helpers import ROLES, record_at_nodes, tamper
from tests.node_helpers import federation, local_nodes


@pytest.fixture
def nodes(tmp_path):
    nodes = local_nodes(federation(tmp_path))
    yield nodes
    nodes.stop()


def recorded(nodes, tmp_path, holders: tuple[str, ...] = ("guest",)) -> str:
    """One job endorsed by the three nodes' own signing keys; the replicas of ``holders``' nodes hold it."""
    return record_at_nodes(nodes.keys(), tmp_path / "merged", "credit", ROLES, holders)["guest"]


def through_api(monkeypatch, api) -> None:
    """The CLI's NodeClient sends its requests to the in-process app."""
    monkeypatch.setattr("isthmus.node.client.httpx.Client", lambda base_url, headers, timeout: api)


def test_no_ledger_yet(nodes):
    assert board(nodes.coordinators["guest"]).get("/v1/ledger").json() == {
        "party": "guest", "records": [], "verified": None, "findings": []}


def test_ledger_of_the_node_verifies_and_the_cli_reads_it(nodes, tmp_path, monkeypatch):
    record = recorded(nodes, tmp_path, holders=("guest", "host", "arbiter"))
    api = board(nodes.coordinators["guest"])
    ledger = api.get("/v1/ledger").json()
    assert ledger["verified"] is True and ledger["findings"] == []
    assert [(r["seq"], r["hash"], r["job"], r["parties"], r["signed"]) for r in ledger["records"]] == [
        (1, record, "credit", ["arbiter", "guest", "host"], 3)]

    through_api(monkeypatch, api)
    shown = CliRunner().invoke(ledger_app, ["show", "--node", str(api.base_url)])
    assert shown.exit_code == 0 and "ledger of guest" in shown.output and record[:16] in shown.output, shown.output
    from_file = CliRunner().invoke(ledger_app, ["show", str(ledger_path(nodes.coordinators["guest"].config.keys,
                                                                         "guest"))])
    assert from_file.exit_code == 0 and record[:16] in from_file.output and "3/3" in from_file.output
    verified = CliRunner().invoke(ledger_app, ["verify", "--node", str(api.base_url)])
    assert verified.exit_code == 0 and "ledger verified by node guest" in verified.output, verified.output
    both = CliRunner().invoke(ledger_app, ["verify", str(tmp_path), "--node", str(api.base_url)])
    assert both.exit_code == 1 and "not both" in both.output


def test_a_tampered_replica_fails_through_the_api_and_the_cli(nodes, tmp_path, monkeypatch):
    recorded(nodes, tmp_path)
    tamper(ledger_path(nodes.coordinators["guest"].config.keys, "guest"),
           "UPDATE records SET body = replace(body, '\"credit\"', '\"debit\"')")
    api = board(nodes.coordinators["guest"])
    ledger = api.get("/v1/ledger").json()
    assert ledger["verified"] is False
    assert any("does not hash to the stored hash" in finding for finding in ledger["findings"]), ledger["findings"]
    through_api(monkeypatch, api)
    verified = CliRunner().invoke(ledger_app, ["verify", "--node", str(api.base_url)])
    assert verified.exit_code == 1 and "ledger verification failed at node guest" in verified.output, verified.output


def test_the_ledger_needs_the_token_when_the_node_asks_for_one(nodes):
    guarded = board(nodes.coordinators["guest"], token="s3cret-token-0123456789")
    assert guarded.get("/v1/ledger").status_code == 401
    answer = guarded.get("/v1/ledger", headers={"Authorization": "Bearer s3cret-token-0123456789"})
    assert answer.status_code == 200 and answer.json()["party"] == "guest"


# -- the peers' replicas: GET /v1/ledger/peers -------------------------------------------------------------


def peers_of(nodes, party: str) -> dict:
    return board(nodes.coordinators[party]).get("/v1/ledger/peers").json()["peers"]


def test_replicas_that_hold_the_same_records_agree_and_the_cli_says_so(nodes, tmp_path, monkeypatch):
    record = recorded(nodes, tmp_path, holders=("guest", "host", "arbiter"))
    peers = peers_of(nodes, "guest")
    assert {p: (r["status"], r["in_common"], r["verified_there"]) for p, r in peers.items()} == {
        "host": ("agrees", 1, True), "arbiter": ("agrees", 1, True)}
    assert peers["host"]["detail"] == "holds the same 1 record(s) naming both nodes; its node verifies its whole replica"
    through_api(monkeypatch, board(nodes.coordinators["guest"]))
    verified = CliRunner().invoke(ledger_app, ["verify", "--node", "http://127.0.0.1:1"])
    assert verified.exit_code == 0 and "ledger verified by node guest" in verified.output, verified.output
    assert "arbiter      agrees" in verified.output and "host         agrees" in verified.output, verified.output
    assert record[:16] not in verified.output  # agreement is shown as counts, not hashes


def test_a_replica_missing_a_record_differs_at_both_ends(nodes, tmp_path, monkeypatch):
    """The host's node lost its replica (say, restored from an old backup): the guest sees that the host lacks its
    record, the host that the guest holds one it lacks, and `ledger verify --node` fails."""
    recorded(nodes, tmp_path, holders=("guest", "arbiter"))
    at_guest = peers_of(nodes, "guest")
    assert at_guest["host"]["status"] == "differs" and at_guest["arbiter"]["status"] == "agrees"
    assert at_guest["host"]["missing_there"] == [{"seq": 1, "job": "credit", "hash": at_guest["host"]["missing_there"][0]["hash"]}]
    assert at_guest["host"]["detail"] == "lacks 1 of this replica's records naming it: record 1 (job credit)"
    at_host = peers_of(nodes, "host")
    assert at_host["guest"]["status"] == "differs" and at_host["guest"]["missing_here"] == 1
    assert at_host["guest"]["detail"] == "holds 1 record(s) naming this node that this replica lacks"
    through_api(monkeypatch, board(nodes.coordinators["guest"]))
    verified = CliRunner().invoke(ledger_app, ["verify", "--node", "http://127.0.0.1:1"])
    assert verified.exit_code == 1 and "host         differs: lacks 1" in verified.output, verified.output


def test_an_edited_record_differs_and_its_holder_says_its_replica_fails(nodes, tmp_path):
    recorded(nodes, tmp_path, holders=("guest", "host", "arbiter"))
    tamper(ledger_path(nodes.coordinators["arbiter"].config.keys, "arbiter"),
           "UPDATE records SET body = replace(body, '\"credit\"', '\"debit\"')")
    arbiter = peers_of(nodes, "guest")["arbiter"]
    assert (arbiter["status"], arbiter["in_common"], arbiter["missing_here"], arbiter["verified_there"]) == (
        "differs", 0, 1, False)
    assert arbiter["detail"].endswith("its node says its own replica fails verification"), arbiter["detail"]


def test_a_peer_that_does_not_answer_is_named_and_the_cli_exits_3(nodes, tmp_path, monkeypatch):
    recorded(nodes, tmp_path, holders=("guest", "host", "arbiter"))
    nodes.links[list(nodes.coordinators).index("arbiter")].stop()  # its node is down
    nodes.coordinators["guest"].replicas.wait = 0.5
    peers = peers_of(nodes, "guest")
    assert peers["host"]["status"] == "agrees"
    assert peers["arbiter"] == {"status": "no answer", "in_common": None, "missing_there": [], "missing_here": None,
                                "verified_there": None,
                                "detail": "nothing came back within 0.5 s: its node is down, or too old to answer"}
    through_api(monkeypatch, board(nodes.coordinators["guest"]))
    verified = CliRunner().invoke(ledger_app, ["verify", "--node", "http://127.0.0.1:1"])
    assert verified.exit_code == 3 and "arbiter      no answer" in verified.output, verified.output


def test_a_peer_is_not_asked_again_while_its_last_question_is_being_delivered(nodes):
    """Delivery to a node that is down is retried on the link's few send threads: a board page reloaded again
    and again would have taken them all, delaying every other message to every peer."""
    guest = nodes.coordinators["guest"]
    guest.replicas.wait = 0.2
    to_arbiter, delivered, asked = Future(), Future(), []
    delivered.set_result(None)
    guest.send = lambda peer, message: asked.append(peer) or (to_arbiter if peer == "arbiter" else delivered)
    guest.replicas.check()
    second = guest.replicas.check()
    assert asked == ["arbiter", "host", "host"]
    assert second["arbiter"]["status"] == "no answer" and "not asked again" in second["arbiter"]["detail"]
    to_arbiter.set_result(None)  # delivered, or given up
    guest.replicas.check()
    assert asked[-2:] == ["arbiter", "host"]


def test_the_ledger_page_loads_the_peers_replicas_as_a_fragment(nodes, tmp_path):
    recorded(nodes, tmp_path, holders=("guest", "arbiter"))
    web = board(nodes.coordinators["guest"])
    assert 'hx-get="/ledger/peers" hx-trigger="load"' in web.get("/ledger").text  # the page does not wait for peers
    fragment = web.get("/ledger/peers").text
    host, arbiter = (fragment.split(f'id="replica-{peer}"')[1].split("</tr>")[0] for peer in ("host", "arbiter"))
    assert "r-differs" in host and "lacks 1 of this replica&#39;s records naming it: record 1 (job credit)" in host
    assert "r-agrees" in arbiter and "<td>1</td>" in arbiter
