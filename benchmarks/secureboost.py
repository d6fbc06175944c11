"""Hetero SecureBoost speed: seconds per tree, guest and host in one process (host workers on all cores).

Shapes from issue 5: 100,000 rows with 30 guest + 300 host features (1024-bit keys, target <= 114 s
per tree; FATE 2.x publishes 114 s on 16 cores) and 100,000 rows with 10 + 20 features (2048-bit
keys, target <= 37 s; SecretFlow ~74 s on this machine). Each shape also runs in the no-crypto mode
(same protocol, gradients in the clear) and as XGBoost (hist) on the joined columns: both measured
in the same run, as the named peers. Synthetic data: standard normal features, a logistic label
driven by a few columns of each party.

    python benchmarks/secureboost.py                 # both shapes, their key sizes, no-crypto beside
    python benchmarks/secureboost.py --quick         # 20,000 rows, for a smoke run
    python benchmarks/secureboost.py --json          # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import numpy as np

from isthmus.transport.local import LocalHub
from isthmus.algorithms.hetero_secureboost.guest import HeteroSecureBoostGuest
from isthmus.algorithms.hetero_secureboost.host import HeteroSecureBoostHost

SHAPES = {
    # the target applies to the first key size; the others are reported beside it
    "30+300": {"guest_features": 30, "host_features": 300, "key_bits": [1024, 2048], "target_s": 114.0},
    "10+20": {"guest_features": 10, "host_features": 20, "key_bits": [2048], "target_s": 37.0},
}


def synthetic(rows: int, guest_features: int, host_features: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X_guest = rng.standard_normal((rows, guest_features))
    X_host = rng.standard_normal((rows, host_features))
    logit = X_guest[:, :3].sum(axis=1) + X_host[:, :3].sum(axis=1) + 0.5 * rng.standard_normal(rows)
    return X_guest, X_host, (logit > 0).astype(np.float64)


def time_federated(X_guest, X_host, y, *, trees: int, depth: int, encryption: str, key_bits: int) -> float:
    """Seconds per tree of ``fit`` (key generation excluded: it is once per job, not per tree)."""
    hub = LocalHub(["guest", "host"])
    host = HeteroSecureBoostHost(32, encryption=encryption)
    failure = []

    def run_host():
        try:
            host.fit(hub.channel("host"), X_host)
        except Exception as exc:  # noqa: BLE001 - re-raised by the main thread
            failure.append(exc)

    guest = HeteroSecureBoostGuest(trees, depth, 0.3, 32, encryption=encryption, key_bits=key_bits)
    thread = threading.Thread(target=run_host)
    thread.start()
    start = time.perf_counter()
    guest.fit(hub.channel("guest"), X_guest, y, hosts=["host"])
    elapsed = time.perf_counter() - start
    thread.join()
    if failure:
        raise failure[0]
    return elapsed / trees


def time_xgboost(X_guest, X_host, y, *, trees: int, depth: int) -> float | None:
    try:
        import xgboost
    except ImportError:
        return None
    X = np.hstack([X_guest, X_host])
    start = time.perf_counter()
    xgboost.XGBClassifier(n_estimators=trees, max_depth=depth, learning_rate=0.3, max_bin=32, tree_method="hist",
                          n_jobs=os.cpu_count()).fit(X, y)
    return (time.perf_counter() - start) / trees


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trees", type=int, default=1)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--shape", choices=sorted(SHAPES), action="append", help="default: all shapes")
    parser.add_argument("--quick", action="store_true", help="20,000 rows")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = 20_000 if args.quick else args.rows

    results = {"rows": rows, "trees": args.trees, "depth": args.depth, "cores": os.cpu_count(), "shapes": {}}
    for name in args.shape or list(SHAPES):
        shape = SHAPES[name]
        X_guest, X_host, y = synthetic(rows, shape["guest_features"], shape["host_features"])
        timing = {"xgboost_s": time_xgboost(X_guest, X_host, y, trees=args.trees, depth=args.depth),
                  "plaintext_s": time_federated(X_guest, X_host, y, trees=args.trees, depth=args.depth,
                                                encryption="plaintext", key_bits=1024)}
        for bits in shape["key_bits"]:
            timing[f"paillier{bits}_s"] = time_federated(X_guest, X_host, y, trees=args.trees, depth=args.depth,
                                                         encryption="paillier", key_bits=bits)
        timing["target_s"] = shape["target_s"]
        results["shapes"][name] = timing
        if not args.json:
            _print_shape(name, rows, shape, timing)
    if args.json:
        print(json.dumps(results))


def _print_shape(name: str, rows: int, shape: dict, timing: dict) -> None:
    print(f"\nshape {name}: {rows} rows, {shape['guest_features']} guest + {shape['host_features']} host features "
          f"(target {shape['target_s']:g} s per tree at {shape['key_bits'][0]} bits)")
    print(f"{'mode':<16}{'s/tree':>10}{'x no-crypto':>14}{'x xgboost':>12}{'x target':>10}")
    targeted = f"paillier{shape['key_bits'][0]}_s"
    for key in [k for k in timing if k.endswith("_s") and k != "target_s"]:
        seconds = timing[key]
        if seconds is None:
            print(f"{key[:-2]:<16}{'n/a':>10}")
            continue
        xgb = timing["xgboost_s"]
        versus_target = f"{seconds / timing['target_s']:>10.2f}" if key == targeted else f"{'-':>10}"
        print(f"{key[:-2]:<16}{seconds:>10.2f}{seconds / timing['plaintext_s']:>14.1f}"
              f"{(seconds / xgb if xgb else float('nan')):>12.1f}{versus_target}")


if __name__ == "__main__":
    main()
