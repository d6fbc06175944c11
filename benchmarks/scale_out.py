"""Scale-out: a host's heavy work on a 2-node local Ray cluster vs the local pool, per host row.

The cluster is started here (``isthmus.compute.ray_local``: a head and one worker node, one CPU each,
separate ``ray start`` processes), so Ray gets the same two cores the local pool gets. Measured:

* PSI (ECDH): the full protocol over the in-process hub, guest with a tenth of the host's ids on
  the local pool, the host on each backend; the time of the whole intersection, per host row.
  ``psi_partitioned``: the same, with the host's ids read by the cluster's tasks per row group of a
  Parquet file (``isthmus.data.partitions``) instead of from a list in the driver.
* Histograms: one layer of a SecureBoost tree on the host, i.e. the root's packed encrypted
  histograms over every row (10 features, 32 bins, 2048-bit key; random ciphertexts, as the cost
  does not depend on their values), per row.
* Paillier: what a vertical LR host does with a batch of these rows, at 2048 bits: encrypting one value
  per row, and ``X.T @ [[d]]`` over 10 features (row blocks on the cluster, multiplied at the driver).
* Tree: one vertical SecureBoost tree (depth 3, 10 guest + 10 host features, 2048-bit key), guest and
  host in this process (``benchmarks/secureboost.py``'s ``time_federated``): every Paillier and
  histogram job of both parties runs on the backend measured, not the host's alone.
* Binning: quantile split points and bin indices of 10 features (32 bins), on the cluster at every size
  (``isthmus.compute.blocks.CLUSTER_MIN_VALUES`` set to 0 here; by default binning stays in the driver).

* Driver memory (``--memory ROWS``): an intersect-only job launched as real party processes (``isthmus
  launch``), the host with a Parquet file of ROWS rows x 10 float features (16 row groups), the guest with a
  tenth of its ids; the host's process peak RSS (``VmHWM``), its host on the local pool, then on the cluster.
  Locally the host reads its whole table (``read_table``); on the cluster its tasks read the ids for PSI and
  then only the shared rows (``isthmus.data.partitions.load_rows``).

``ray_overhead`` is Ray's PSI time over the local pool's at the largest size, minus one (0.10: Ray
10% slower); ``ray_overhead_<work>`` the same for the other work. Connecting to the cluster is a
one-time cost per party process, reported apart.

    python benchmarks/scale_out.py --json --quick   # host 25k, 50k, 100k rows
    python benchmarks/scale_out.py                  # host 250k, 500k, 1M, 2M rows (tens of minutes)
    python benchmarks/scale_out.py --sizes 1000000 --work psi histogram
    python benchmarks/scale_out.py --memory 2000000  # the driver's peak memory, local pool vs cluster

The machine has 2 cores shared with other people's work: times move by tens of percent from run to
run; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from isthmus.compute import LocalCompute, blocks, select
from isthmus.compute.ray_backend import RayCompute
from isthmus.compute.ray_local import LocalRayCluster
from isthmus.data.partitions import table_partitions
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
    parser.add_argument("--work", nargs="+", choices=list(WORK), default=list(WORK), help="what to measure")
    parser.add_argument("--memory", type=int, metavar="ROWS", help="measure the driver's peak memory instead")
    args = parser.parse_args()
    if args.memory:
        print(json.dumps(_memory_report(args.memory)))
        return
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)

    with LocalRayCluster(nodes=2, cpus_per_node=1) as cluster, tempfile.TemporaryDirectory() as folder:
        ray = RayCompute(cluster.address)
        started = time.perf_counter()
        ray.check()
        while ray.parallelism() < 2:
            time.sleep(0.2)
        connect_s = time.perf_counter() - started
        backends = {"local": LocalCompute(), "ray": ray}
        times = {work: {size: {name: _measured(work, size, name, backend, Path(folder))
                               for name, backend in backends.items()}
                        for size in sizes}
                 for work in args.work}
        ray.close()

    largest = sizes[-1]
    overheads = {work: round(rows[largest]["ray"] / rows[largest]["local"] - 1, 3) for work, rows in times.items()}
    report = {
        **{("ray_overhead" if work == "psi" else f"ray_overhead_{work}"): value for work, value in overheads.items()},
        "ray_connect_s": round(connect_s, 2),
        "cluster": "2 nodes x 1 CPU on this machine (Ray Client driver)",
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **{work: _table(rows, WORK[work][1]) for work, rows in times.items()},
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"Ray overhead at {largest:,} host rows: " + ", ".join(f"{w} {v:+.1%}" for w, v in overheads.items())
          + f"; connecting: {connect_s:.1f} s; load {report['load_average']}")
    for name in times:
        print(f"\n{name} ({report[name]['unit']})")
        for size, row in report[name]["sizes"].items():
            print(f"  {size:>10}  local {row['local_s']:8.2f} s {row['local_us_per_row']:7.1f} us/row   "
                  f"ray {row['ray_s']:8.2f} s {row['ray_us_per_row']:7.1f} us/row")


def _measured(work: str, size: int, name: str, backend: Any, folder: Path) -> float:
    """One measurement, also printed to stderr as it comes (a long run interrupted keeps what it measured)."""
    seconds = WORK[work][0](size, backend, folder)
    print(f"{work} {size} {name} {seconds:.3f} s load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    return seconds


def _time_psi(host_rows: int, host_compute: Any, folder: Path, *, partitioned: bool = False) -> float:
    ids: dict[str, Any] = {"guest": [f"id{i}" for i in range(0, host_rows, 10)],
                           "host": [f"id{i}" for i in range(host_rows)]}
    if partitioned:  # the host's file: row groups of 1/8 of the rows, described (not read) before the clock starts
        path = folder / f"host-{host_rows}.parquet"
        if not path.exists():
            pd.DataFrame({"id": ids["host"]}).to_parquet(path, row_group_size=-(-host_rows // 8))
        ids["host"] = table_partitions(path, party="host", id_column="id")
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


def _time_psi_partitioned(host_rows: int, host_compute: Any, folder: Path) -> float:
    return _time_psi(host_rows, host_compute, folder, partitioned=True)


def _time_histogram(rows: int, compute: Any, folder: Path) -> float:
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


def _time_paillier(rows: int, compute: Any, folder: Path) -> float:
    """Encrypt one value per row, then ``X.T @ [[d]]`` over 10 features: a vertical LR host's batch of ``rows``."""
    from isthmus.crypto.paillier import generate_keypair

    public, private = _key(generate_keypair)
    rng = np.random.default_rng(1)
    values, X = rng.normal(size=rows), rng.normal(size=(rows, HIST_FEATURES))
    with _backend(compute):
        started = time.perf_counter()
        gradient = public.encrypt(values).rmatmul(X.T, precision=16)
        seconds = time.perf_counter() - started
    assert np.allclose(private.decrypt(gradient), X.T @ values, atol=rows * 2**-14), "X.T @ [[d]] is wrong"
    return seconds


