"""What a running node does by itself every minute, besides expiring proposals: removing old jobs' per-row
outputs (`clean_after_days`) and warning, once a day, of a certificate due for renewal."""

from __future__ import annotations

import dataclasses
import logging
import re
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_helpers import redate

from isthmus.node.service import _sweeping, _warn_of_certificate
from isthmus.transport.keyfiles import load_certificate
from tests.board_helpers import ended_job
from tests.node_helpers import federation, local_nodes


@pytest.fixture
def nodes(tmp_path):
    nodes = local_nodes(federation(tmp_path))
    yield nodes
    nodes.stop()


def sweep_once(coordinator) -> None:
    """The sweep's first round, which it makes at once."""
    with _sweeping(coordinator):
        time.sleep(0.3)


def test_a_node_with_clean_after_days_cleans_as_it_starts_sweeping(nodes, monkeypatch):
    job_id, run = ended_job(nodes)
    guest = nodes.coordinators["guest"]
    guest.job_done(job_id, "finished", None)
    options = guest.config.options.model_copy(update={"clean_after_days": 1e-6})  # 0.09 s
    monkeypatch.setattr(guest, "config", dataclasses.replace(guest.config, options=options))
    time.sleep(0.2)
    sweep_once(guest)
    assert not (run / "predictions.csv").exists() and guest.store.job(job_id)["cleaned"]


def test_a_running_node_warns_of_its_certificate_once_a_day(nodes, caplog, monkeypatch):
    """It said so only when it started: a node running for months went past its certificate's end without a
    word in its log, and then every peer refused it."""
    guest = nodes.coordinators["guest"]
    keys = guest.config.keys

    def presenting(starts: float, ends: float) -> None:
        redate(keys, "guest", starts_in_days=starts, ends_in_days=ends, signer=ec.generate_private_key(ec.SECP256R1()))
        guest.certificate = load_certificate(keys / "guest" / "cert.pem", "presented")

    def warned(warned_on: list[str]) -> list[str]:
        caplog.clear()
        _warn_of_certificate(guest, warned_on)
        return [record.getMessage() for record in caplog.records]

    with caplog.at_level(logging.WARNING, logger="isthmus.node.service"):
        sweep_once(guest)
        assert not caplog.records  # a year left
        presenting(-350, 12.5)
        policy = guest.config.policy.model_copy(update={"answer_within_hours": 1e-4})  # a sweep every 0.09 s
        monkeypatch.setattr(guest, "config", dataclasses.replace(
            guest.config, options=guest.config.options.model_copy(update={"policy": policy})))
        with _sweeping(guest):
            time.sleep(0.5)
        assert len(caplog.records) == 1, caplog.records  # once a day, not at every sweep
        assert re.fullmatch(r"node guest: its certificate ends on 20\d\d-\d\d-\d\d \(12 days left\); the CA operator "
                            r"renews it .*--renew.*, then restart it", caplog.records[0].getMessage())

        redate(keys, "guest", starts_in_days=-1, ends_in_days=400, signer=ec.generate_private_key(ec.SECP256R1()))
        assert warned([])[0].endswith("(12 days left); restart it to present the renewed one already installed")
        presenting(-400, -2)
        assert re.fullmatch(r"node guest: its certificate expired on 20\d\d-\d\d-\d\d: every peer refuses this node; "
                            r"the CA operator renews it .*, then restart it", warned([])[0])
        assert caplog.records[0].levelno == logging.ERROR
