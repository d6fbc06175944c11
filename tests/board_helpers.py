"""The board over in-process nodes: a guest's app under TestClient, `isthmus job` against it, and a run folder as a
finished job leaves it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from isthmus.cli_node import job_app
from isthmus.node.api import create_app
from isthmus.node.coordinator import Coordinator
from isthmus.node.runner import job_folder
from isthmus.node.serving import Serving
from tests.node_helpers import proposal

CSRF = 'name="csrf" value="'


def board(coordinator: Coordinator, token: str | None = None, serving: Serving | None = None) -> TestClient:
    """The node's app as a browser on its loopback address would reach it."""
    listen = coordinator.config.options.api.listen
    return TestClient(create_app(coordinator, token, serving), base_url=f"http://{listen}", follow_redirects=False)


def job_cli(nodes, party: str, monkeypatch) -> Callable[..., Result]:
    """`isthmus job ARGS...` run against ``party``'s node API (in process): its result."""
    monkeypatch.setattr("isthmus.node.client.httpx.Client",
                        lambda base_url, headers, timeout: board(nodes.coordinators[party]))
    return lambda *args: CliRunner().invoke(job_app, [*args, "--node", "http://127.0.0.1:1"])


def csrf_of(html: str, index: int = 0) -> str:
    """The CSRF token of the ``index``-th form on a page."""
    return html.split(CSRF)[index + 1].split('"')[0]


def write_run(coordinator: Coordinator, job_id: str, *, seed: int = 0) -> Path:
    """A finished guest run: step events, an egress audit log, metrics, predictions and the model part."""
    run = job_folder(coordinator.config.store, job_id) / "run"
    run.mkdir(parents=True, exist_ok=True)
    t = 1_000_000.0
    events = [{"step": "intersect", "status": "running"}, {"step": "intersect", "shared_rows": 431},
              {"step": "intersect", "status": "done"}, {"step": "train", "status": "running"},
              {"step": "train", "epoch": 1, "epochs": 2, "loss": 0.5}, {"step": "train", "epoch": 2, "epochs": 2},
              {"step": "train", "status": "done"}, {"step": "evaluate", "status": "running"},
              {"step": "evaluate", "status": "done"}]
    (run / "events.jsonl").write_text("".join(json.dumps({"time": t + i, "party": "guest", **e}) + "\n"
                                              for i, e in enumerate(events)))
    audit = [("send", "host", "0-intersect/psi/ecdh/guest-points", 1000), ("recv", "host", "0-intersect/psi/reply", 7),
             ("send", "host", "1-train/hetero-linear/residual", 5000), ("send", "arbiter", "1-train/hetero-linear/"
                                                                                     "masked", 300)]
    (run / "audit.jsonl").write_text("".join(json.dumps(
        {"time": t + i, "party": "guest", "direction": d, "job": "x", "peer": p, "tag": tag, "bytes": n,
         "sha256": "ab" * 32}) + "\n" for i, (d, p, tag, n) in enumerate(audit)))
    (run / "metrics.json").write_text(json.dumps({"task": "binary", "metrics": {
        "auc": 0.9, "ks": 0.7, "gain": [0.5, 1.0], "lift": [2.0, 1.0]}}))
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, 100)
    pd.DataFrame({"id": range(100), "label": label, "score": label * 0.5 + rng.random(100) * 0.6}).to_csv(
        run / "predictions.csv", index=False)
    (run / "model.json").write_text(json.dumps({"model": "hetero_lr", "features": ["income", "age"],
                                                "coef": [0.25, -1.5, 0.1]}))
    (run / "party.log").write_text("step train: epoch 2 of 2\n")
    return run


def pending_job(nodes) -> str:
    """A proposal from the host that waits for the guest's manual approval."""
    job_id = nodes.coordinators["host"].submit(proposal())
    nodes.wait("guest", job_id, "pending")
    return job_id


def ended_job(nodes) -> tuple[str, Path]:
    """A job the guest ran to its end: its run folder as a finished job leaves it, with payload copies."""
    job_id = pending_job(nodes)
    guest = nodes.coordinators["guest"]
    guest.approve(job_id)
    nodes.wait("guest", job_id, "running")
    run = write_run(guest, job_id)
    (run / "audit-payloads").mkdir()
    (run / "audit-payloads" / "0001-host.bin").write_bytes(b"\x00" * 64)
    return job_id, run
