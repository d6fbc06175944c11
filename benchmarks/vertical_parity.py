"""Parity of vertical linear models against scikit-learn on the pooled data (issue 3 targets).

    python benchmarks/vertical_parity.py                      # every data set, both residual modes
    python benchmarks/vertical_parity.py --datasets breast --modes sigmoid --key-bits 2048
    python benchmarks/vertical_parity.py --json               # exactly one JSON object on stdout
    python benchmarks/vertical_parity.py --datasets breast --modes sigmoid sshe   # beside hetero_lr_sshe

Each run is a real job: guest, host and arbiter as separate processes over mutual TLS, ECDH PSI,
Paillier-encrypted training, joint evaluation, then ``isthmus.jobs.parity.run_parity``'s centralised
scikit-learn model (same L2 penalty and scaling) on the pooled rows. The metric is measured on
every shared row for both. Targets: AUC delta <= 0.005 (aim 0.002), R2 and accuracy delta <= 0.01.

Logistic models run in both residual modes. ``taylor`` (the white paper's, the default) trains the
second-order Taylor loss, whose optimum is not the logistic one: on default_credit and give_credit
that alone costs more than the target (measured in plaintext: 0.004 and 0.029 AUC), so the target
there is for ``residual: sigmoid``. The hyper-parameters below were tuned in plaintext mode
(encryption changes the weights only by fixed-point rounding); give_credit's heavy-tailed,
collinear columns make its AUC move by ~1e-3 between weight vectors whose objectives differ by
1e-5, hence the learning-rate decay and the many epochs there.

Mode ``sshe`` runs the arbiter-free ``hetero_lr_sshe`` (guest and host only) on the same data, with its
own step sizes (``SSHE_TRAIN``): the same objective, so the same centralised reference.

Multiclass (issue 16): scikit-learn's digits (1,797 8x8 images, 10 classes), ``digits`` split 32/32 pixels
between guest and host, ``digits3`` 22/21/21 between guest and two hosts; the metric is accuracy against
scikit-learn's default (multinomial) LogisticRegression with the same penalty. ``sigmoid`` trains one
softmax model, ``taylor`` the white paper's one-vs-rest, ``sshe`` one softmax model on shares. At
``precision`` 8 a safe batch (16 rows x 32 pixels x 2.7 for ten classes, batches.py) fits the rows.
Measured (``--datasets digits digits3 --modes sigmoid`` then ``taylor``, 1024-bit keys, load 10-20 on
the shared 2 cores): softmax 0.98219 against 0.98219 pooled on both splits (1211 s, 923 s); the
one-vs-rest Taylor model 0.94546 (delta 0.037) on both, the same as a second-order Taylor softmax's
optimum (0.950 computed pooled): the Taylor loss, not one-vs-rest, is what costs the accuracy.
``sshe`` on digits (``--datasets digits --modes sshe`` and ``digits3`` in a second process at the same
time, 1024-bit keys, load 10-24 on the shared 2 cores): digits 0.97607 against 0.98219 (delta 0.0061,
3334 s; epochs of 1110, 1067 and 1118 s); digits3 0.97885 against 0.98219 (delta 0.0033, 3442 s;
epochs of 1215, 1113 and 1075 s). The float64 twin of the protocol predicted 0.9766 (rows in scikit-learn's order).
About 180 products of shared values per row and epoch at ten classes: ~0.6 s per row and epoch here.

Data: ../shared/datasets/fate (see its README). give_credit_homo_test.csv is split vertically
(guest: id, y, x0..x4; host: id, x5..x9) into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fate"
#: Where each party's pixels of the digits data sets end: guest first, then the hosts.
DIGITS_SPLITS = {"digits": [32, 64], "digits3": [22, 43, 64]}
MODES = ("taylor", "sigmoid", "sshe")
#: hetero_lr_sshe's options per data set: plain SGD (the only optimiser on shares), tuned on the float64
#: twin of the protocol (tests/test_sshe_lr.py checks the protocol reproduces it to 1e-5 in the weights).
SSHE_TRAIN = {"epochs": 10, "batch_size": 256, "learning_rate": 0.5}
#: hetero_lr_sshe on digits: one softmax model on shares (sshe_lr/softmax.py), ~180 products of shared
#: values per row and epoch, so few epochs of small batches (on the float64 twin: 0.9766 against 0.9822).
SSHE_DIGITS_TRAIN = {"epochs": 3, "batch_size": 32, "learning_rate": 0.5}
TARGETS = {"auc": (0.005, 0.002), "r2": (0.01, 0.01), "accuracy": (0.01, 0.01)}  # metric -> (target, aim)
#: Multiclass: full batches (the safe floor leaves one per epoch); Adam reaches the pooled optimum in 30.
DIGITS_TRAIN = {"optimizer": "adam", "learning_rate": 0.1, "batch_size": 0, "epochs": 30, "precision": 8}


@dataclass(frozen=True)
class Dataset:
    name: str
    model: str  # hetero_lr or hetero_linr
    train: dict = field(default_factory=dict)


SETS = {d.name: d for d in [
    # 569 rows beside a 20-column host: the batch floor (protocols/hetero_linear/batches.py) makes one
    # batch per epoch, so as many epochs as the 128-row batches used to make steps
    Dataset("breast", "hetero_lr",
            {"optimizer": "adam", "learning_rate": 0.05, "batch_size": 0, "epochs": 100}),
    Dataset("default_credit", "hetero_lr",
            {"optimizer": "sgd", "learning_rate": 0.6, "decay": 0.01, "batch_size": 2048, "epochs": 20}),
    Dataset("give_credit", "hetero_lr",
            {"optimizer": "sgd", "learning_rate": 1.0, "decay": 0.01, "batch_size": 2048, "epochs": 40}),
    Dataset("student", "hetero_linr",
            {"optimizer": "sgd", "learning_rate": 0.15, "batch_size": 0, "epochs": 100}),
    Dataset("digits", "hetero_lr", DIGITS_TRAIN),
    Dataset("digits3", "hetero_lr", DIGITS_TRAIN),
]}


def party_files(dataset: str, folder: Path) -> tuple[Path, list[Path]]:
    """The guest's CSV and the hosts'; give_credit's are made from the one homo file, digits' from scikit-learn."""
    if dataset in DIGITS_SPLITS:
        return digits_files(DIGITS_SPLITS[dataset], folder / dataset)
    if dataset != "give_credit":
        return DATASETS / f"{dataset}_hetero_guest.csv", [DATASETS / f"{dataset}_hetero_host.csv"]
    table = pd.read_csv(DATASETS / "give_credit_homo_test.csv")
    guest, host = folder / "give_credit_guest.csv", folder / "give_credit_host.csv"
    table[["id", "y", *[f"x{i}" for i in range(5)]]].to_csv(guest, index=False)
    table[["id", *[f"x{i}" for i in range(5, 10)]]].to_csv(host, index=False)
    return guest, [host]


def digits_files(ends: list[int], folder: Path) -> tuple[Path, list[Path]]:
    """scikit-learn's digits, pixels 0 .. ends[0] at the guest (with the label), the next ranges at the hosts."""
    from sklearn.datasets import load_digits

    digits = load_digits(as_frame=True)
    pixels = digits.data.assign(id=[f"img-{i:04d}" for i in range(len(digits.target))])
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, (start, stop) in enumerate(zip([0, *ends], ends)):
        table = pixels[["id", *digits.data.columns[start:stop]]]
        if number == 0:
            table = table.assign(y=digits.target)
        paths.append(folder / f"party{number}.csv")
        table.to_csv(paths[-1], index=False)
    return paths[0], paths[1:]


