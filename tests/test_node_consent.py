"""Consent between nodes: each node's policy decides (accept/refuse matrix), a refusal anywhere means
nothing runs anywhere, a manual approval is waited for, and every start carries every party's signature."""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest
import yaml

from isthmus.errors import ConfigError
from isthmus.node.board.rules import policy_rows
from isthmus.node.config import load_node_config
from isthmus.node.policy import Refusal, review
from isthmus.node.proposal import Proposal, parse_proposal
from isthmus.node.runner import ProcessRunner
from isthmus.node.service import running_node
from tests.node_helpers import federation, free_port_range, local_nodes, proposal


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    return federation(tmp_path_factory.mktemp("fed"), arbiter={"proposers": ["host"]})


def reviewed(path, body: dict, proposer: str = "host") -> None:
    config = load_node_config(path)
    review(config, parse_proposal(body, job_id="0123456789abcdef", proposer=proposer, members=set(config.members)))


def plaintext() -> dict:
    body = proposal(benchmark_only_plaintext=True)
    return body


def with_step(step: dict) -> dict:
    body = proposal()
    body["steps"].insert(1, step)
    return body


def with_option(**options) -> dict:
    body = proposal()
    body["steps"][1]["train"].update(options)
    return body


def with_ratio(ratio) -> dict:
    body = proposal()
    body["steps"][0]["intersect"]["max_peer_ratio"] = ratio
    return body


def with_alias(alias: str) -> dict:
    body = proposal()
    body["parties"]["guest"]["data"] = alias
    return body


@pytest.mark.parametrize("party, body, proposer, rule", [
    ("guest", proposal(), "host", None),
    ("arbiter", proposal(), "host", None),
    ("arbiter", proposal(), "guest", "proposers"),
    ("guest", proposal(key_bits=512), "host", "options"),  # below the algorithm's own floor: typed check
    ("host", with_option(key_bits=1024), "guest", None),
    ("guest", proposal(min_shared_rows=10), "host", "min_intersection"),
    ("guest", with_ratio(100), "host", None),  # the default, at the default policy's limit
    ("guest", with_ratio(101), "host", "max_peer_ratio"),
    ("guest", with_ratio(None), "host", "max_peer_ratio"),  # no limit at all
    ("guest", plaintext(), "host", "allow_weakening"),
    ("guest", with_step({"binning": {"key_bits": 1024}}), "host", "steps"),
    ("guest", with_alias("loans"), "host", "alias"),
    ("guest", with_option(epoch=3), "host", "options"),
    ("host", {**proposal(), "steps": [{"intersect": {"min_shared_rows": 100}},
                                      {"train": {"model": "hetero_secureboost", "key_bits": 1024}}]}, "guest", "models"),
    ("guest", {**proposal(), "steps": proposal()["steps"][1:]}, "host", "min_intersection"),  # no pre-aligned files
])
def test_policy_matrix(configs, party, body, proposer, rule):
    if rule is None:
        reviewed(configs[party], body, proposer)
        return
    with pytest.raises(Refusal) as refused:
        reviewed(configs[party], body, proposer)
    assert refused.value.rule == rule, str(refused.value)


def test_min_key_bits_and_weakening_consent(tmp_path):
    strict = federation(tmp_path / "strict", guest={"min_key_bits": 2048})
    with pytest.raises(Refusal, match="min_key_bits: step 'train': key_bits = 1024 is below this node's minimum of 2048"):
        reviewed(strict["guest"], proposal())
    lenient = federation(tmp_path / "lenient", guest={"allow_weakening": ["benchmark_only_plaintext"]})
    reviewed(lenient["guest"], plaintext())


def test_a_node_may_lift_or_tighten_the_peer_ratio(tmp_path):
    tight = federation(tmp_path / "tight", guest={"max_peer_ratio": 5})
    with pytest.raises(Refusal, match=r"max_peer_ratio: the intersect step's max_peer_ratio \(100\) is above this "
                                      "node's limit of 5"):
        reviewed(tight["guest"], proposal())
    reviewed(tight["guest"], with_ratio(5))
    with pytest.raises(Refusal, match="max_peer_ratio: the intersect step sets no max_peer_ratio; this node's limit is 5"):
        reviewed(tight["guest"], with_ratio(None))
    reviewed(federation(tmp_path / "any", guest={"max_peer_ratio": None})["guest"], with_ratio(None))


