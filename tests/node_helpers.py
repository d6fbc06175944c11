"""Nodes for tests: a three-party federation's folders, a proposal, and nodes wired over the in-process hub."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from isthmus.demos.vertical import make_vertical_data
from isthmus.node.config import load_node_config
from isthmus.node.coordinator import Coordinator
from isthmus.node.local import make_local_federation
from isthmus.node.peers import CONTROL_JOB, PeerLink
from isthmus.node.store import Store
from isthmus.transport.keyfiles import federation_file, load_pinned_keys, load_signing_key
from isthmus.transport.local import LocalHub
from isthmus.transport.ports import port_is_free

POLICY = {"min_key_bits": 1024, "min_intersection": 100, "models": ["hetero_lr"]}


def federation(root: Path, *, guest: dict | None = None, host: dict | None = None,
               arbiter: dict | None = None) -> dict[str, Path]:
    """guest (manual approval), host (auto) and arbiter (auto); extra policy settings per party."""
    guest_csv, host_csv = make_vertical_data(root / "data")
    return make_local_federation(root, {
        "guest": {"timeout": 5, "catalogue": {"customers": {"path": str(guest_csv), "id": "id", "label": "y"}},
                  "policy": {**POLICY, "approval": "manual", **(guest or {})}},
        "host": {"timeout": 5, "catalogue": {"accounts": {"path": str(host_csv), "id": "id"}},
                 "policy": {**POLICY, "approval": "auto", **(host or {})}},
        "arbiter": {"timeout": 5, "policy": {**POLICY, "approval": "auto", **(arbiter or {})}},
    })


def free_port_range(size: int, start: int = 23_000) -> range:
    """``size`` consecutive ports free on loopback now, for a node's ``job_ports``."""
    for first in range(start, start + 2000, size):
        if all(port_is_free("127.0.0.1", port) for port in range(first, first + size)):
            return range(first, first + size)
    raise AssertionError(f"no {size} free consecutive ports")


def proposal(*, key_bits: int = 1024, min_shared_rows: int = 100, epochs: int = 2, **job: object) -> dict:
    return {"job": "credit", **job,
            "parties": {"guest": {"role": "guest", "data": "customers"}, "host": {"role": "host", "data": "accounts"},
                        "arbiter": {"role": "arbiter"}},
            "steps": [{"intersect": {"min_shared_rows": min_shared_rows}},
                      {"train": {"model": "hetero_lr", "epochs": epochs, "batch_size": 0, "learning_rate": 0.5,
                                 "key_bits": key_bits, "precision": 6, "validation_fraction": 0.25}},
                      {"evaluate": {}}]}


@dataclass
class FakeRunner:
    port: int = 1  # each party's own: one address for two is an error (a clash, as two nodes on one range)
    started: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)  # job -> what its process recorded as its failure

    def address(self, held: set[int]) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, job_id: str, document: dict) -> None:
        self.started.append(job_id)

    def cancel(self, job_id: str) -> None:
        pass

    def failure(self, job_id: str) -> str | None:
        return self.failures.get(job_id)


@dataclass
class LocalNodes:
    coordinators: dict[str, Coordinator]
    runners: dict[str, FakeRunner]
    links: list[PeerLink]
    hub: LocalHub

    def status(self, party: str, job_id: str) -> dict | None:
        return self.coordinators[party].store.job(job_id)

    def wait(self, party: str, job_id: str, *statuses: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.status(party, job_id)
            if job is not None and job["status"] in statuses:
                return job
            time.sleep(0.02)
        raise AssertionError(f"{party}: job {job_id} is {self.status(party, job_id)}, not {statuses}")

    def keys(self) -> dict[str, Path]:
        """Each node's key folder."""
        return {party: coordinator.config.keys for party, coordinator in self.coordinators.items()}

    def stop(self) -> None:
        for link in self.links:
            link.stop()


def local_nodes(configs: dict[str, Path]) -> LocalNodes:
    """Every node's coordinator, talking through the in-process hub; runs are only recorded."""
    hub = LocalHub(configs)
    coordinators, runners, links = {}, {}, []
    for port, (party, path) in enumerate(configs.items(), start=1):
        config = load_node_config(path)
        runners[party] = FakeRunner(port)
        coordinators[party] = Coordinator(config, Store(config.store / "node.sqlite"),
                                          load_signing_key(config.keys, party),
                                          load_pinned_keys(federation_file(config.keys)), runners[party])
        link = PeerLink(hub.channel(party, CONTROL_JOB), list(configs), coordinators[party].handle)
        coordinators[party].send = link.send
        link.start()
        links.append(link)
    return LocalNodes(coordinators, runners, links, hub)
