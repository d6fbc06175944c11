"""Online serving through nodes: every node a process, mutual TLS on loopback, a guest and two hosts.

Synthetic vertical data, 10,000 shared ids: the guest holds the label and 5 columns, each host 5 more.
Through the nodes (the host proposes, every node accepts by policy): vertical LR (1 epoch, 1024-bit keys)
and vertical SecureBoost (10 trees of depth 3, 1024-bit keys; no arbiter), each published at the guest's node. Then
over the guest's HTTP API: one id per request, 1,000 requests after 50 of warm-up (p50, p99); a batch
of 10,000 ids (median of 5). Beside each latency, the CPU the node processes spent per request (all
nodes together, from /proc: what other work on the machine distorts least). Node overhead: the same LR job run with `isthmus launch` (the named peer),
timed in this run, beside the nodes' first job (submitted as soon as their APIs answer, so it shares the 2 cores
with every node's fork server still importing the party stack: on separate machines that happens in parallel)
and the same job again (what a federation's running nodes cost per job). Timings depend on machine load: other
work shares the cores.

    .venv/bin/python benchmarks/serving.py [--out runs/bench-serving] [--requests 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from isthmus.jobs.events import read_events
from isthmus.jobs.local import loopback_parties, write_job
from isthmus.node.client import NodeClient
from isthmus.node.local import api_url, make_local_federation, start_node, wait_ready
from isthmus.node.store import FINAL

ROWS, COLUMNS = 10_000, 5
HOSTS = ("host-1", "host-2")
PARTIES = ("guest", *HOSTS, "arbiter")
LR = {"model": "hetero_lr", "epochs": 1, "batch_size": 0, "learning_rate": 0.15, "key_bits": 1024, "precision": 6,
      "validation_fraction": 0.2}
SBT = {"model": "hetero_secureboost", "trees": 10, "max_depth": 3, "key_bits": 1024}


def make_data(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(3)
    ids = np.array([f"id-{i:06d}" for i in range(ROWS)])
    X = rng.normal(size=(ROWS, COLUMNS * 3))
    y = (X @ rng.normal(size=COLUMNS * 3) + rng.normal(size=ROWS) > 0).astype(int)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for k, party in enumerate(("guest", *HOSTS)):
        frame = pd.DataFrame(X[:, k * COLUMNS:(k + 1) * COLUMNS], columns=[f"{party}_x{j}" for j in range(COLUMNS)])
        if party == "guest":
            frame.insert(0, "y", y)
        frame.insert(0, "id", ids)
        paths[party] = folder / f"{party}.csv"
        frame.sample(frac=1, random_state=k).to_csv(paths[party], index=False)
    return paths


def proposal(name: str, train: dict, *, arbiter: bool = True) -> dict:
    parties = {"guest": {"role": "guest", "data": "table"}, **({"arbiter": {"role": "arbiter"}} if arbiter else {}),
               **{host: {"role": "host", "data": "table"} for host in HOSTS}}
    return {"job": name, "parties": parties,
            "steps": [{"intersect": {"min_shared_rows": 100}}, {"train": train}, {"evaluate": {}}]}


def run_job(clients: dict[str, NodeClient], body: dict) -> tuple[str, float]:
    clients = {party: client for party, client in clients.items() if party in body["parties"]}
    started = time.perf_counter()
    job_id = clients["host-1"].submit(body)
    while True:
        statuses = {}
        for party, client in clients.items():
            try:
                statuses[party] = client.job(job_id)
            except Exception:  # not arrived yet
                statuses[party] = {"status": "proposed"}
        if all(job["status"] in FINAL for job in statuses.values()):
            break
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    failed = {p: j.get("reason") for p, j in statuses.items() if j["status"] != "finished"}
    if failed:
        raise SystemExit(f"job {body['job']} failed: {failed}")
    return job_id, seconds


def cpu_seconds(processes: list[subprocess.Popen]) -> float:
    """User + system CPU of the processes so far (Linux /proc; fields 14 and 15 of stat, in clock ticks)."""
    ticks = 0
    for process in processes:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def latencies(client: NodeClient, model: str, ids: list[str], requests: int,
              nodes: list[subprocess.Popen]) -> tuple[list[float], float]:
    """Milliseconds per one-id request, and the nodes' CPU milliseconds per request."""
    rng = np.random.default_rng(0)
    for i in rng.choice(len(ids), 50):
        client.predict(model, [ids[i]])
    times, cpu = [], cpu_seconds(nodes)
    for i in rng.choice(len(ids), requests):
        started = time.perf_counter()
        client.predict(model, [ids[i]])
        times.append((time.perf_counter() - started) * 1000)
    return times, (cpu_seconds(nodes) - cpu) * 1000 / requests