def test_max_rows_node_wide_and_per_table(tmp_path):
    """The guest's table has 500 rows: a node-wide or per-table max_rows below that refuses, the tighter wins."""
    configs = federation(tmp_path, guest={"max_rows": 500})
    reviewed(configs["guest"], proposal())  # exactly at the limit: accepted
    for node_wide, per_table in ((499, None), (None, 499), (10_000, 100)):
        policy = yaml.safe_load(configs["guest"].read_text())
        policy["policy"]["max_rows"] = node_wide
        policy["catalogue"]["customers"]["max_rows"] = per_table
        configs["guest"].write_text(yaml.safe_dump(policy))
        with pytest.raises(Refusal, match=r"max_rows: table 'customers' holds more rows than the "
                                          rf"{min(n for n in (node_wide, per_table) if n)} this node lets one job use"
                           ) as refused:
            reviewed(configs["guest"], proposal())
        assert "500" not in str(refused.value)  # the proposer learns the table is larger, not its size
    policy["catalogue"]["customers"]["max_rows"] = 500  # the per-table rule stays the node's: the job still plans
    configs["guest"].write_text(yaml.safe_dump(policy))
    reviewed(configs["guest"], proposal())
    reviewed(configs["host"], proposal(), "guest")  # a node without the rule is not affected


@pytest.mark.parametrize("break_it, problem", [
    (lambda catalogue, data: (data / "guest.csv").unlink(), "no such file"),
    (lambda catalogue, data: catalogue.update(label="outcome"), "'outcome'"),
    (lambda catalogue, data: catalogue.update(test=str(data / "gone.csv")), "no such file"),
])
def test_a_table_the_node_cannot_read_is_refused_naming_the_table_not_its_file(tmp_path, caplog, break_it, problem):
    """Accepted, such a job failed only once every party had started it. The proposer learns which table,
    this node's operator (its log, also at the node's start) what is wrong with which file."""
    configs = federation(tmp_path)
    node = yaml.safe_load(configs["guest"].read_text())
    break_it(node["catalogue"]["customers"], tmp_path / "data")
    configs["guest"].write_text(yaml.safe_dump(node))
    with pytest.raises(Refusal) as refused:
        reviewed(configs["guest"], proposal())
    assert refused.value.rule == "alias" and "cannot read its table 'customers'" in str(refused.value)
    assert str(tmp_path) not in str(refused.value)
    assert problem in caplog.text and str(tmp_path) in caplog.text
    caplog.clear()
    with running_node(load_node_config(configs["guest"])):
        assert "catalogue table 'customers' cannot be read now" in caplog.text and problem in caplog.text


def test_a_misspelt_compute_backend_stops_the_node_at_load(tmp_path):
    configs = federation(tmp_path, host={})
    text = configs["host"].read_text()
    configs["host"].write_text(text + "compute: rai://head:10001\n")
    with pytest.raises(ConfigError, match="compute backend must be 'local' or 'ray://HOST:PORT', not 'rai://head:10001'"):
        load_node_config(configs["host"])
    configs["host"].write_text(text + "compute: ray://head:10001\n")
    assert load_node_config(configs["host"]).options.compute == "ray://head:10001"  # contacted only by its jobs


def test_one_refusal_means_nothing_runs_anywhere(tmp_path):
    nodes = local_nodes(federation(tmp_path, arbiter={"min_intersection": 200}))
    try:
        job = nodes.coordinators["host"].submit(proposal(min_shared_rows=150))
        refused = nodes.wait("host", job, "refused")
        assert refused["reason"].startswith("arbiter refuses: min_intersection:"), refused["reason"]
        nodes.wait("guest", job, "refused")  # it was waiting for its operator: told, and nothing to approve
        with pytest.raises(ConfigError, match="not waiting for approval"):
            nodes.coordinators["guest"].approve(job)
        assert all(not runner.started for runner in nodes.runners.values())
    finally:
        nodes.stop()


def test_manual_approval_then_every_node_starts_with_every_signature(tmp_path):
    nodes = local_nodes(federation(tmp_path))
    try:
        job = nodes.coordinators["host"].submit(proposal())
        nodes.wait("guest", job, "pending")
        assert nodes.status("host", job)["status"] == "accepted"
        assert not any(runner.started for runner in nodes.runners.values())
        nodes.coordinators["guest"].approve(job)
        for party in ("guest", "host", "arbiter"):
            nodes.wait(party, job, "running")
            assert nodes.runners[party].started == [job]
        digests = {nodes.status(party, job)["digest"] for party in nodes.coordinators}
        assert len(digests) == 1
    finally:
        nodes.stop()


