"""Private cross-institution query: setup, one query, a 10,000-id batch and a 1% refresh.

Five institutions and an aggregator run as separate processes over mutual-TLS gRPC on loopback
(``isthmus.query.launch``). Named peers measured in the same run: a plaintext central database
(what the white paper says multi-lending detection does today: every lender uploads every
customer) answering the same batch, and the per-element cost of the three curve libraries an OPRF
could use. Targets (issue 7, with --full: 5 x 1,000,000 customers): one query <= 1 s, a 10,000-id
batch <= 60 s, setup <= 300 s, refresh of 1% of one table <= 30 s.

    python benchmarks/query.py            # 5 x 100,000 customers
    python benchmarks/query.py --full     # 5 x 1,000,000 customers
    python benchmarks/query.py --json     # one JSON object
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from isthmus.query.control import ask_service, control_call
from isthmus.query.launch import prepare_local_consortium
from isthmus.query.synthetic import generate_loans, truth, write_tables

INSTITUTIONS = [f"bank{i}" for i in range(1, 6)]
ASKER = "bank1"
TARGETS = {"query_seconds": 1.0, "batch_seconds": 60.0, "setup_seconds": 300.0, "refresh_seconds": 30.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="1,000,000 customers per institution")
    parser.add_argument("--customers", type=int, default=None, help="customers per institution (default 100,000)")
    parser.add_argument("--batch", type=int, default=10_000, help="ids in the batch query")
    parser.add_argument("--out", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    customers = args.customers or (1_000_000 if args.full else 100_000)
    say = (lambda *_: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory(prefix="isthmus-query-bench-") as scratch:
        result = run(args.out or Path(scratch), customers, args.batch, say)
    result["curves_us_per_element"] = curve_costs()
    if args.json:
        print(json.dumps(result))
    else:
        report(result)


def run(root: Path, customers: int, batch_size: int, say) -> dict:
    say(f"generating {len(INSTITUTIONS)} loans tables of {customers:,} customers ...")
    tables = generate_loans(INSTITUTIONS, customers, seed=1)
    paths = write_tables(tables, root / "tables")
    with prepare_local_consortium(root / "run", paths, consortium="bench-lenders") as consortium:
        say("starting 6 services and waiting for setup (OPRF over every active customer, publication) ...")
        started = time.perf_counter()
        consortium.start_all()
        consortium.wait_ready(timeout=3600)
        setup = time.perf_counter() - started
        setup_cpu = sum(cpu_seconds(process.pid) for process in consortium.processes.values())
        state = consortium.state_dir(ASKER)

        rng = np.random.default_rng(2)
        everyone = tables["bank2"]["customer_id"].to_numpy()
        warmup_started = time.perf_counter()
        ask_service(state, [everyone[0]])  # the asker's first query also generates its Paillier key
        warmup = time.perf_counter() - warmup_started
        single = []
        for customer in rng.choice(everyone, 10, replace=False):
            t0 = time.perf_counter()
            ask_service(state, [str(customer)])
            single.append(time.perf_counter() - t0)

        known = [str(c) for c in rng.choice(everyone, batch_size // 2, replace=False)]
        ids = known + [f"APPLICANT-{i}" for i in range(batch_size - len(known))]
        say(f"asking about a batch of {len(ids):,} ids ...")
        t0 = time.perf_counter()
        batch = ask_service(state, ids)
        batch_seconds = time.perf_counter() - t0
        expected = truth(tables, ASKER, ids)
        wrong = sum((a.institutions, a.exposure) != e for a, e in zip(batch.answers, expected))

        say("pooled plaintext database (the peer) answering the same batch ...")
        central_seconds = central_database(tables, ids)

        say("refreshing 1% of bank2's customers ...")
        changed = tables["bank2"].copy()
        rows = rng.choice(len(changed), len(changed) // 100, replace=False)
        changed.loc[changed.index[rows], "amount"] += 1.0
        staging = paths["bank2"].with_suffix(".tmp")
        changed.to_csv(staging, index=False)
        os.replace(staging, paths["bank2"])
        t0 = time.perf_counter()
        refreshed = control_call(consortium.state_dir("bank2"), "refresh")
        refresh_seconds = time.perf_counter() - t0
    return {
        "institutions": len(INSTITUTIONS),
        "customers_per_institution": customers,
        "setup_seconds": setup,
        "setup_cpu_seconds": setup_cpu,
        "first_query_seconds": warmup,
        "query_seconds": statistics.median(single),
        "query_seconds_max": max(single),
        "batch_ids": len(ids),
        "batch_seconds": batch_seconds,
        "batch_wrong_answers": wrong,
        "batch_complete": batch.complete,
        "central_database_batch_seconds": central_seconds,
        "batch_ratio_to_central_database": batch_seconds / central_seconds,
        "refresh_changed_customers": refreshed["changed"],
        "refresh_seconds": refresh_seconds,
        "targets": TARGETS,
        "cores": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux), to tell work from waiting for the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def central_database(tables: dict, ids: list[str]) -> float:
    """The non-private peer: one pooled table, looked up in one process (pooling not counted)."""
    pooled = {}
    for name, frame in tables.items():
        if name == ASKER:
            continue
        active = frame[frame["status"] == "active"]
        for customer, amount in active.groupby("customer_id")["amount"].sum().items():
            count, total = pooled.get(customer, (0, 0.0))
            pooled[customer] = (count + 1, total + amount)
    t0 = time.perf_counter()
    [pooled.get(i, (0, 0.0)) for i in ids]
    return max(time.perf_counter() - t0, 1e-6)


def curve_costs(count: int = 3000) -> dict:
    """Hash-to-group plus one scalar multiplication per element, for the OPRF candidates."""
    import nacl.bindings as nacl
    import rbcl
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    digests = [hashlib.sha512(str(i).encode()).digest() for i in range(count)]
    scalar = rbcl.crypto_core_ristretto255_scalar_random()
    ed_scalar = nacl.crypto_core_ed25519_scalar_reduce(hashlib.sha512(b"k").digest())
    x_key = X25519PrivateKey.generate()

    def ristretto(d):
        return rbcl.crypto_scalarmult_ristretto255(scalar, rbcl.crypto_core_ristretto255_from_hash(d))

    def ed25519(d):
        point = nacl.crypto_core_ed25519_add(nacl.crypto_core_ed25519_from_uniform(d[:32]), nacl.crypto_core_ed25519_from_uniform(d[32:]))
        return nacl.crypto_scalarmult_ed25519_noclamp(ed_scalar, point)

    def x25519(d):  # no hash onto the curve and no scalar inverse: a lower bound, not a usable OPRF
        return x_key.exchange(X25519PublicKey.from_public_bytes(d[:32]))

    costs = {}
    for name, operation in [("ristretto255_rbcl", ristretto), ("ed25519_pynacl", ed25519), ("x25519_cryptography", x25519)]:
        t0 = time.perf_counter()
        for d in digests:
            operation(d)
        costs[name] = (time.perf_counter() - t0) / count * 1e6
    return costs


def report(result: dict) -> None:
    targets = result["targets"]

    def verdict(key: str) -> str:
        return "ok" if result[key] <= targets[key] else "MISSED"

    print(f"\n{result['institutions']} institutions x {result['customers_per_institution']:,} customers, "
          f"{result['cores']} cores (other work on the machine depresses these numbers)")
    print(f"{'measure':<42}{'value':>12}  {'target':>8}")
    print(f"{'setup (start to all published)':<42}{result['setup_seconds']:>11.1f}s  {targets['setup_seconds']:>7.0f}s  {verdict('setup_seconds')}")
    print(f"{'  CPU time of the 6 services in setup':<42}{result['setup_cpu_seconds']:>11.1f}s"
          f"  (/{result['cores']} cores = {result['setup_cpu_seconds'] / result['cores']:.0f} s on an idle machine)")
    print(f"{'one query, median of 10':<42}{result['query_seconds']:>11.3f}s  {targets['query_seconds']:>7.0f}s  {verdict('query_seconds')}")
    print(f"{'one query, slowest of 10':<42}{result['query_seconds_max']:>11.3f}s")
    print(f"{'first query (with Paillier key generation)':<42}{result['first_query_seconds']:>11.3f}s")
    batch_label = f"batch of {result['batch_ids']:,} ids"
    print(f"{batch_label:<42}{result['batch_seconds']:>11.1f}s  {targets['batch_seconds']:>7.0f}s  {verdict('batch_seconds')}")
    print(f"{'  wrong answers against plaintext truth':<42}{result['batch_wrong_answers']:>12}")
    print(f"{'  peer: pooled plaintext database':<42}{result['central_database_batch_seconds']:>11.4f}s"
          f"  ratio {result['batch_ratio_to_central_database']:,.0f}x (the price of privacy)")
    print(f"{'refresh of 1% ({:,} customers)'.format(result['refresh_changed_customers']):<42}"
          f"{result['refresh_seconds']:>11.1f}s  {targets['refresh_seconds']:>7.0f}s  {verdict('refresh_seconds')}")
    print("OPRF curve, us per element (hash to group + scalar multiplication):")
    for name, cost in result["curves_us_per_element"].items():
        print(f"  {name:<40}{cost:>10.1f}")


if __name__ == "__main__":
    main()