def _time_tree(rows: int, compute: Any, folder: Path) -> float:
    from secureboost import synthetic, time_federated  # benchmarks/, this script's folder

    X_guest, X_host, y = synthetic(rows, HIST_FEATURES, HIST_FEATURES)
    with _backend(compute):
        return time_federated(X_guest, X_host, y, trees=1, depth=3, encryption="paillier", key_bits=HIST_KEY_BITS)


def _time_binning(rows: int, compute: Any, folder: Path) -> float:
    from isthmus.ml.binning import QuantileBinner

    X = np.random.default_rng(2).normal(size=(rows, HIST_FEATURES))
    before, blocks.CLUSTER_MIN_VALUES = blocks.CLUSTER_MIN_VALUES, 0
    try:
        with _backend(compute):
            started = time.perf_counter()
            QuantileBinner(HIST_BINS).fit(X).transform(X)
            return time.perf_counter() - started
    finally:
        blocks.CLUSTER_MIN_VALUES = before


@contextmanager
def _backend(compute: Any) -> Iterator[None]:
    """Make ``compute`` this process's backend (the crypto and numpy work find it there) without closing it after,
    as :func:`isthmus.compute.use` would."""
    before, select._current = select._current, compute
    try:
        yield
    finally:
        select._current = before


def _memory_report(rows: int) -> dict:
    """The host party process's peak memory in an intersect-only job, host on the local pool, then on the cluster."""
    from isthmus.jobs.local import loopback_parties, write_job

    with LocalRayCluster(nodes=2, cpus_per_node=1) as cluster, tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        rng = np.random.default_rng(3)
        host = pd.DataFrame({"id": [f"id{i}" for i in rng.permutation(rows)],
                             **{f"x{j}": rng.normal(size=rows) for j in range(HIST_FEATURES)}})
        host.to_parquet(folder / "host.parquet", row_group_size=-(-rows // 16))
        table_mb = host.memory_usage(deep=True).sum() / 2**20
        del host
        pd.DataFrame({"id": [f"id{i}" for i in range(0, rows, 10)], "g": 1.0}).to_csv(folder / "guest.csv", index=False)
        parties = {party: {"data": {"path": str(folder / file), "id": "id"}}
                   for party, file in (("guest", "guest.csv"), ("host", "host.parquet"))}
        job = write_job(folder / "job.yaml", {"job": "memory", "record": False, "parties": loopback_parties(parties),
                                              "steps": [{"intersect": {}}]})
        report: dict[str, Any] = {"rows": rows, "features": HIST_FEATURES, "table_in_pandas_mb": round(table_mb, 1)}
        for backend, extra in (("local", []), ("ray", ["--compute", f"host={cluster.address}"])):
            report[backend] = _host_peak(job, folder / backend, extra)
            print(f"memory {backend} {report[backend]} load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    report["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return report


def _host_peak(job: Path, out: Path, extra: list[str]) -> dict:
    """Launch the job; watch the host's process (the launcher's child whose output goes to the host's log) and
    report its peak RSS (``VmHWM``, read every 0.1 s until it ends) and its RSS when first seen (imports)."""
    started = time.perf_counter()
    launcher = subprocess.Popen([sys.executable, "-m", "isthmus", "launch", str(job), "--out", str(out), *extra],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_mb = peak_mb = 0.0
    while launcher.poll() is None:
        for pid in _host_processes(launcher.pid, out / "logs" / "host.log"):
            try:
                peak_mb = max(peak_mb, _status_mb(pid, "VmHWM"))
                first_mb = first_mb or _status_mb(pid, "VmRSS")
            except (OSError, StopIteration):  # it ended between the listing and the reading
                pass
        time.sleep(0.1)
    assert launcher.returncode == 0, f"the job failed: see {out}"
    events = [json.loads(line) for line in (out / "host" / "events.jsonl").read_text().splitlines()]
    shared = next(event["shared_rows"] for event in events if "shared_rows" in event)
    return {"peak_mb": round(peak_mb, 1), "first_seen_mb": round(first_mb, 1), "shared_rows": shared,
            "job_s": round(time.perf_counter() - started, 1)}


def _host_processes(launcher: int, log: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (entry.name.isdigit() and os.readlink(entry / "fd" / "1") == str(log)
                    and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == launcher):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _status_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as file:
        line = next(line for line in file if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


WORK = {
    "psi": (_time_psi, "host rows; guest has a tenth"),
    "psi_partitioned": (_time_psi_partitioned, "host rows read from a Parquet file of 8 row groups; guest a tenth"),
    "histogram": (_time_histogram, f"rows; {HIST_FEATURES} features x {HIST_BINS} bins, {HIST_KEY_BITS}-bit key"),
    "paillier": (_time_paillier, f"rows; encrypt one value a row, then X.T @ [[d]] over {HIST_FEATURES} features, "
                                 f"{HIST_KEY_BITS}-bit key"),
    "tree": (_time_tree, f"rows; one SecureBoost tree of depth 3, {HIST_FEATURES} + {HIST_FEATURES} features, "
                         f"{HIST_KEY_BITS}-bit key, both parties on the backend"),
    "binning": (_time_binning, f"rows; {HIST_FEATURES} features x {HIST_BINS} bins (split points and bins)"),
}

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
