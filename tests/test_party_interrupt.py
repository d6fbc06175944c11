"""A party stopped (Ctrl-C, SIGTERM) as its node starts: its port listens before ``start()`` returns, so a peer
may already count on it. A stop landing there told nobody, and the peer waited out its whole connect timeout
(seen under load: 120 s in test_e2e_keys' SIGTERM test)."""

from __future__ import annotations

import pytest

from isthmus.demos.vertical import make_vertical_data
from isthmus.errors import PeerAbortedError
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.jobs.party_process import run_party_process
from isthmus.jobs.runner import abort_reason
from isthmus.jobs.spec import load_job
from isthmus.transport.certs import create_federation, tls_files_for
from isthmus.transport.grpc_transport import GrpcNode


def test_a_stop_as_the_node_starts_still_tells_the_peers_listening(tmp_path, monkeypatch):
    certs = tmp_path / "certs"
    create_federation(certs, ["guest", "host", "arbiter"])
    guest_csv, host_csv = make_vertical_data(tmp_path / "data")
    spec = load_job(write_job(tmp_path / "job.yaml", {
        "job": "stopped-at-start", "connect_timeout": 60,
        "parties": loopback_parties({"guest": {"data": {"path": str(guest_csv), "id": "id", "label": "y"}},
                                     "host": {"data": {"path": str(host_csv), "id": "id"}}, "arbiter": {}}),
        "steps": [{"intersect": {}}, {"train": {"model": "hetero_lr", "epochs": 1}}]}))
    host = GrpcNode("host", spec.parties["host"].address, {n: p.address for n, p in spec.parties.items()},
                    tls_files_for(certs, "host"))
    host.open_job(spec.name)
    host.start()  # the host is up and waiting; the arbiter never comes
    started = GrpcNode.start

    def start_then_stop(node: GrpcNode) -> None:
        started(node)
        raise KeyboardInterrupt  # the signal, as start() returns

    monkeypatch.setattr(GrpcNode, "start", start_then_stop)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_party_process(spec, "guest", certs_dir=certs, run_dir=tmp_path / "out" / "guest")
        with pytest.raises(PeerAbortedError, match="interrupted at guest"):
            host.mailbox.raise_if_aborted(spec.name, "connect")
    finally:
        host.stop()


def test_a_party_stopped_by_a_peer_passes_the_peers_notice_on():
    """Not "failed at arbiter (PeerAbortedError)": the arbiter did not fail, and a peer that the one giving up
    could not tell must hear who did."""
    notice = "host: step connect failed at host (ComputeError; the details are in host's own log)"
    told = abort_reason("arbiter", "agreement", PeerAbortedError(notice, peer="host", tag="plan/agreement"))
    assert told == f"step agreement stopped at arbiter, passing on {notice}"