def test_operator_refusal_reaches_the_proposer(tmp_path):
    nodes = local_nodes(federation(tmp_path))
    try:
        job = nodes.coordinators["host"].submit(proposal())
        nodes.wait("guest", job, "pending")
        nodes.coordinators["guest"].refuse(job, "not this quarter")
        assert nodes.wait("host", job, "refused")["reason"] == "refused by guest's operator: not this quarter"
        assert nodes.wait("arbiter", job, "refused")["reason"] == "refused by guest's operator: not this quarter"
        assert all(not runner.started for runner in nodes.runners.values())
    finally:
        nodes.stop()


def test_digest_binds_the_whole_proposal():
    a = Proposal("0123456789abcdef", "host", proposal())
    assert a.digest != Proposal("0123456789abcdef", "guest", proposal()).digest
    assert a.digest != Proposal("0123456789abcdef", "host", proposal(epochs=3)).digest


def test_a_proposal_left_unanswered_past_the_limit_is_refused_as_expired(tmp_path):
    nodes = local_nodes(federation(tmp_path, guest={"answer_within_hours": 2}))
    try:
        guest, job = nodes.coordinators["guest"], nodes.coordinators["host"].submit(proposal())
        created = nodes.wait("guest", job, "pending")["created"]
        guest.expire_unanswered(now=created + 2 * 3600 - 1)
        assert nodes.status("guest", job)["status"] == "pending"
        guest.expire_unanswered(now=created + 2 * 3600 + 1)
        reason = "guest refuses: answer_within_hours: its operator did not answer within 2 h"
        assert nodes.wait("host", job, "refused")["reason"] == reason
        assert nodes.wait("arbiter", job, "refused")["reason"] == reason
        with pytest.raises(ConfigError, match="is refused, not waiting for approval"):
            guest.approve(job)
        assert all(not runner.started for runner in nodes.runners.values())
    finally:
        nodes.stop()


def assert_cancelled_everywhere(nodes, job: str, reason: str) -> None:
    for party in nodes.coordinators:
        assert nodes.wait(party, job, "cancelled")["reason"] == reason
    assert all(not runner.started for runner in nodes.runners.values())


def test_a_proposal_still_lacking_a_vote_past_the_proposers_limit_is_cancelled_everywhere(tmp_path):
    """The guest's operator never answers and its own limit is far off (or its node is gone for good): the
    proposer stops waiting at its own limit and tells every party."""
    nodes = local_nodes(federation(tmp_path, guest={"answer_within_hours": 1000}, host={"answer_within_hours": 1}))
    try:
        host, job = nodes.coordinators["host"], nodes.coordinators["host"].submit(proposal())
        created = nodes.wait("guest", job, "pending")["created"]
        deadline = time.monotonic() + 10
        while set(host.store.votes(job)) != {"host", "arbiter"}:  # its own vote and the arbiter's are in
            assert time.monotonic() < deadline, host.store.votes(job)
            time.sleep(0.02)
        host.expire_unanswered(now=created + 3600 + 1)
        assert_cancelled_everywhere(nodes, job, "host: expired: no answer from guest within 1 h (answer_within_hours)")
    finally:
        nodes.stop()


def test_a_member_that_accepted_stops_waiting_for_the_start_at_its_own_limit(tmp_path):
    """The arbiter accepted at once; the start never comes (here the guest is silent and the proposer's limit
    far off; its node may as well be gone for good). Before, the arbiter's job stayed accepted for ever."""
    nodes = local_nodes(federation(tmp_path, host={"answer_within_hours": 1000}, arbiter={"answer_within_hours": 1}))
    try:
        arbiter, job = nodes.coordinators["arbiter"], nodes.coordinators["host"].submit(proposal())
        created = nodes.wait("arbiter", job, "accepted")["created"]
        nodes.wait("guest", job, "pending")
        arbiter.expire_unanswered(now=created + 3600 - 1)
        assert nodes.status("arbiter", job)["status"] == "accepted"
        arbiter.expire_unanswered(now=created + 3600 + 1)
        assert_cancelled_everywhere(nodes, job, "arbiter: expired: host (the proposer) did not start it within 1 h "
                                                "(answer_within_hours)")
    finally:
        nodes.stop()


