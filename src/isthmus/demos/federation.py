"""`isthmus demo federation`: three nodes as processes, consent before anything runs.

The host (not the guest) proposes PSI + vertical LR naming table aliases; the arbiter's node accepts by
policy, the guest's operator approves by hand, and every node runs its own side. The guest publishes
the model and scores 100 ids online, beside the batch scores of the same model. A second proposal
asks for fewer shared rows than the guest's policy allows (the host's own allows it) and is refused by
the guest's node, its reason reaching the host.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from isthmus.demos.folder import demo_folder
from isthmus.demos.vertical import DEMO_TRAIN, make_vertical_data
from isthmus.errors import IsthmusError
from isthmus.jobs.local import write_job
from isthmus.node.client import NodeClient
from isthmus.node.local import api_url, make_local_federation, running_nodes
from isthmus.node.runner import job_folder
from isthmus.node.store import FINAL

PARTIES = ("arbiter", "guest", "host")


def run_federation_demo(out_dir: Path, *, console: Console | None = None, key_bits: int = 2048) -> dict:
    console = console or Console()
    with demo_folder(out_dir, "isthmus demo federation", console, job_line="job: demo-federation") as folder:
        return _run(folder, console, key_bits)


def proposal(key_bits: int, min_shared_rows: int) -> dict:
    return {"job": "demo-federation",
            "parties": {"guest": {"role": "guest", "data": "customers"}, "host": {"role": "host", "data": "accounts"},
                        "arbiter": {"role": "arbiter"}},
            "steps": [{"intersect": {"min_shared_rows": min_shared_rows}},
                      {"train": DEMO_TRAIN | {"key_bits": key_bits}}, {"evaluate": {}}]}


def _run(folder: Path, console: Console, key_bits: int) -> dict:
    guest_csv, host_csv = make_vertical_data(folder / "data")
    policy = {"min_key_bits": key_bits, "min_intersection": 100, "models": ["hetero_lr"]}
    configs = make_local_federation(folder / "nodes", {
        "guest": {"catalogue": {"customers": {"path": str(guest_csv), "id": "id", "label": "y"}},
                  "policy": {**policy, "approval": "manual"}},
        "host": {"catalogue": {"accounts": {"path": str(host_csv), "id": "id"}},
                 "policy": {**policy, "approval": "auto", "min_intersection": 10}},
        "arbiter": {"policy": {**policy, "approval": "auto"}},
    })
    job_path = write_job(folder / "job.yaml", proposal(key_bits, 100))
    with running_nodes(configs):
        clients = {}
        for party in PARTIES:
            clients[party] = NodeClient(api_url(configs[party]))
            console.print(f"node {party}: {clients[party].url} ({folder / 'nodes' / party / 'node.yaml'})", markup=False)

        console.print(f"\nthe host proposes {job_path} (aliases only): isthmus job submit --node {clients['host'].url}",
                      markup=False)
        job_id = clients["host"].submit(proposal(key_bits, 100))
        waiting = wait_for(clients["guest"], job_id, "pending")
        console.print(f"guest: job {job_id} is {waiting['status']} ({waiting['reason']})")
        console.print(f"the guest's operator approves: isthmus job approve {job_id} --node {clients['guest'].url}",
                      markup=False)
        clients["guest"].approve(job_id)
        finished = {party: wait_for(clients[party], job_id, *FINAL, timeout=600) for party in PARTIES}
        for party, job in finished.items():
            console.print(f"  {party:<8} {job['status']}")
        failed = {p: j["reason"] for p, j in finished.items() if j["status"] != "finished"}
        if failed:
            raise IsthmusError(f"the demo's job failed: {failed}")
        run = job_folder(configs["guest"].parent / "store", job_id) / "run"
        metrics = json.loads((run / "metrics.json").read_text())
        console.print(f"guest's model: AUC {metrics['metrics']['auc']:.4f} (in the guest's store)")

        console.print(f"\nthe guest publishes it: isthmus model publish {job_id} --name credit-v1 --node "
                      f"{clients['guest'].url}", markup=False)
        clients["guest"].publish(job_id, "credit-v1")
        batch = pd.read_csv(run / "predictions.csv").head(100)
        started = time.perf_counter()
        online = [clients["guest"].predict("credit-v1", [str(i)])[0] for i in batch["id"]]
        per_request_ms = (time.perf_counter() - started) * 10
        gap = float(np.max(np.abs(np.array(online) - batch["score"].to_numpy())))
        console.print(f"100 online predictions, one id each ({per_request_ms:.1f} ms per request), beside the batch "
                      f"scores of the same model: largest difference {gap:.1e}")
        if gap > 1e-9:
            raise IsthmusError(f"online and batch predictions differ by {gap:g}")

        console.print("\nthe host proposes the same job with min_shared_rows 10 (the guest's policy asks for 100)")
        refused_id = clients["host"].submit(proposal(key_bits, 10))
        refused = wait_for(clients["host"], refused_id, "refused")
        console.print(f"host: job {refused_id} refused: {refused['reason']}", markup=False)
        return {"job": job_id, "auc": metrics["metrics"]["auc"], "online_gap": gap, "refused": refused_id,
                "reason": refused["reason"]}


def wait_for(client: NodeClient, job_id: str, *statuses: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            job = client.job(job_id)
        except IsthmusError:  # not arrived yet
            job = None
        if job is not None and job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise IsthmusError(f"job {job_id} at {client.url} did not become {' or '.join(statuses)} within {timeout:g} s")
