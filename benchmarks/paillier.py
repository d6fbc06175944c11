"""Paillier throughput: isthmus against phe (python-paillier) and pypaillier, in one process.

    python benchmarks/paillier.py                 # one core, table with ratios to phe
    python benchmarks/paillier.py --workers 2     # the multi-core line
    python benchmarks/paillier.py --json          # exactly one JSON object on stdout

Every library does the same operations on the same kind of data in the same run, one operation
after the other for all libraries; phe is slow, so it is measured on small counts. Rates are operations per second (``matmul``: products x_ij * [[d_i]]
per second inside ``X.T @ [[d]]``; ``packed_encrypt``: plaintext values per second, where phe and
pypaillier have no packing and encrypt one value per ciphertext). Load from other processes on the
machine lowers every number; with one worker the clock is this process's CPU time, which other
processes disturb less than wall-clock time. Compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

OPS = ("encrypt", "decrypt", "add", "mul_scalar", "matmul", "packed_encrypt")


Workload = dict[str, tuple[Callable[[], Any], int]]  # op -> (run once, operations per run)


def rate(run: Callable[[], Any], count: int, clock: Callable[[], float]) -> float:
    """Operations per second of ``run`` (which performs ``count`` operations); best of two runs."""
    best = float("inf")
    for _ in range(2):
        start = clock()
        run()
        best = min(best, clock() - start)
    return count / max(best, 1e-9)


def isthmus_workload(bits: int, rows: int, features: int) -> Workload:
    from isthmus.crypto.packing import encrypt_packed
    from isthmus.crypto.paillier import generate_keypair

    public_key, private_key = generate_keypair(bits)
    rng = np.random.default_rng(0)
    x = rng.normal(size=4000)
    c = public_key.encrypt(x)  # also builds the fixed-base table once, as any long-lived key does
    d = public_key.encrypt(rng.normal(size=rows))
    X = rng.normal(size=(rows, features))
    packed_values = rng.normal(size=100_000)
    return {
        "encrypt": (lambda: public_key.encrypt(x), len(x)),
        "decrypt": (lambda: private_key.decrypt(c[:200]), 200),
        "add": (lambda: c + c, len(x)),
        "mul_scalar": (lambda: c[:1000] * x[:1000], 1000),
        "matmul": (lambda: X.T @ d, rows * features),
        "packed_encrypt": (lambda: encrypt_packed(public_key, packed_values), len(packed_values)),
    }


def naive_matmul_workload(bits: int, rows: int, features: int) -> tuple[Callable[[], Any], int]:
    """One powmod per product, same 16-bit fixed-point scalars: what the bucket method replaces."""
    import gmpy2

    from isthmus.crypto.paillier import DEFAULT_MATMUL_PRECISION, generate_keypair

    public_key, _ = generate_keypair(bits)
    rng = np.random.default_rng(0)
    bases = public_key.encrypt(rng.normal(size=rows)).ciphertexts()
    scalars = np.rint(rng.normal(size=(features, rows)) * 2**DEFAULT_MATMUL_PRECISION).astype(np.int64).tolist()
    nsquare = public_key.nsquare

    def naive() -> None:
        for row in scalars:
            total = gmpy2.mpz(1)
            for base, k in zip(bases, row):
                total = total * gmpy2.powmod(base, k, nsquare) % nsquare

    return naive, rows * features


def phe_workload(bits: int) -> Workload:
    import phe

    public_key, private_key = phe.generate_paillier_keypair(n_length=bits)
    xs = [random.gauss(0, 1) for _ in range(30)]
    c = [public_key.encrypt(v) for v in xs]
    many = c * 50

    def matmul() -> None:  # X.T @ [[d]] the phe way: one scalar product and one addition per entry
        for _ in range(4):
            sum((e * v for e, v in zip(c, xs)), public_key.encrypt(0))

    encrypt = (lambda: [public_key.encrypt(v) for v in xs], len(xs))
    return {
        "encrypt": encrypt,
        "decrypt": (lambda: [private_key.decrypt(e) for e in many[:100]], 100),
        "add": (lambda: [a + b for a, b in zip(many, reversed(many))], len(many)),
        "mul_scalar": (lambda: [e * v for e, v in zip(c, xs)], len(c)),
        "matmul": (matmul, 4 * len(c)),
        "packed_encrypt": encrypt,
    }


def import_pypaillier() -> Any:
    """pypaillier's import name is ``paillier``, which this file's name shadows: look past its folder."""
    import importlib

    here = os.path.dirname(os.path.abspath(__file__))
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    try:
        return importlib.import_module("paillier")
    finally:
        sys.path[:] = saved


def pypaillier_workload(bits: int) -> Workload:
    paillier = import_pypaillier()
    public_key, secret_key = paillier.generate_keypair(bits)
    xs = [random.gauss(0, 1) for _ in range(1000)]
    blobs = [bytes(b) for b in paillier.encrypt_many(public_key, xs)]
    column = blobs[:200]

    def matmul() -> None:  # variable-time ("public") scalars, like isthmus and phe
        paillier.add_many(public_key, paillier.multiply_many_public(public_key, column, xs[:200]))

    encrypt = (lambda: paillier.encrypt_many(public_key, xs), len(xs))
    return {
        "encrypt": encrypt,
        "decrypt": (lambda: paillier.decrypt_exact_many(secret_key, blobs[:200]), 200),
        "add": (lambda: paillier.add_many(public_key, blobs), len(blobs) - 1),
        "mul_scalar": (lambda: paillier.multiply_many_public(public_key, blobs[:200], xs[:200]), 200),
        "matmul": (matmul, 200),
        "packed_encrypt": encrypt,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="cores for isthmus and pypaillier (phe has one)")
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--rows", type=int, default=10_000, help="rows of X in X.T @ [[d]]")
    parser.add_argument("--features", type=int, default=30, help="columns of X")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()

    os.environ["RAYON_NUM_THREADS"] = str(args.workers)  # pypaillier's thread pool, read at import
    from isthmus.crypto import parallel

    parallel.configure(args.workers)

    # One core: CPU time of this process, so other processes' load on a shared machine distorts less.
    # Several workers: wall-clock time (the work happens in other threads and processes).
    clock = time.process_time if args.workers == 1 else time.perf_counter
    workloads: dict[str, Workload | None] = {"isthmus": isthmus_workload(args.bits, args.rows, args.features)}
    notes = []
    for name, build in (("phe", phe_workload), ("pypaillier", pypaillier_workload)):
        try:
            workloads[name] = build(args.bits)
        except ImportError as exc:
            workloads[name] = None
            notes.append(f"{name} skipped: {exc} (pip install {name})")
    results: dict[str, dict[str, float | None]] = {op: {} for op in OPS}
    for op in OPS:  # libraries back to back per operation, so they see the same machine load
        for name, workload in workloads.items():
            results[op][name] = None if workload is None else rate(*workload[op], clock)
    if args.json:
        print(json.dumps({"key_bits": args.bits, "ops": results}))
        return
    naive = rate(*naive_matmul_workload(args.bits, min(args.rows, 300), args.features), clock)
    print(f"Paillier {args.bits}-bit, {args.workers} worker(s); ops/s (ratio to phe)")
    print(f"{'op':<16}{'isthmus':>22}{'phe':>12}{'pypaillier':>22}")
    for op in OPS:
        phe_rate = results[op]["phe"]
        cells = []
        for name in ("isthmus", "pypaillier"):
            value = results[op][name]
            cells.append("-" if value is None else f"{value:,.0f} ({value / phe_rate:.1f}x)" if phe_rate else f"{value:,.0f}")
        print(f"{op:<16}{cells[0]:>22}{phe_rate or 0:>12,.0f}{cells[1]:>22}")
    matmul = results["matmul"]["isthmus"]
    print(
        f"matmul {args.rows} x {args.features}: {args.rows * args.features / matmul:.2f} s with the bucket method, "
        f"{args.rows * args.features / naive:.2f} s projected with one powmod per product ({matmul / naive:.1f}x)"
    )
    for note in notes:
        print(note, file=sys.stderr)


if __name__ == "__main__":
    main()
