"""Hostile proposals and node messages: a non-member, a path instead of an alias, an oversize body, a forged
vote or start, a flood of proposals, an API without its token. Each is refused with the rule it broke,
and nothing runs."""

from __future__ import annotations

import yaml
import pytest
from fastapi.testclient import TestClient

from isthmus.errors import PeerError, PeerRefusedError, ProtocolError
from isthmus.node.api import MAX_BODY_BYTES, create_app
from isthmus.node.config import load_node_config
from isthmus.node.consent import sign_consent
from isthmus.node.local import make_local_federation
from isthmus.node.peers import CONTROL_JOB, TAG
from isthmus.node.policy import Refusal, review
from isthmus.node.proposal import MAX_PROPOSAL_BYTES, ProposalError, parse_proposal
from isthmus.node.service import running_node
from isthmus.transport.certs import tls_files_for
from isthmus.transport.grpc_transport import GrpcNode
from isthmus.transport.keyfiles import load_signing_key
from tests.node_helpers import federation, local_nodes, proposal

MEMBERS = {"guest", "host", "arbiter"}


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    return federation(tmp_path_factory.mktemp("fed"))


def with_guest_data(data) -> dict:
    body = proposal()
    body["parties"]["guest"]["data"] = data
    return body


@pytest.mark.parametrize("data", ["/srv/bank/customers.csv", "../customers", "customers.csv",
                                  {"path": "customers.csv", "id": "id"}])
def test_a_path_instead_of_an_alias_is_refused(data):
    with pytest.raises(ProposalError, match="never by path") as refused:
        parse_proposal(with_guest_data(data), job_id="0123456789abcdef", proposer="host", members=MEMBERS)
    assert refused.value.rule == "alias"


def test_a_party_or_proposer_outside_the_federation_is_refused():
    body = proposal()
    body["parties"]["mallory"] = {"role": "host", "data": "accounts"}
    with pytest.raises(ProposalError, match="'mallory' is not a member"):
        parse_proposal(body, job_id="0123456789abcdef", proposer="host", members=MEMBERS)
    with pytest.raises(ProposalError, match="proposer 'mallory' is not a member"):
        parse_proposal(proposal(), job_id="0123456789abcdef", proposer="mallory", members=MEMBERS)


def test_an_oversize_proposal_is_refused(configs):
    body = proposal(note="x" * MAX_PROPOSAL_BYTES)
    with pytest.raises(ProposalError, match="bytes, more than") as refused:
        parse_proposal(body, job_id="0123456789abcdef", proposer="host", members=MEMBERS)
    assert refused.value.rule == "size"


