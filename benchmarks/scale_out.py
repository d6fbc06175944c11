"""Scale-out: a host's side of PSI and of SecureBoost histograms on a 2-node local Ray cluster vs the local pool.

The cluster is started here (``isthmus.compute.ray_local``: a head and one worker node, one CPU each,
separate ``ray start`` processes), so Ray gets the same two cores the local pool gets. Measured:

* PSI (ECDH): the full protocol over the in-process hub, guest with a tenth of the host's ids on
  the local pool, the host on each backend; the time of the whole intersection, per host row.
* Histograms: one layer of a SecureBoost tree on the host, i.e. the root's packed encrypted
  histograms over every row (10 features, 32 bins, 2048-bit key; random ciphertexts, as the cost
  does not depend on their values), per row.

``ray_overhead`` is Ray's PSI time over the local pool's at the largest size, minus one (0.10: Ray
10% slower). Connecting to the cluster is a one-time cost per party process, reported apart.

    python benchmarks/scale_out.py --json --quick   # host 25k, 50k, 100k rows
    python benchmarks/scale_out.py                  # host 250k, 500k, 1M, 2M rows (tens of minutes)

The machine has 2 cores shared with other people's work: times move by tens of percent from run to
run; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any

import numpy as np

from isthmus.compute import LocalCompute
from isthmus.compute.ray_backend import RayCompute
from isthmus.compute.ray_local import LocalRayCluster
from isthmus.protocols.psi import intersect
from isthmus.transport.local import LocalHub
from isthmus.tree.hist_kernel import HistogramKernel

QUICK_SIZES = [25_000, 50_000, 100_000]
FULL_SIZES = [250_000, 500_000, 1_000_000, 2_000_000]
HIST_FEATURES, HIST_BINS, HIST_KEY_BITS = 10, 32, 2048


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--quick", action="store_true", help="small sizes (about two minutes)")
    parser.add_argument("--sizes", type=int, nargs="+", help="host rows to measure, instead of the preset sizes")
    args = parser.parse_args()
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)

    with LocalRayCluster(nodes=2, cpus_per_node=1) as cluster:
        ray = RayCompute(cluster.address)
        started = time.perf_counter()
        ray.check()
        while ray.parallelism() < 2:
            time.sleep(0.2)
        connect_s = time.perf_counter() - started
        backends = {"local": LocalCompute(), "ray": ray}
        psi = {size: {name: _time_psi(size, backend) for name, backend in backends.items()} for size in sizes}
        hist = {size: {name: _time_histogram(size, backend) for name, backend in backends.items()} for size in sizes}
        ray.close()

    largest = sizes[-1]
    report = {
        "ray_overhead": round(psi[largest]["ray"] / psi[largest]["local"] - 1, 3),
        "ray_overhead_histogram": round(hist[largest]["ray"] / hist[largest]["local"] - 1, 3),
        "ray_connect_s": round(connect_s, 2),
        "cluster": "2 nodes x 1 CPU on this machine (Ray Client driver)",
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "psi": _table(psi, "host rows; guest has a tenth"),
        "histogram": _table(hist, f"rows; {HIST_FEATURES} features x {HIST_BINS} bins, {HIST_KEY_BITS}-bit key"),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"Ray overhead (PSI, {largest:,} host rows): {report['ray_overhead']:+.1%}; histograms: "
          f"{report['ray_overhead_histogram']:+.1%}; connecting: {connect_s:.1f} s; load {report['load_average']}")
    for name in ("psi", "histogram"):
        print(f"\n{name} ({report[name]['unit']})")
        for size, row in report[name]["sizes"].items():
            print(f"  {size:>10}  local {row['local_s']:8.2f} s {row['local_us_per_row']:7.1f} us/row   "
                  f"ray {row['ray_s']:8.2f} s {row['ray_us_per_row']:7.1f} us/row")


def _time_psi(host_rows: int, host_compute: Any) -> float:
    ids = {"guest": [f"id{i}" for i in range(0, host_rows, 10)], "host": [f"id{i}" for i in range(host_rows)]}
    hub = LocalHub(["guest", "host"])
    results: dict[str, Any] = {}

    def party(name: str, backend: Any) -> None:
        results[name] = intersect(hub.channel(name, "bench"), name, ids[name], compute=backend)

    threads = [threading.Thread(target=party, args=("guest", LocalCompute())),
               threading.Thread(target=party, args=("host", host_compute))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    assert results["host"].size == len(ids["guest"]), "the intersection is wrong"
    return seconds


def _time_histogram(rows: int, compute: Any) -> float:
    from isthmus.crypto.paillier import generate_keypair
    from isthmus.tree.gh import slots_per_plaintext

    public, _ = _key(generate_keypair)
    rng = np.random.default_rng(0)
    kernel = HistogramKernel(public.nsquare, slots_per_plaintext(public.bits), compute)
    ciphertexts = rng.integers(0, 256, size=(rows, kernel.width), dtype=np.uint8)
    ciphertexts[:, 0] = 0
    binned = rng.integers(0, HIST_BINS, size=(rows, HIST_FEATURES), dtype=np.uint8)
    n_bins = np.full(HIST_FEATURES, HIST_BINS)
    started = time.perf_counter()
    kernel.build(ciphertexts, [(np.arange(rows), binned)], n_bins)
    return time.perf_counter() - started


_KEYS: dict[int, Any] = {}


def _key(generate: Any) -> Any:
    if HIST_KEY_BITS not in _KEYS:
        _KEYS[HIST_KEY_BITS] = generate(HIST_KEY_BITS)
    return _KEYS[HIST_KEY_BITS]


def _table(times: dict[int, dict[str, float]], unit: str) -> dict:
    return {"unit": unit, "sizes": {
        str(size): {"local_s": round(row["local"], 3), "ray_s": round(row["ray"], 3),
                    "local_us_per_row": round(1e6 * row["local"] / size, 2),
                    "ray_us_per_row": round(1e6 * row["ray"] / size, 2)}
        for size, row in times.items()}}


if __name__ == "__main__":
    main()