def test_a_running_node_expires_unanswered_proposals_by_itself(tmp_path):
    """Before, a proposal nobody approved waited for ever at every party: its proposer had no answer."""
    configs = federation(tmp_path, guest={"answer_within_hours": 0.0005})  # 1.8 s
    with ExitStack() as stack:
        coordinators = {party: stack.enter_context(running_node(load_node_config(path)))
                        for party, path in configs.items()}
        job = coordinators["host"].submit(proposal())
        deadline = time.monotonic() + 20
        while coordinators["host"].store.job(job)["status"] != "refused":
            assert time.monotonic() < deadline, coordinators["host"].store.job(job)
            time.sleep(0.1)
        assert "did not answer within 0.0005 h" in coordinators["host"].store.job(job)["reason"]


@pytest.mark.parametrize("failed_here_first", [True, False])
def test_a_peers_failure_notice_does_not_hide_why_this_side_failed_first(tmp_path, failed_here_first):
    """The guest whose arbiter died failed first, and its abort made the host fail; the host's node told the
    guest's, whose job then read "host: its side of the job failed" instead of the arbiter's silence."""
    nodes = local_nodes(federation(tmp_path))
    try:
        job = nodes.coordinators["host"].submit(proposal())
        nodes.wait("guest", job, "pending")
        nodes.coordinators["guest"].approve(job)
        for party in ("guest", "host"):
            nodes.wait(party, job, "running")
        own = "step train: no answer to pings for 60 s: its process, node or machine stopped (peer='arbiter')"
        if failed_here_first:
            nodes.runners["guest"].failures[job] = own
        nodes.coordinators["host"].job_done(job, "failed", "step train: peer aborted the job: guest: ...")
        told = "host: its side of the job failed; the details are in its own log"
        assert nodes.wait("guest", job, "failed")["reason"] == (own if failed_here_first else told)
    finally:
        nodes.stop()


def test_a_node_takes_its_jobs_ports_from_its_range_and_refuses_when_every_one_is_held(tmp_path):
    """A bank's firewall opens a few ports, not every one: with job_ports, each job agreed or running holds one
    of them, and a proposal finding none free is refused saying so (nothing binds before the job starts)."""
    nodes = local_nodes(federation(tmp_path))
    arbiter = nodes.coordinators["arbiter"]
    ports = free_port_range(2)
    arbiter.runner = ProcessRunner("arbiter", arbiter.config.store, arbiter.config.keys, "127.0.0.1",
                                   on_done=lambda *done: None, ports=ports)
    try:
        jobs = [nodes.coordinators["host"].submit(proposal()) for _ in range(3)]
        for job in jobs:
            nodes.wait("guest", job, "pending", "refused")  # the guest waits for its operator
        chosen = [_own_vote(arbiter, job)["address"] for job in jobs[:2]]
        assert sorted(chosen) == [f"127.0.0.1:{port}" for port in ports]
        refused = nodes.wait("host", jobs[2], "refused")
        assert refused["reason"].startswith(f"arbiter refuses: ports: every port of job_ports {ports.start}-"
                                            f"{ports.stop - 1} is held"), refused["reason"]
        nodes.coordinators["guest"].refuse(jobs[0], "not now")  # its port is free again
        nodes.wait("arbiter", jobs[0], "refused")
        again = nodes.coordinators["host"].submit(proposal())
        assert _own_vote(arbiter, again)["address"] == chosen[0]
    finally:
        nodes.stop()


def _own_vote(node, job: str) -> dict:
    """``node``'s vote on ``job``, once it has voted: it votes in its own thread, so the guest may have the
    proposal first (and its status says accepted a moment before its vote is stored)."""
    deadline = time.monotonic() + 10
    while node.me not in node.store.votes(job):
        assert time.monotonic() < deadline, f"{node.me} never voted on {job}"
        time.sleep(0.02)
    return node.store.votes(job)[node.me]


def test_two_nodes_choosing_one_job_address_fail_the_job_at_the_proposer_saying_why(tmp_path):
    """Nodes on one machine given the same job_ports both took its first port: each party's job then failed,
    the guest's board saying only "arbiter: its side of the job failed"."""
    nodes = local_nodes(federation(tmp_path))
    ports = free_port_range(2)
    for party in ("guest", "arbiter"):
        coordinator = nodes.coordinators[party]
        coordinator.runner = ProcessRunner(party, coordinator.config.store, coordinator.config.keys, "127.0.0.1",
                                           on_done=lambda *done: None, ports=ports)
    try:
        job = nodes.coordinators["host"].submit(proposal())
        nodes.wait("guest", job, "pending")
        nodes.coordinators["guest"].approve(job)
        failed = nodes.wait("host", job, "failed")
        assert failed["reason"] == (f"guest and arbiter chose the same job address 127.0.0.1:{ports.start}: nodes on "
                                    "one machine need job_ports ranges of their own")
        for party in ("guest", "arbiter"):
            assert nodes.wait(party, job, "failed")["reason"] == f"host: {failed['reason']}"
        assert not nodes.runners["host"].started
    finally:
        nodes.stop()