def test_the_api_refuses_oversize_bodies_paths_and_requests_without_its_token(configs):
    nodes = local_nodes(configs)
    try:
        listen = nodes.coordinators["host"].config.options.api.listen
        api = TestClient(create_app(nodes.coordinators["host"]), base_url=f"http://{listen}")
        response = api.post("/v1/jobs", content=b"{" + b" " * MAX_BODY_BYTES + b"}",
                            headers={"content-type": "application/json"})
        assert response.status_code == 413
        response = api.post("/v1/jobs", json={"proposal": with_guest_data("/srv/bank/customers.csv")})
        assert response.status_code == 409 and "never by path" in response.json()["detail"]
        assert nodes.coordinators["host"].store.jobs() == []
        assert TestClient(create_app(nodes.coordinators["host"])).get("/v1/jobs").status_code == 403  # rebound name
        assert api.post("/v1/jobs/0123456789abcdef/approve", headers={"origin": "https://evil.example"}).status_code \
            == 403  # a web page's blind form post
        assert api.get("/v1/jobs", headers={"sec-fetch-site": "cross-site"}).status_code == 403
        guarded = TestClient(create_app(nodes.coordinators["host"], token="s3cret-token-0123456789"))
        assert guarded.get("/v1/jobs").status_code == 401
        assert guarded.get("/v1/jobs", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert guarded.get("/v1/jobs", headers={"authorization": "Bearer s3cret-token-0123456789"}).status_code == 200
    finally:
        nodes.stop()


def test_a_path_sent_between_nodes_is_refused_by_the_receiver(configs):
    nodes = local_nodes(configs)
    try:
        sent = []
        guest = nodes.coordinators["guest"]
        guest.send = lambda peer, message: sent.append((peer, message))
        guest.handle("host", {"kind": "propose", "job": "00000000000000aa",
                              "proposal": with_guest_data("/srv/bank/customers.csv")})
        assert sent[0][0] == "host" and sent[0][1]["decision"] == "refuse"
        assert "alias" in sent[0][1]["reason"] and guest.store.job("00000000000000aa") is None
    finally:
        nodes.stop()


def test_forged_votes_and_starts_are_refused_and_nothing_runs(configs):
    nodes = local_nodes(configs)
    try:
        host, arbiter = nodes.coordinators["host"], nodes.coordinators["arbiter"]
        job = host.submit(proposal())
        nodes.wait("arbiter", job, "accepted")
        with pytest.raises(ProtocolError, match="not the sender's"):  # the guest's consent, forged by the arbiter
            host.handle("guest", {"kind": "vote", "job": job, "decision": "accept", "signature": b"\0" * 64,
                                  "address": "127.0.0.1:9"})
        forged = {"kind": "start", "job": job, "addresses": {p: "127.0.0.1:9" for p in MEMBERS},
                  "signatures": {p: b"\0" * 64 for p in MEMBERS}}
        with pytest.raises(ProtocolError, match="no valid consent signature"):
            arbiter.handle("host", forged)
        with pytest.raises(ProtocolError, match="only the job's proposer"):
            arbiter.handle("guest", forged)
        digest = arbiter.store.job(job)["digest"]
        signed = {**forged, "signatures": {p: sign_consent(load_signing_key(load_node_config(configs[p]).keys, p), digest)
                                           for p in MEMBERS}}
        with pytest.raises(ProtocolError, match="another address than the one it chose"):
            arbiter.handle("host", signed)
        assert all(not runner.started for runner in nodes.runners.values())
        assert nodes.status("guest", job)["status"] == "pending"
    finally:
        nodes.stop()


def test_a_consent_announcing_a_port_over_65535_is_refused(configs):
    """The pattern took 99999, which gRPC would have dialled, and listened on, as 34463."""
    nodes = local_nodes(configs)
    try:
        host = nodes.coordinators["host"]
        job = host.submit(proposal())
        nodes.wait("guest", job, "pending")
        key = load_signing_key(load_node_config(configs["guest"]).keys, "guest")
        vote = {"kind": "vote", "job": job, "decision": "accept", "address": "127.0.0.1:99999",
                "signature": sign_consent(key, host.store.job(job)["digest"])}
        with pytest.raises(ProtocolError, match="a port from 1 to 65535, got '127.0.0.1:99999'"):
            host.handle("guest", vote)
        assert "guest" not in host.store.votes(job)
    finally:
        nodes.stop()


def test_a_member_flooding_proposals_is_refused_past_the_hourly_limit_and_nothing_is_stored(tmp_path):
    nodes = local_nodes(federation(tmp_path, host={"max_proposals_per_hour": 2}))
    try:
        guest = nodes.coordinators["guest"]
        jobs = [guest.submit(proposal()) for _ in range(3)]
        for job in jobs[:2]:
            nodes.wait("host", job, "accepted")
        refused = nodes.wait("guest", jobs[2], "refused")
        assert "more than 2 proposals from guest in an hour" in refused["reason"]
        assert nodes.status("host", jobs[2]) is None and len(nodes.coordinators["host"].store.jobs()) == 2
        assert nodes.wait("arbiter", jobs[2], "refused")["reason"] == refused["reason"]  # told by the proposer
    finally:
        nodes.stop()


def test_a_certificate_outside_the_federation_cannot_reach_a_node(tmp_path):
    """mallory has a certificate from the federation's CA but is not a member; eve's is from another CA."""
    configs = make_local_federation(tmp_path, {party: {} for party in (*MEMBERS, "mallory")})
    for party in MEMBERS:  # the members' federation file never listed mallory
        federation_yaml = configs[party].parent / "federation.yaml"
        members = yaml.safe_load(federation_yaml.read_text())["members"]
        federation_yaml.write_text(yaml.safe_dump({"members": {p: a for p, a in members.items() if p != "mallory"}}))
    eve = federation(tmp_path / "other")["host"].parent / "keys"
    config = load_node_config(configs["guest"])
    with running_node(config):
        for sender, keys, refusal in (("mallory", configs["mallory"].parent / "keys", PeerRefusedError),
                                      ("host", eve, PeerError)):
            impostor = GrpcNode(sender, "127.0.0.1:0", {"guest": config.members["guest"]},
                                tls_files_for(keys, sender), connect_timeout=2)
            impostor.start()
            try:
                with pytest.raises(refusal):
                    impostor.channel(CONTROL_JOB).send("guest", TAG, {"kind": "propose", "job": "00000000000000bb",
                                                                      "proposal": proposal()})
            finally:
                impostor.stop()
        assert running_store_jobs(config) == []


def running_store_jobs(config) -> list:
    from isthmus.node.store import Store

    return Store(config.store / "node.sqlite").jobs()


def test_the_policy_refuses_a_proposer_it_does_not_list(tmp_path):
    configs = federation(tmp_path, guest={"proposers": ["arbiter"]})
    config = load_node_config(configs["guest"])
    with pytest.raises(Refusal, match="proposers: 'host' may not propose"):
        review(config, parse_proposal(proposal(), job_id="0123456789abcdef", proposer="host", members=MEMBERS))
    assert yaml.safe_load(configs["guest"].read_text())["policy"]["proposers"] == ["arbiter"]


def test_an_abort_notice_on_the_nodes_job_ends_nothing(configs):
    nodes = local_nodes(configs)
    try:
        nodes.hub.channel("arbiter", CONTROL_JOB).abort("mallory-style abort of the node messages")
        job = nodes.coordinators["host"].submit(proposal())
        nodes.wait("guest", job, "pending")
        nodes.coordinators["guest"].approve(job)
        nodes.wait("host", job, "running")
    finally:
        nodes.stop()
