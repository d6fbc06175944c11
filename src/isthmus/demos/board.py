"""`isthmus demo board --port P`: the guest's web board over three node processes, with something to show.

The host proposes PSI + vertical LR + evaluation + contributions, recorded on every party's ledger;
the guest approves, publishes the model and scores a few ids online. A second proposal is left
waiting for the guest's approval. The demo then prints the guest board's address and keeps the
nodes running until interrupted (Ctrl-C).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from rich.console import Console

from isthmus.demos.federation import PARTIES, proposal, wait_for
from isthmus.demos.folder import demo_folder
from isthmus.demos.vertical import make_vertical_data
from isthmus.errors import IsthmusError
from isthmus.jobs.local import write_job
from isthmus.node.client import NodeClient
from isthmus.node.local import api_url, make_local_federation, running_nodes
from isthmus.node.runner import job_folder
from isthmus.node.store import FINAL

ONLINE_REQUESTS = 20


def run_board_demo(out_dir: Path, port: int, *, console: Console | None = None, key_bits: int = 1024,
                   serve: Callable[[str], None] | None = None) -> dict:
    """``serve(url)`` is called while the nodes run (default: wait for Ctrl-C); the nodes stop when it returns."""
    console = console or Console()
    with demo_folder(out_dir, "isthmus demo board", console, job_line="job: demo-board") as folder:
        return _run(folder, port, console, key_bits, serve or _until_interrupted)


def board_proposal(key_bits: int) -> dict:
    """The federation demo's job, its contributions measured and the outcome recorded on every ledger."""
    job = proposal(key_bits, 100)
    return {**job, "job": "demo-board", "record": True, "steps": [*job["steps"], {"contribution": {"budget": 100}}]}


def _run(folder: Path, port: int, console: Console, key_bits: int, serve: Callable[[str], None]) -> dict:
    guest_csv, host_csv = make_vertical_data(folder / "data")
    policy = {"min_key_bits": key_bits, "min_intersection": 100, "models": ["hetero_lr"],
              "steps": ["intersect", "train", "evaluate", "contribution"]}
    configs = make_local_federation(folder / "nodes", {
        "guest": {"catalogue": {"customers": {"path": str(guest_csv), "id": "id", "label": "y"}},
                  "policy": {**policy, "approval": "manual"}, "api": {"listen": f"127.0.0.1:{port}"}},
        "host": {"catalogue": {"accounts": {"path": str(host_csv), "id": "id"}}, "policy": {**policy, "approval": "auto"}},
        "arbiter": {"policy": {**policy, "approval": "auto"}},
    })
    write_job(folder / "job.yaml", board_proposal(key_bits))
    with running_nodes(configs):
        clients = {party: NodeClient(api_url(configs[party])) for party in PARTIES}
        console.print("the host proposes PSI, vertical LR, evaluation and contributions, recorded on the ledgers")
        job_id = clients["host"].submit(board_proposal(key_bits))
        wait_for(clients["guest"], job_id, "pending")
        clients["guest"].approve(job_id)
        finished = {party: wait_for(clients[party], job_id, *FINAL, timeout=600) for party in PARTIES}
        failed = {party: job["reason"] for party, job in finished.items() if job["status"] != "finished"}
        if failed:
            raise IsthmusError(f"the demo's job failed: {failed}")
        console.print(f"job {job_id} finished at every node; the guest publishes it and scores {ONLINE_REQUESTS} ids")
        clients["guest"].publish(job_id, "credit-v1")
        ids = pd.read_csv(job_folder(configs["guest"].parent / "store", job_id) / "run" / "predictions.csv")["id"]
        for one in ids[:ONLINE_REQUESTS]:
            clients["guest"].predict("credit-v1", [str(one)])
        pending = clients["host"].submit(board_proposal(key_bits))
        wait_for(clients["guest"], pending, "pending")
        url = clients["guest"].url
        console.print(f"a second proposal waits for the guest's approval: {url}/approvals", markup=False)
        console.print(f"\nthe guest's board: {url}/jobs   (the finished job: {url}/jobs/{job_id})", markup=False)
        serve(url)
    return {"url": url, "job": job_id, "pending": pending}


def _until_interrupted(url: str) -> None:
    """Until Ctrl-C or SIGTERM: either way the nodes are then stopped, not left running."""
    Console().print("serving until Ctrl-C")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