def launch_time(out: Path, data: dict[str, Path]) -> float:
    """The named peer: the same LR job through `isthmus launch` (every party a process, no nodes), timed
    from the command's start to the last party's `finished` event (as the node run is timed to its last
    party's status)."""
    parties = {"guest": {"data": {"path": str(data["guest"]), "id": "id", "label": "y"}}, "arbiter": {},
               **{host: {"role": "host", "data": {"path": str(data[host]), "id": "id"}} for host in HOSTS}}
    job = write_job(out / "launch" / "job.yaml", {"job": "bench-launch", "record": False,
                                                    "parties": loopback_parties(parties),
                                                    "steps": proposal("x", LR)["steps"]})
    started = time.time()
    subprocess.run([sys.executable, "-m", "isthmus", "launch", str(job), "--out", str(out / "launch" / "run")],
                   check=True, capture_output=True)
    finished = [e["time"] for party in PARTIES for e in read_events(out / "launch" / "run" / party / "events.jsonl")
                if e.get("status") == "finished"]
    return max(finished) - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-serving"))
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-launch", action="store_true", help="skip the node-overhead comparison (serving only)")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    data = make_data(args.out / "data")
    # the run asks each host about some 100,000 ids within minutes, past a host's default hourly limit
    policy = {"min_key_bits": 1024, "min_intersection": 100, "approval": "auto", "max_prediction_ids_per_hour": 10**7}
    configs = make_local_federation(args.out / "nodes", {
        party: {"policy": policy, **({"catalogue": {"table": {"path": str(data[party]), "id": "id",
                                                              **({"label": "y"} if party == "guest" else {})}}}
                                     if party in data else {})} for party in PARTIES})
    processes = {party: start_node(configs[party], configs[party].parent / "node.log") for party in PARTIES}
    try:
        for party in PARTIES:
            wait_ready(api_url(configs[party]), processes[party], configs[party].parent / "node.log", timeout=120)
        clients = {party: NodeClient(api_url(configs[party]), timeout=120) for party in PARTIES}
        guest = clients["guest"]
        ids = pd.read_csv(data["guest"])["id"].astype(str).tolist()
        lr_job, lr_node_s = run_job(clients, proposal("bench-lr", LR))
        _, lr_node_again_s = run_job(clients, proposal("bench-lr-again", LR))
        guest.publish(lr_job, "lr")
        lr, lr_cpu = latencies(guest, "lr", ids, args.requests, list(processes.values()))
        batches = []
        for _ in range(5):
            started = time.perf_counter()
            guest.predict("lr", ids)
            batches.append(time.perf_counter() - started)
        sbt_job, sbt_node_s = run_job(clients, proposal("bench-sbt", SBT, arbiter=False))
        guest.publish(sbt_job, "sbt")
        sbt, sbt_cpu = latencies(guest, "sbt", ids, args.requests, list(processes.values()))
    finally:
        for process in processes.values():
            process.terminate()
            process.wait()
    print(f"serving measured (LR p50 {np.percentile(lr, 50):.2f} ms, SBT p50 {np.percentile(sbt, 50):.2f} ms, "
          f"10k batches {batches}); now the same LR job with isthmus launch", file=sys.stderr)
    lr_launch_s = None if args.no_launch else launch_time(args.out, data)
    result = {
        "lr_one_id_p50_ms": round(float(np.percentile(lr, 50)), 2),
        "lr_one_id_p99_ms": round(float(np.percentile(lr, 99)), 2),
        "lr_one_id_cpu_ms": round(lr_cpu, 2),
        "lr_batch_10k_s": round(statistics.median(batches), 3),
        "sbt_one_id_p50_ms": round(float(np.percentile(sbt, 50)), 2),
        "sbt_one_id_p99_ms": round(float(np.percentile(sbt, 99)), 2),
        "sbt_one_id_cpu_ms": round(sbt_cpu, 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "lr_job_through_nodes_s": round(lr_node_s, 1),
        "lr_job_launch_s": lr_launch_s and round(lr_launch_s, 1),
        "node_overhead_ratio": lr_launch_s and round(lr_node_s / lr_launch_s, 3),
        "lr_job_again_through_nodes_s": round(lr_node_again_s, 1),
        "node_overhead_ratio_again": lr_launch_s and round(lr_node_again_s / lr_launch_s, 3),
        "sbt_job_through_nodes_s": round(sbt_node_s, 1),
        "requests": args.requests,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"vertical LR, guest + 2 hosts: one id p50 {result['lr_one_id_p50_ms']} ms (target <= 10), "
          f"p99 {result['lr_one_id_p99_ms']} ms (<= 50); 10,000 ids {result['lr_batch_10k_s']} s (<= 1)")
    print(f"vertical SecureBoost 10 trees depth 3: one id p50 {result['sbt_one_id_p50_ms']} ms (target <= 20)")
    print(f"the LR job through nodes {result['lr_job_through_nodes_s']} s as their first job, "
          f"{result['lr_job_again_through_nodes_s']} s again", end="")
    print(f"; with isthmus launch {result['lr_job_launch_s']} s: ratio {result['node_overhead_ratio']} first, "
          f"{result['node_overhead_ratio_again']} again (target <= 1.10)" if lr_launch_s else "")


if __name__ == "__main__":
    main()
