"""A malicious aggregator over the real job path: five processes over mutual TLS, a horizontal job.

The aggregator is the job's own code in its own process with the secure-sum server bent: in round 1
it forwards no shares to client-1 (which would then mask with nobody), in round 2 it shows client-3
a mask key for client-2 that is its own (a man in the middle). The clients are unmodified `isthmus
run` processes. Each victim must abort that round with an error naming the aggregator, and nothing
it sends may depend on its update: its audit log shows only the error under that stage's tag.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from isthmus.demos.horizontal import make_horizontal_data
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.transport.certs import create_federation
from isthmus.transport.codec import decode

CLIENTS = [f"client-{n}" for n in range(1, 5)]
ABORTED = "secure sum aborted: aggregator 'aggregator'"

HOSTILE_AGGREGATOR = textwrap.dedent("""
    import sys
    from pathlib import Path

    from isthmus.crypto.secagg import generate_keypair
    from isthmus.horizontal.secure_sum import SecAggServer
    from isthmus.jobs.party_process import run_party_process
    from isthmus.jobs.spec import load_job

    honest_start, honest_route = SecAggServer.start, SecAggServer.route_shares

    def start(server, adverts, asked=()):  # round 2: client-3 is shown the aggregator's own key as client-2's
        requests = honest_start(server, adverts, asked)
        if server.label == "hfl/fit/2":
            requests["client-3"]["neighbours"]["client-2"]["s_pk"] = generate_keypair()[1]
        return requests

    def route_shares(server, replies):  # round 1: client-1 gets no shares, so it would mask with nobody
        requests = honest_route(server, replies)
        if server.label == "hfl/fit/1":
            requests["client-1"]["shares"] = {}
        return requests

    SecAggServer.start, SecAggServer.route_shares = start, route_shares
    job, certs, out = sys.argv[1:]
    run_party_process(load_job(job), "aggregator", certs_dir=Path(certs), run_dir=Path(out))
""")


def sent(run: Path, party: str, tag: str) -> list:
    """Every message ``party`` sent under the train step's ``tag``, decoded from its audit log's kept payloads."""
    entries = [json.loads(line) for line in (run / party / "audit.jsonl").read_text().splitlines()]
    digests = [e["sha256"][:16] for e in entries if e["direction"] == "send" and e["tag"] == f"0-train/{tag}"]
    return [decode(next((run / party / "audit-payloads").glob(f"*-{digest}.bin")).read_bytes()) for digest in digests]


@pytest.fixture(scope="module")
def attacked_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile-aggregator")
    files = make_horizontal_data(folder / "data", clients=len(CLIENTS))
    parties = {name: {"data": {"path": str(train), "id": "id", "label": "y", "test": str(test)}}
               for name, (train, test) in zip(CLIENTS, files)}
    parties["aggregator"] = {}
    job = write_job(folder / "job.yaml", {
        "job": "hostile-aggregator", "audit_payloads": True, "parties": loopback_parties(parties),
        "steps": [{"train": {"model": "homo_lr", "rounds": 2, "batch_size": 16, "round_timeout": 60}}]})
    certs, run = folder / "certs", folder / "run"
    create_federation(certs, sorted(parties))
    processes = [subprocess.Popen([sys.executable, "-m", "isthmus", "run", str(job), "--party", name, "--certs",
                                   str(certs), "--out", str(run)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for name in CLIENTS]
    processes.append(subprocess.Popen([sys.executable, "-c", HOSTILE_AGGREGATOR, str(job), str(certs),
                                       str(run / "aggregator")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))
    for process in processes:
        assert process.wait(timeout=240) == 0, process.stderr.read()
    return run


@pytest.mark.e2e
@pytest.mark.slow
def test_a_client_given_no_shares_aborts_the_round_and_sends_nothing_masked(attacked_run):
    replies = sent(attacked_run, "client-1", "hfl/masked_input/1")
    assert len(replies) == 1 and set(replies[0]) == {"error"}  # no masked vector ever left client-1
    assert ABORTED in replies[0]["error"] and "shares of 0 peers" in replies[0]["error"]
    assert ABORTED in (attacked_run / "client-1" / "party.log").read_text()
    history = json.loads((attacked_run / "aggregator" / "model.json").read_text())["history"]
    assert history[0]["clients"] == ["client-2", "client-3", "client-4"]
    assert ABORTED in history[0]["left_out"]["client-1"]


@pytest.mark.e2e
@pytest.mark.slow
def test_a_client_shown_a_substituted_key_aborts_before_sharing_its_secrets(attacked_run):
    replies = sent(attacked_run, "client-3", "hfl/share_keys/2")
    assert len(replies) == 1 and set(replies[0]) == {"error"}  # no shares of its secrets left client-3
    assert ABORTED in replies[0]["error"] and "'client-2' do not carry that client's signature" in replies[0]["error"]
    assert sent(attacked_run, "client-3", "hfl/masked_input/2") == []
    history = json.loads((attacked_run / "aggregator" / "model.json").read_text())["history"]
    assert history[1]["clients"] == ["client-1", "client-2", "client-4"]
    for client in CLIENTS:  # every client still ends with the model: the attacks cost only the rounds
        assert json.loads((attacked_run / client / "model.json").read_text())["coef"]
