"""Hetero logistic regression training speed: seconds per epoch, three party processes on this machine.

    python benchmarks/vertical_lr.py                      # every case below, 2 epochs each
    python benchmarks/vertical_lr.py --cases wide-1024 wide-1024-plain
    python benchmarks/vertical_lr.py --json               # exactly one JSON object on stdout

Cases (issue 3 targets), synthetic ``make_classification`` data of the peers' shape, Parquet, written once:
  wide-*   100,000 rows, 30 guest + 300 host features. FATE 2.x publishes 139 s per epoch for this
           at 1024 bits on 16 cores; the target is <= 139 s here on 2 cores (8x FATE per core).
  narrow-* 100,000 rows, 10 guest + 20 host features at 2048 bits. SecretFlow's MPC logistic
           regression takes about 40 s per epoch on this machine; the target is <= 40 s.
Logistic jobs use the job default, the exact residual (``residual: sigmoid``: the arbiter also decrypts the
batch's shuffled scores and encrypts their sigmoid); ``*-taylor`` is the white paper's protocol (no such round).
``*-sshe`` is ``hetero_lr_sshe``: guest and host only, no arbiter, the sigmoid on secret shares (issue 16;
FATE 2.x's SSHE-LR takes 294 s per epoch on the wide shape with 16 cores per party). Its cost per row is
fixed (96 encryptions per row for the sigmoid), so benchmarks/sshe_epoch.py measures it on a sample faster.
``*-ckks`` is the identical job with ``cipher: ckks`` (128-bit-secure CKKS, isthmus.crypto.ckks; needs
the extra ``isthmus[lattice]``); its key column shows the Paillier size it stands in for. The issue 17
targets are <= 20 s (narrow) and <= 40 s (wide) per epoch. ``*-plain`` is the identical job with ``encrypt: false`` (benchmark-only): the encryption overhead
ratio is encrypted / plain. Mini-batches of 20,000 rows by default (``--batch-size``): per batch the
bucket multi-exponentiation behind ``X.T @ [[d]]`` costs ~2.3 modular products per term at 20,000
rows, ~2.8 at 5,000, ~2.1 with the whole 100,000 in one batch. The rest is fresh encryption randomness
(~22 products per ciphertext): with the Taylor residual 2 x 20,000 per batch (the host's partials and
the guest's re-randomised residual), with the exact one 20,000 (the arbiter's [[sigmoid]]; the parties'
packed parts of its request and the hosts' loss terms need ~1/50 of that, disguise.py); each party
draws its next batch's share in the background while the others compute, so none waits for it. A
4096-bit modular product costs ~4.2 us here in gmpy2 (3.97 us in python-flint's fmpz_mod, 4.23 in
gmpy2 in the same run: no faster library to switch to), so the narrow case's floor is 100,000 rows x
32 outputs x 2.2 + 200,000 x 22 = 11.4 M products = 48 CPU-s per epoch with the Taylor residual (9.2 M,
39 CPU-s, with the exact one), 24 s on two cores with no overhead at all: the epoch is CPU-bound.

Every party is its own ``isthmus run`` process over mutual TLS, started by ``isthmus.jobs.launcher``;
the epoch times come from the guest's ``events.jsonl``. The first epoch also pays for key generation
and the encryption tables, but looks shorter: the guest reports it before the host has finished the
gradient of its last batch, which then falls into the second epoch. "Steady" is the mean of later
epochs (the first if only one ran), i.e. the period of the training loop.
The machine is shared: the load average and the job's own CPU seconds are printed beside every
number; job CPU close to 2 x wall means the job had both cores, much less means other processes
took them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Case:
    name: str
    guest_features: int
    host_features: int
    key_bits: int
    encrypt: bool = True
    cipher: str = "paillier"  # "ckks": key_bits is then the Paillier size of the same target, for the table
    residual: str | None = None  # None: the job default (sigmoid; taylor with ckks)
    model: str = "hetero_lr"  # or hetero_lr_sshe (no arbiter)
    peer: str | None = None
    peer_seconds: float | None = None  # the peer's published seconds per epoch
    target_seconds: float | None = None


CASES = {case.name: case for case in [
    Case("wide-1024", 30, 300, 1024, peer="FATE 2.x, 16 cores", peer_seconds=139.0, target_seconds=139.0),
    Case("wide-1024-plain", 30, 300, 1024, encrypt=False),
    Case("wide-2048", 30, 300, 2048, peer="FATE 2.x at 1024 bits, 16 cores", peer_seconds=139.0),
    Case("narrow-2048", 10, 20, 2048, peer="SecretFlow MPC LR, this machine", peer_seconds=40.0, target_seconds=40.0),
    Case("narrow-2048-plain", 10, 20, 2048, encrypt=False),
    Case("narrow-2048-taylor", 10, 20, 2048, residual="taylor"),
    Case("wide-1024-taylor", 30, 300, 1024, residual="taylor"),
    Case("narrow-2048-sshe", 10, 20, 2048, model="hetero_lr_sshe", peer="SecretFlow MPC LR, this machine",
         peer_seconds=40.0),
    Case("wide-1024-sshe", 30, 300, 1024, model="hetero_lr_sshe", peer="FATE 2.x SSHE-LR, 16 cores", peer_seconds=294.0),
    Case("narrow-ckks", 10, 20, 2048, cipher="ckks", peer="SecretFlow MPC LR, this machine", peer_seconds=40.0,
         target_seconds=20.0),
    Case("wide-ckks", 30, 300, 1024, cipher="ckks", peer="FATE 2.x, 16 cores", peer_seconds=139.0, target_seconds=40.0),
]}


def synthetic_tables(folder: Path, rows: int, guest_features: int, host_features: int) -> tuple[Path, Path]:
    """Guest (id, y, g*) and host (id, h*) Parquet files of one make_classification draw, made once."""
    import pandas as pd
    from sklearn.datasets import make_classification

    folder = folder / f"{rows}x{guest_features}+{host_features}"
    guest_path, host_path = folder / "guest.parquet", folder / "host.parquet"
    if guest_path.exists() and host_path.exists():
        return guest_path, host_path
    features = guest_features + host_features
    X, y = make_classification(n_samples=rows, n_features=features, n_informative=max(2, features // 3),
                               n_redundant=features // 10, flip_y=0.05, random_state=0)
    ids = np.array([f"u{i:07d}" for i in range(rows)])
    guest = pd.DataFrame(X[:, :guest_features], columns=[f"g{i}" for i in range(guest_features)])
    guest.insert(0, "y", y)
    guest.insert(0, "id", ids)
    host = pd.DataFrame(X[:, guest_features:], columns=[f"h{i}" for i in range(host_features)])
    host.insert(0, "id", ids)
    folder.mkdir(parents=True, exist_ok=True)
    for frame, path in ((guest, guest_path), (host, host_path)):
        partial = path.with_suffix(".partial")
        frame.to_parquet(partial, index=False)
        partial.replace(path)
    return guest_path, host_path


def run_case(case: Case, args: argparse.Namespace, console: Console) -> dict:
    from isthmus.jobs.events import read_events
    from isthmus.jobs.launcher import launch
    from isthmus.jobs.local import loopback_parties, write_job

    guest_path, host_path = synthetic_tables(args.data_dir, args.rows, case.guest_features, case.host_features)
    out = Path(args.out) / case.name
    train = {"model": case.model, "epochs": args.epochs, "batch_size": args.batch_size, "penalty": "l2", "alpha": 0.01,
             "key_bits": case.key_bits}
    if case.model == "hetero_lr":
        train |= {"learning_rate": 0.15, "optimizer": "sgd", "tol": 0.0, "encrypt": case.encrypt, "cipher": case.cipher}
        train |= {"residual": case.residual} if case.residual else {}
    parties = {"guest": {"data": {"path": str(guest_path), "id": "id", "label": "y"}},
               "host": {"data": {"path": str(host_path), "id": "id"}}} | ({"arbiter": {}} if case.model == "hetero_lr" else {})
    job = {"job": f"bench-{case.name}",
           **({} if case.encrypt else {"benchmark_only_plaintext": True}),  # jobs refuse encrypt: false otherwise
           "parties": loopback_parties(parties),
           "steps": [{"train": train}]}  # the files are aligned row by row: no intersect step
    load_before = os.getloadavg()[0]
    cpu_before = _children_cpu()
    result = launch(write_job(out / "job.yaml", job), out / "run", console=console)
    job_cpu = _children_cpu() - cpu_before
    events = read_events(result.party_dir("guest") / "events.jsonl")
    started = next(e["time"] for e in events if e.get("step") == "train" and e.get("status") == "running")
    epoch_ends = [e["time"] for e in events if e.get("step") == "train" and "epoch" in e]
    epochs = np.diff([started, *epoch_ends])
    steady = float(epochs[1:].mean() if len(epochs) > 1 else epochs[0])
    record = {
        "case": case.name, "rows": args.rows, "guest_features": case.guest_features,
        "host_features": case.host_features, "key_bits": case.key_bits, "encrypt": case.encrypt, "cipher": case.cipher,
        "model": case.model, "residual": _residual(case),
        "batch_size": args.batch_size, "epoch_seconds": [round(float(s), 2) for s in epochs],
        "steady_epoch_seconds": round(steady, 2), "job_wall_seconds": round(result.seconds, 1),
        "job_cpu_seconds": round(job_cpu, 1), "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }
    if case.peer_seconds:
        record.update(peer=case.peer, peer_seconds=case.peer_seconds,
                      speedup_vs_peer=round(case.peer_seconds / steady, 2))
    if case.target_seconds:
        record.update(target_seconds=case.target_seconds, meets_target=steady <= case.target_seconds)
    return record


def _residual(case: Case) -> str:
    """The residual the job trains with (the job default unless the case names one); "-" without an arbiter."""
    if case.model != "hetero_lr":
        return "-"
    return case.residual or ("taylor" if case.cipher == "ckks" else "sigmoid")


def _children_cpu() -> float:
    """CPU seconds of finished child processes (the parties and, through them, their workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def encryption_overheads(records: list[dict]) -> dict[str, float]:
    """``case -> encrypted / plain`` steady epoch time, where both ran."""
    by_name = {r["case"]: r for r in records}
    return {name: round(r["steady_epoch_seconds"] / by_name[f"{name}-plain"]["steady_epoch_seconds"], 1)
            for name, r in by_name.items() if f"{name}-plain" in by_name}


def print_table(records: list[dict], overheads: dict[str, float], console: Console) -> None:
    table = Table(title=f"vertical LR, seconds per epoch ({os.cpu_count()} cores, one process per party)")
    for column in ("case", "rows", "features g+h", "key", "batch", "epochs (s)", "steady s/epoch",
                   "job CPU s / wall s", "load", "peer s/epoch", "peer / ours", "target"):
        table.add_column(column)
    for r in records:
        target = "-"
        if "target_seconds" in r:
            target = f"<= {r['target_seconds']:g} {'met' if r['meets_target'] else 'MISSED'}"
        table.add_row(
            r["case"], f"{r['rows']:,}", f"{r['guest_features']}+{r['host_features']}",
            ("ckks" if r["cipher"] == "ckks" else str(r["key_bits"])) if r["encrypt"] else "plain", str(r["batch_size"]),
            " ".join(f"{s:.1f}" for s in r["epoch_seconds"]), f"{r['steady_epoch_seconds']:.1f}",
            f"{r['job_cpu_seconds']:.0f} / {r['job_wall_seconds']:.0f}",
            f"{r['load_before']:.1f}->{r['load_after']:.1f}",
            f"{r['peer_seconds']:g} ({r['peer']})" if "peer" in r else "-",
            f"{r['speedup_vs_peer']:.2f}x" if "peer" in r else "-", target)
    console.print(table)
    for name, ratio in overheads.items():
        console.print(f"encryption overhead {name}: {ratio}x the plaintext job's epoch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "isthmus-bench" / "vertical_lr")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "isthmus-bench" / "vertical_lr-runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args()
    console = Console(stderr=args.json, width=None if sys.stdout.isatty() else 150)
    records = []
    for name in args.cases:
        started = time.monotonic()
        records.append(run_case(CASES[name], args, console))
        console.print(f"{name}: steady {records[-1]['steady_epoch_seconds']} s/epoch "
                      f"({time.monotonic() - started:.0f} s with setup)")
    overheads = encryption_overheads(records)
    if args.json:
        json.dump({"benchmark": "vertical_lr", "cpu_count": os.cpu_count(), "cases": records,
                   "encryption_overhead": overheads}, sys.stdout)
        print()
    else:
        print_table(records, overheads, console)


if __name__ == "__main__":
    main()
