"""hetero_nn: parity with PyTorch on pooled columns, and the price of the protected interactive layer.

    python benchmarks/hetero_nn.py                       # default_credit, 1024-bit keys
    python benchmarks/hetero_nn.py --speed-rows 30000 --key-bits 2048 --json

Speed: one epoch on ``--speed-rows`` rows of default_credit (guest + 1 host, bottom 32 units,
interactive layer 8 units), guest and host as threads over the in-process channel (the same codec
and messages as gRPC, without the network): protected (Paillier) beside plain split learning and
beside the centralised network (PyTorch, the same layers on the pooled columns). The cost is linear
in rows, so the seconds are also given per 30,000 rows (the whole data set). Target: protection at
most 20x plain split learning. CPU seconds (both parties' threads) sit beside the wall seconds, which
other work on a shared machine distorts; with ``ISTHMUS_CRYPTO_WORKERS=1`` they cover all the work.

Parity: real jobs (guest and host processes over mutual TLS, ECDH PSI, evaluate, ``isthmus parity``)
on ``--parity-rows`` shared rows, protected and plain; the AUC of the held-out rows beside the same
network trained in PyTorch on the pooled columns. Target: AUC delta <= 0.01.

Data: ../shared/datasets/fate/default_credit_hetero_{guest,host}.csv (see its README).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fate"
FULL_ROWS = 30_000
LAYERS = {"bottom": {"guest": [32], "host": [32]}, "interactive_units": 8, "top": [8, "relu"]}
TRAIN = {"model": "hetero_nn", **LAYERS, "batch_size": 256, "learning_rate": 0.005,
         "interactive_learning_rate": 0.05, "validation_fraction": 0.2}


def tables(rows: int):
    from isthmus.data.table import PartyTable

    guest = pd.read_csv(DATASETS / "default_credit_hetero_guest.csv").iloc[:rows]
    host = pd.read_csv(DATASETS / "default_credit_hetero_host.csv").set_index("id").loc[guest["id"]].reset_index()
    ids = guest["id"].astype(str).to_numpy()
    g_cols, h_cols = [c for c in guest if c not in ("id", "y")], [c for c in host if c != "id"]
    return {"guest": PartyTable("guest", ids, guest[g_cols].to_numpy(float), g_cols, guest["y"].to_numpy(float)),
            "host": PartyTable("host", ids, host[h_cols].to_numpy(float), h_cols, None)}


def federated_epoch(data, options) -> tuple[float, float]:
    """Seconds of one training epoch, guest and host as threads (the guest's own clock), and the CPU
    seconds of this process over the whole fit (both parties; worker processes not included)."""
    import threading

    from isthmus.algorithms.base import Party, Roster
    from isthmus.algorithms.registry import algorithm
    from isthmus.transport.local import LocalHub

    hub, roster, parts = LocalHub(list(data)), Roster({"guest": "guest", "host": "host"}), {}

    def fit(name):
        parts[name] = algorithm("hetero_nn").fit(Party(name, roster, hub.channel(name), data[name], Path(".")), options)

    threads = [threading.Thread(target=fit, args=(name,)) for name in data]
    cpu = time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return parts["guest"].trained.history[0]["seconds"], time.process_time() - cpu


def centralised_epoch(data, options) -> float:
    from isthmus.algorithms.base import Roster
    from isthmus.algorithms.hetero_nn.reference import pooled_reference

    X = np.hstack([data["guest"].features, data["host"].features])
    owners = ["guest"] * data["guest"].features.shape[1] + ["host"] * data["host"].features.shape[1]
    started = time.perf_counter()
    pooled_reference(options, "binary", X, data["guest"].label, X[:1], owners,
                     Roster({"guest": "guest", "host": "host"}))
    return time.perf_counter() - started


def speed(rows: int, key_bits: int) -> dict:
    from isthmus.algorithms.hetero_nn.options import NNOptions

    data = tables(rows)
    common = {k: v for k, v in TRAIN.items() if k not in ("model", "validation_fraction")}
    seconds, cpu = {}, {}
    for mode in ("paillier", "plain"):
        seconds[mode], cpu[mode] = federated_epoch(data, NNOptions(epochs=1, protection=mode, key_bits=key_bits,
                                                                   **common))
    started = time.process_time()
    seconds["centralised"] = centralised_epoch(data, NNOptions(epochs=1, **common))
    cpu["centralised"] = time.process_time() - started
    per_full = {mode: s * FULL_ROWS / rows for mode, s in seconds.items()}
    return {"rows": rows, "key_bits": key_bits, "seconds_per_epoch": seconds, "seconds_per_30k_rows": per_full,
            "cpu_seconds_per_epoch": cpu, "cpu_seconds_per_30k_rows": {m: c * FULL_ROWS / rows for m, c in cpu.items()},
            "protected_over_plain": seconds["paillier"] / seconds["plain"],
            "protected_over_plain_cpu": cpu["paillier"] / cpu["plain"],
            "protected_over_centralised": seconds["paillier"] / seconds["centralised"],
            "load_average": os.getloadavg()}


def parity(rows: int, epochs: int, key_bits: int, out: Path, modes: list[str]) -> list[dict]:
    from isthmus.jobs.local import loopback_parties, write_job
    from isthmus.jobs.parity import run_parity

    guest = pd.read_csv(DATASETS / "default_credit_hetero_guest.csv").iloc[:rows]
    host = pd.read_csv(DATASETS / "default_credit_hetero_host.csv")
    host = host[host["id"].isin(guest["id"])]
    out.mkdir(parents=True, exist_ok=True)
    guest.to_csv(out / "guest.csv", index=False)
    host.to_csv(out / "host.csv", index=False)
    records = []
    for mode in modes:
        train = {**TRAIN, "epochs": epochs, "protection": mode, "key_bits": key_bits}
        job = {"job": f"hetero-nn-parity-{mode}", "benchmark_only_plaintext": mode == "plain",
               "parties": loopback_parties({"guest": {"data": {"path": str(out / "guest.csv"), "id": "id", "label": "y"}},
                                            "host": {"data": {"path": str(out / "host.csv"), "id": "id"}}}),
               "steps": [{"intersect": {"method": "ecdh"}}, {"train": train}, {"evaluate": {}}]}
        report = run_parity(write_job(out / mode / "job.yaml", job), out / mode / "run")
        records.append({"protection": mode, **{k: report[k] for k in ("federated", "centralized", "delta", "seconds",
                                                                        "train_rows", "evaluation_rows")},
                        "meets_target": report["delta"] <= 0.01})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speed-rows", type=int, default=2048)
    parser.add_argument("--parity-rows", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--key-bits", type=int, default=1024)
    parser.add_argument("--skip-parity", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--modes", nargs="+", choices=("paillier", "plain"), default=["paillier", "plain"],
                        help="protection modes of the parity jobs")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args()
    if not (DATASETS / "default_credit_hetero_guest.csv").exists():
        sys.exit(f"default_credit is not at {DATASETS}")
    summary = {"benchmark": "hetero_nn"}
    if not args.skip_speed:
        summary["speed"] = speed(args.speed_rows, args.key_bits)
        if not args.json:
            print(json.dumps(summary["speed"], indent=1))
    if not args.skip_parity:
        with tempfile.TemporaryDirectory(prefix="isthmus-hetero-nn-") as folder:
            summary["parity"] = parity(args.parity_rows, args.epochs, args.key_bits, Path(folder), args.modes)
        if not args.json:
            print(json.dumps(summary["parity"], indent=1))
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
