"""`isthmus job` commands against a node's API (in process).

A job is named by its id or, as git takes a short commit id, by its first characters: the 16 hex digits
of `job list` had to be copied whole, and `job approve 165c` answered only that no such job existed."""

from __future__ import annotations

import json
import re

import pytest

from isthmus.errors import ConfigError
from isthmus.node.client import NodeClient
from tests.board_helpers import job_cli, pending_job, write_run
from tests.node_helpers import federation, local_nodes, proposal


def client_of(*ids: str) -> NodeClient:
    client = NodeClient("http://127.0.0.1:1")
    client.jobs = lambda: [{"id": job_id} for job_id in ids]
    return client


def test_the_first_characters_of_one_jobs_id_name_it():
    client = client_of("abcd1111aaaa0000", "abcd2222bbbb0000", "ffff0000cccc0000")
    assert client.job_id("abcd1") == "abcd1111aaaa0000"
    assert client.job_id("ffff0000cccc0000") == "ffff0000cccc0000"
    assert client.job_id("ffff0000cccc00001") == "ffff0000cccc00001"  # the node says it has no such job
    assert client.job_id("fff") == "fff"  # too short to stand for an id


def test_characters_that_begin_several_ids_are_refused_naming_them():
    with pytest.raises(ConfigError, match=r"'abcd' begins the ids of 2 jobs .* \(abcd1111aaaa0000, "
                                          r"abcd2222bbbb0000\): give more of it"):
        client_of("abcd1111aaaa0000", "abcd2222bbbb0000").job_id("abcd")


def test_an_operator_approves_a_job_by_the_start_of_its_id(tmp_path, monkeypatch):
    nodes = local_nodes(federation(tmp_path))
    try:
        job_id, cli = pending_job(nodes), job_cli(nodes, "guest", monkeypatch)
        short = cli("approve", job_id[:3])
        assert short.exit_code == 1 and f"no job '{job_id[:3]}' on node 'guest'" in short.stderr
        approved = cli("approve", job_id[:6])
        assert approved.exit_code == 0 and approved.stdout == "accepted\n", approved.output
        nodes.wait("guest", job_id, "accepted", "running")
    finally:
        nodes.stop()


def test_an_operator_reads_the_evaluation_of_a_job_at_its_node(tmp_path, monkeypatch):
    """The CLI had no way to the metrics: a job run through nodes left them in the node's store, for the board."""
    nodes = local_nodes(federation(tmp_path))
    try:
        job_id, cli = pending_job(nodes), job_cli(nodes, "guest", monkeypatch)
        before = cli("results", job_id)
        assert before.exit_code == 1 and f"job {job_id} has no evaluation at 'guest' (it is pending" in before.stderr
        write_run(nodes.coordinators["guest"], job_id)
        table = cli("results", job_id[:5])
        assert table.exit_code == 0, table.output
        assert "auc" in table.stdout and "0.9000" in table.stdout and "guest" in table.stdout
        assert json.loads(cli("results", job_id, "--json").stdout)["metrics"]["gain"] == [0.5, 1.0]
    finally:
        nodes.stop()


def test_a_proposers_misspelt_alias_of_its_own_is_named_with_the_one_it_likely_meant(tmp_path):
    """`job submit` said only that the proposer's own catalogue had no such table."""
    from isthmus.node.policy import Refusal

    nodes = local_nodes(federation(tmp_path))
    try:
        host = nodes.coordinators["host"]
        for alias, hint in (("acounts", "did you mean 'accounts'?"), ("zzz", "its tables: accounts")):
            job = proposal()
            job["parties"]["host"]["data"] = alias
            with pytest.raises(Refusal, match=re.escape(f"this node's catalogue has no table {alias!r} ({hint})")):
                host.submit(job)
        assert host.store.jobs() == []
    finally:
        nodes.stop()
