"""The crypto of one hetero LR epoch, CKKS against Paillier, in one process and one run.

    python benchmarks/lattice.py                   # 100,000 rows, batches of 20,000, 10 + 20 features
    python benchmarks/lattice.py --json            # exactly one JSON object on stdout
    python benchmarks/lattice.py --ciphers ckks    # skip the slow Paillier line

Per batch, what the epoch's crypto does for the residual d: encrypt d, every party's products
``X_p.T @ [[d]]`` (guest 10 features + intercept, host 20), mask them (CKKS: mask and flooding noise
in every slot), the transport codec's encode and decode of what crosses, the key holder's decryption
(CKKS: flooded before it leaves) and unmasking. The host's own encryption of its partial predictions
is the same kind of work as encrypting d and is counted once more per batch.

CKKS parameters (isthmus.crypto.ckks): N = 8192, log q = 60 + 50 + 48 = 158 plus the 60-bit special
prime = 218 bits, the largest the HE standard (homomorphicencryption.org, 2018, table 1: N = 8192,
log q <= 218 for 128-bit classical security, ternary secret) allows; SEAL checks it at ``tc128``.
Paillier: isthmus' own 2048-bit key with its fixed-base randomness and bucket multi-exponentiation.
Both run on one core here unless ``--workers`` says otherwise (Paillier spreads over worker
processes; SEAL as TenSEAL builds it is single-threaded); the CPU column counts this process only,
so with workers > 1 compare wall times. The machine is shared: the load average is printed beside
every number.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import numpy as np


def paillier_batch(bits: int) -> Callable[[np.ndarray, list[np.ndarray], np.ndarray], list[np.ndarray]]:
    from isthmus.crypto.paillier import generate_keypair

    public_key, private_key = generate_keypair(bits)
    return _batch(public_key.encrypt, private_key.decrypt_raw, lambda c, m: c.rmatmul(m))


def ckks_batch() -> Callable[[np.ndarray, list[np.ndarray], np.ndarray], list[np.ndarray]]:
    from isthmus.crypto import ckks

    public_key, private_key = ckks.generate_keypair()
    return _batch(public_key.encrypt, private_key.decrypt_raw, lambda c, m: c.rmatmul(m),
                  wire=lambda c, size: ckks.CkksArray.from_wire(c.to_wire(), public_key, size=size))


def ckks_circuit_error(rows: int, features: int, rng: np.random.Generator) -> float:
    """Largest CKKS error of one batch's product before any mask or flooding: what the flooding must hide."""
    from isthmus.crypto import ckks

    public_key, private_key = ckks.generate_keypair()
    d, X = rng.normal(size=rows) * 2.0, rng.normal(size=(rows, features))
    return float(np.abs(private_key.decrypt_exact(public_key.encrypt(d).rmatmul(X.T)) - X.T @ d).max())


def _batch(encrypt, decrypt, product, wire=None):
    """One batch: encrypt the partials and d, each party's masked product through the codec, decrypt, unmask."""
    from isthmus.transport import codec

    def through_codec(cipher, size):
        if wire is None:  # Paillier arrays are codec envelopes themselves
            return codec.decode(codec.encode(cipher))
        return wire(cipher, size)

    def run(d: np.ndarray, parts: list[np.ndarray], partial: np.ndarray) -> list[np.ndarray]:
        encrypt(partial)  # the host's partial predictions
        encrypted = through_codec(encrypt(d), len(d))
        results = []
        for X in parts:
            masked, mask = product(encrypted, X.T).masked()
            results.append(mask.unmask(decrypt(through_codec(masked, X.shape[1]))))
        return results

    return run


def measure(name: str, make, args, rng: np.random.Generator) -> dict:
    load_before = os.getloadavg()[0]
    setup = time.perf_counter()
    run = make()
    setup = time.perf_counter() - setup
    X = rng.normal(size=(args.rows, args.guest_features + args.host_features))
    guest = np.hstack([X[:, :args.guest_features], np.ones((args.rows, 1))])
    host = X[:, args.guest_features:]
    wall, cpu, error, scale = 0.0, 0.0, 0.0, 0.0
    for start in range(0, args.rows, args.batch_size):
        rows = slice(start, start + args.batch_size)
        d = rng.normal(size=len(guest[rows])) * 2.0
        partial = rng.normal(size=len(d))
        started, cpu_started = time.perf_counter(), time.process_time()
        results = run(d, [guest[rows], host[rows]], partial)
        wall += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        for part, result in zip((guest[rows], host[rows]), results):
            error = max(error, float(np.abs(result - part.T @ d).max()))
            scale = max(scale, float(np.abs(part.T @ d).max()))
    return {"cipher": name, "rows": args.rows, "batch_size": args.batch_size,
            "features": f"{args.guest_features}+1 + {args.host_features}", "seconds": round(wall, 2),
            "cpu_seconds": round(cpu, 2), "setup_seconds": round(setup, 2), "max_abs_error": error,
            "max_abs_value": round(scale, 1), "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--guest-features", type=int, default=10)
    parser.add_argument("--host-features", type=int, default=20)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=1, help="Paillier's worker processes (1: this process only)")
    parser.add_argument("--ciphers", nargs="+", choices=("ckks", "paillier"), default=["ckks", "paillier"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from isthmus.crypto import parallel

    parallel.configure(args.workers)
    makers = {"ckks": ckks_batch, "paillier": lambda: paillier_batch(args.key_bits)}
    names = {"ckks": "CKKS N=8192 logq=218 (128-bit)", "paillier": f"Paillier {args.key_bits}"}
    records = [measure(names[c], makers[c], args, np.random.default_rng(0)) for c in args.ciphers]
    if "ckks" in args.ciphers:
        records[0]["circuit_error"] = ckks_circuit_error(args.batch_size, args.host_features, np.random.default_rng(1))
    if len(records) == 2:
        records[0]["speedup_vs_paillier"] = {"wall": round(records[1]["seconds"] / records[0]["seconds"], 1),
                                             "cpu": round(records[1]["cpu_seconds"] / records[0]["cpu_seconds"], 1)}
    if args.json:
        json.dump({"benchmark": "lattice", "cpu_count": os.cpu_count(), "workers": args.workers,
                   "records": records}, sys.stdout)
        print()
        return
    print(f"epoch crypto, {args.rows:,} rows in batches of {args.batch_size:,}, {os.cpu_count()} cores, "
          f"Paillier workers {args.workers}")
    for r in records:
        print(f"  {r['cipher']:<34} {r['seconds']:>7.2f} s wall {r['cpu_seconds']:>7.2f} s CPU "
              f"(setup {r['setup_seconds']:.2f} s)  max |error| {r['max_abs_error']:.2e} of values up to "
              f"{r['max_abs_value']:g}  load {r['load_before']:.1f}->{r['load_after']:.1f}"
              + ("  vs Paillier: {wall}x wall, {cpu}x CPU".format(**r["speedup_vs_paillier"]) if "speedup_vs_paillier" in r else "")
              + (f"\n    CKKS error before masks and flooding: {r['circuit_error']:.1e}" if "circuit_error" in r else ""))


if __name__ == "__main__":
    main()
