"""hetero_lr_sshe training cost per row: one epoch over a sample, guest and host in this process.

    python benchmarks/sshe_epoch.py                        # 2,048 rows x (10 + 20) features, 2048-bit keys
    python benchmarks/sshe_epoch.py --rows 4096 --key-bits 1024
    python benchmarks/sshe_epoch.py --hosts 2               # the host's 20 columns split between two hosts
    python benchmarks/sshe_epoch.py --guest-features 30 --host-features 300 --key-bits 1024   # FATE's wide shape

Every batch's work is proportional to its rows (the feature products both ways, 96 encryptions and
96 short exponentiations per row for the sigmoid, half at each party), so seconds per row times 100,000 is the epoch
time at 100k x (10 + 20): SecretFlow's MPC LR takes about 40 s per epoch there on this machine, the
arbiter protocol is measured by benchmarks/vertical_lr.py (case narrow-2048). Both parties share this
process's cores, as they share the machine's in a one-machine launch; key generation is excluded.
The load average is printed beside the number: the machine is shared, so CPU seconds (both parties
and the crypto worker processes, user + sys) are printed too: wall time alone is distorted by others' work.

Measured 2026-12-03 (load 1.5-1.7): 2,048 rows x (10 + 20), 2048-bit: 18.1 ms per row (1,812 s per epoch at
100k; CPU 31.8 ms per row); 1,024 rows x (30 + 300), 1024-bit: 11.6 ms per row (1,158 s at 100k against FATE
2.x SSHE-LR's 294 s on 16 cores; CPU 20.0 ms per row, 2,001 CPU s against its 4,704 core-seconds).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    from conftest import run_parties
    from isthmus.algorithms.sshe_lr import protocol
    from isthmus.crypto import parallel
    from isthmus.algorithms.sshe_lr.options import SSHEOptions
    from isthmus.algorithms.sshe_lr.roles import fit_guest, fit_host
    from isthmus.transport.local import LocalHub

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--guest-features", type=int, default=10)
    parser.add_argument("--host-features", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    width, guest_width = args.guest_features + args.host_features, args.guest_features
    X = rng.normal(size=(args.rows, width))
    y = (X @ rng.normal(size=width) / np.sqrt(width / 30) + rng.logistic(size=args.rows) > 0).astype(int)
    options = SSHEOptions(epochs=1, batch_size=args.batch_size, key_bits=args.key_bits)
    started = {}
    real_init = protocol.Side.__init__

    def timed_init(self, *a, **k):  # (re)start the clock as each key pair exists: it runs from the last
        real_init(self, *a, **k)
        started["t"], started["cpu"] = time.perf_counter(), _cpu_seconds()
        threads[threading.current_thread().name] = time.thread_time()

    def own_cpu(role):  # a party's own thread's CPU seconds after its keys (all of it with one crypto worker)
        def run():
            result = roles[role]()
            threads[role] = time.thread_time() - threads[role]
            return result
        return run

    threads = {}

    protocol.Side.__init__ = timed_init
    hosts = [f"host-{i}" for i in range(args.hosts)]
    hub = LocalHub(["guest", *hosts])
    columns = np.array_split(np.arange(guest_width, width), args.hosts)
    roles = {host: (lambda host=host, cols=cols: fit_host(options, hub.channel(host), X[:, cols], guest="guest"))
             for host, cols in zip(hosts, columns)}
    roles["guest"] = lambda: fit_guest(options, hub.channel("guest"), X[:, :guest_width], y, hosts=hosts)
    run_parties({role: own_cpu(role) for role in roles}, timeout=3600)
    seconds = time.perf_counter() - started["t"]
    parallel.shutdown()  # reaps the workers, so their CPU time is counted
    cpu = _cpu_seconds() - started["cpu"]
    per_row, cpu_per_row = seconds / args.rows, cpu / args.rows
    print(f"hetero_lr_sshe {args.rows} rows x ({guest_width} + {width - guest_width}) over {args.hosts} host(s), {args.key_bits}-bit: {seconds:.1f} s per epoch, "
          f"{per_row * 1e3:.2f} ms per row -> {per_row * 100_000:.0f} s per epoch at 100k rows; CPU {cpu:.1f} s, "
          f"{cpu_per_row * 1e3:.2f} ms per row -> {cpu_per_row * 100_000:.0f} CPU s at 100k rows "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    if parallel.workers() == 1:  # each party's crypto ran in its own thread: the larger share bounds a deployment
        print("party CPU ms per row: " + ", ".join(f"{role} {cpu * 1e3 / args.rows:.2f}" for role, cpu in threads.items()))


def _cpu_seconds() -> float:
    """User + system seconds of this process and its reaped children (the crypto workers)."""
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