@pytest.mark.parametrize("ports", ["9100-9000", "80-90", "9100-70000", "9100"])
def test_job_ports_outside_1024_65535_or_misspelt_stop_the_node_at_load(tmp_path, ports):
    configs = federation(tmp_path)
    configs["host"].write_text(configs["host"].read_text() + f"job_ports: '{ports}'\n")
    with pytest.raises(ConfigError, match="job_ports"):
        load_node_config(configs["host"])


@pytest.mark.parametrize("model, train", [
    ("hetero_nn", {"epochs": 1, "key_bits": 1024}),
    ("hetero_ftl", {"epochs": 1, "key_bits": 1024}),
])
def test_a_model_that_gives_the_hosts_the_labels_needs_the_guests_consent(tmp_path, model, train):
    """hetero_nn's and hetero_ftl's hosts learn the guest's labels from their gradients (benchmarks/
    label_leakage.py): the guest's node refuses them unless its policy allows labels_to_hosts; a host's
    node, whose labels are not at stake, does not ask it (it asks its own: below)."""
    body = proposal()
    body["parties"].pop("arbiter")
    body["steps"] = [{"intersect": {"min_shared_rows": 100, **({"keep_all_rows": True} if model == "hetero_ftl"
                                                                 else {})}}, {"train": {"model": model, **train}}]
    models = {"models": [model]}
    strict = federation(tmp_path / "strict", guest=models, host=models)
    with pytest.raises(Refusal, match=rf"allow_weakening: the job uses labels_to_hosts \({model}: .*labels") as refused:
        reviewed(strict["guest"], body)
    assert refused.value.rule == "allow_weakening"
    host_consents = {**models, "allow_weakening": ["representations_to_guest"]}
    reviewed(federation(tmp_path / "host", guest=models, host=host_consents)["host"], body, proposer="guest")
    consenting = federation(tmp_path / "consenting", guest={**models, "allow_weakening": ["labels_to_hosts"]})
    reviewed(consenting["guest"], body)


@pytest.mark.parametrize("model, keep_all_rows, how", [
    ("hetero_ftl", True, "the guest's weight gradients.*representation"),
    ("hetero_nn", False, "the guest gets each row's interactive-layer output"),
])
def test_a_model_that_gives_the_guest_a_summary_of_the_hosts_columns_needs_the_hosts_consent(
        tmp_path, model, keep_all_rows, how):
    """hetero_ftl's guest reads, over the epochs, the host's representation of each shared row off its own
    weight gradients; hetero_nn's gets each row's interactive-layer output (benchmarks/label_leakage.py
    ftl-guest, nn): the host's node refuses them unless its policy allows representations_to_guest, and the
    board's approvals page shows that weakening."""
    body = proposal()
    body["parties"].pop("arbiter")
    body["steps"] = [{"intersect": {"min_shared_rows": 100, **({"keep_all_rows": True} if keep_all_rows else {})}},
                     {"train": {"model": model, "epochs": 1, "key_bits": 1024}}]
    models = {"models": [model]}
    strict = federation(tmp_path / "strict", guest={**models, "allow_weakening": ["labels_to_hosts"]}, host=models)
    with pytest.raises(Refusal, match=rf"allow_weakening: the job uses representations_to_guest \({model}: "
                                      rf"{how}") as refused:
        reviewed(strict["host"], body, proposer="guest")
    assert refused.value.rule == "allow_weakening"
    consenting = federation(tmp_path / "consenting", host={**models, "allow_weakening": ["representations_to_guest"]})
    reviewed(consenting["host"], body, proposer="guest")
    config = load_node_config(consenting["host"])
    rows = policy_rows(config, parse_proposal(body, job_id="0123456789abcdef", proposer="guest",
                                              members=set(config.members)))
    assert {"rule": "allow_weakening", "setting": "representations_to_guest", "asked": "representations_to_guest",
            "met": True} in rows
