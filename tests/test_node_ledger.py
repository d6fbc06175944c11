"""The ledger inside the node: ``GET /v1/ledger`` reads this node's replica and verifies it against the keys
pinned in its key folder; ``isthmus ledger show/verify --node URL`` are thin clients of it."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from isthmus.cli_ledger import ledger_app
from isthmus.incentive.ledger import ledger_path
from tests.board_helpers import board
from tests.ledger_helpers import record_job, tamper
from tests.node_helpers import federation, local_nodes


@pytest.fixture
def nodes(tmp_path):
    nodes = local_nodes(federation(tmp_path))
    yield nodes
    nodes.stop()


def recorded(nodes, tmp_path) -> str:
    """One job endorsed by the three nodes' own signing keys; the guest node's replica holds it."""
    merged = tmp_path / "merged"
    for party, coordinator in nodes.coordinators.items():
        keys = coordinator.config.keys
        shutil.copytree(keys, merged, dirs_exist_ok=True, ignore=lambda folder, names: [
            n for n in names if (keys / n).is_dir() and n != party])
    hashes = record_job(merged, "credit", {"guest": "guest", "host": "host", "arbiter": "arbiter"})
    shutil.copy(ledger_path(merged, "guest"), ledger_path(nodes.coordinators["guest"].config.keys, "guest"))
    return hashes["guest"]


def through_api(monkeypatch, api) -> None:
    """The CLI's NodeClient sends its requests to the in-process app."""
    monkeypatch.setattr("isthmus.node.client.httpx.Client", lambda base_url, headers, timeout: api)


def test_no_ledger_yet(nodes):
    assert board(nodes.coordinators["guest"]).get("/v1/ledger").json() == {
        "party": "guest", "records": [], "verified": None, "findings": []}


def test_ledger_of_the_node_verifies_and_the_cli_reads_it(nodes, tmp_path, monkeypatch):
    record = recorded(nodes, tmp_path)
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