def run_one(dataset: Dataset, mode: str | None, key_bits: int, out: Path, console: Console) -> dict:
    from isthmus.jobs.local import loopback_parties, write_job
    from isthmus.jobs.parity import run_parity

    guest, hosts = party_files(dataset.name, out)
    parties = {"guest": {"data": {"path": str(guest), "id": "id", "label": "y"}}}
    for number, host in enumerate(hosts, start=1):
        parties["host" if len(hosts) == 1 else f"host-{number}"] = {"data": {"path": str(host), "id": "id"}}
    if mode == "sshe":
        steps = SSHE_DIGITS_TRAIN if dataset.name in DIGITS_SPLITS else SSHE_TRAIN
        train = {"model": "hetero_lr_sshe", **steps, "penalty": "l2", "alpha": 0.01, "key_bits": key_bits}
    else:
        train = {"model": dataset.model, **dataset.train, "penalty": "l2", "alpha": 0.01, "tol": 0.0,
                 "key_bits": key_bits}
        parties["arbiter"] = {}
        if mode:
            train["residual"] = mode
    name = f"{dataset.name}-{mode or 'linear'}"
    job = {"job": f"parity-{name}".replace("_", "-"),
           "parties": loopback_parties(parties),
           "steps": [{"intersect": {"method": "ecdh"}}, {"train": train}, {"evaluate": {}}]}
    report = run_parity(write_job(out / name / "job.yaml", job), out / name / "run", console=console)
    target, aim = TARGETS[report["metric"]]
    return {"dataset": dataset.name, "model": train["model"], "residual": mode or "-", "metric": report["metric"],
            "federated": report["federated"], "centralized": report["centralized"], "delta": report["delta"],
            "target": target, "aim": aim, "meets_target": report["delta"] <= target,
            "seconds": report["seconds"], "key_bits": key_bits, "train": train}


def print_table(records: list[dict], console: Console) -> None:
    table = Table(title=f"vertical linear models vs scikit-learn on pooled data ({records[0]['key_bits']}-bit keys)")
    for column in ("dataset", "model", "residual", "metric", "federated", "centralised", "delta", "target", "seconds"):
        table.add_column(column)
    for r in records:
        verdict = "met" if r["meets_target"] else "MISSED"
        table.add_row(r["dataset"], r["model"], r["residual"], r["metric"], f"{r['federated']:.5f}",
                      f"{r['centralized']:.5f}", f"{r['delta']:.5f}", f"<= {r['target']:g} {verdict}",
                      f"{r['seconds']:.0f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(SETS), default=list(SETS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="residual modes of the logistic models (linear regression has none)")
    parser.add_argument("--key-bits", type=int, default=1024)
    parser.add_argument("--out", type=Path, help="run folder (default: a fresh temporary folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = parser.parse_args()
    if not (DATASETS / "README.md").exists():
        sys.exit(f"the shared FATE data sets are not at {DATASETS}")
    console = Console(stderr=args.json, width=None if sys.stdout.isatty() else 150)
    out = args.out or Path(tempfile.mkdtemp(prefix="isthmus-parity-"))
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for name in args.datasets:
        dataset = SETS[name]
        for mode in (args.modes if dataset.model == "hetero_lr" else [None]):
            started = time.monotonic()
            records.append(run_one(dataset, mode, args.key_bits, out, console))
            console.print(f"{name} {mode or ''}: delta {records[-1]['delta']:.5f} ({time.monotonic() - started:.0f} s)")
    if args.json:
        summary = {"benchmark": "vertical_parity", "key_bits": args.key_bits, "out": str(out), "runs": records}
        json.dump(summary, sys.stdout)
        print()
    else:
        print_table(records, console)
        console.print(f"runs in {out}")


if __name__ == "__main__":
    main()
