"""Contribution measurement on real data: the Shapley sanity targets and label-flip detection.

Vertical, default_credit (FATE's hetero split, 3000 rows): the guest holds the label and its 13
columns, host-1 FATE's 10 host columns, host-2 an identical copy of them, host-3 10 columns of noise.
The `contribution` step trains all 16 coalitions (13 federatedly, Paillier 1024-bit). Targets: the
noise host's share <= 2%, the identical hosts' shares within 1 point of each other, the values adding
up to v(N) - v(empty). Peer: the same Shapley values computed centrally, scikit-learn's
LogisticRegression on the pooled columns of each coalition with the same rows held out (what one
would do if pooling were allowed).

Horizontal, default_credit (FATE's 3 homo files pooled, 24000 rows, re-split IID over 10 clients;
clients 3 and 7 have their labels flipped; the aggregator holds the 6000-row test file): 10 rounds of
FedAvg, then GTG-Shapley from the recorded updates. Target: the 2 flipped clients rank last. Peer:
exact Shapley values by retraining FedAvg on each of the 1024 coalitions (in-process simulation),
timed against the job and compared value by value.

Both run every party of the job in this process (threads over the in-process hub, the same codec and
protocols as processes over gRPC). Timings depend on machine load: other work shares the 2 cores.

    .venv/bin/python benchmarks/contribution.py [--data ../shared/datasets/fate] [--part vertical|horizontal]
                                                [--out runs/bench-contribution]
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from isthmus.horizontal import FedAvg, LinearClient, LinearModel, simulate
from isthmus.horizontal.partition import iid
from isthmus.incentive.shapley import exact_shapley
from isthmus.algorithms.registry import algorithm
from isthmus.jobs.runner import run_party
from isthmus.jobs.spec import parse_job
from isthmus.transport.local import LocalHub

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fate"
VERTICAL_ROWS = 3000
TRAIN = {"model": "hetero_lr", "epochs": 5, "batch_size": 512, "learning_rate": 0.15, "validation_fraction": 0.3,
         "key_bits": 1024}
FLIPPED = ("client-03", "client-07")
HORIZONTAL = {"rounds": 10, "local_epochs": 1, "batch_size": 64, "learning_rate": 0.05}


def run_in_process(job: dict, folder: Path) -> Path:
    """Every party of the job in its own thread over an in-process hub; returns the run folder."""
    shutil.rmtree(folder / "run", ignore_errors=True)
    spec = parse_job(job, base_dir=folder)
    hub, errors = LocalHub(list(spec.parties)), {}

    def party(name: str) -> None:
        try:
            run_party(spec, name, hub.channel(name, spec.name), folder / "run" / name)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors[name] = exc

    threads = [threading.Thread(target=party, args=(name,)) for name in spec.parties]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"job failed: {errors}")
    return folder / "run"


# --- vertical ------------------------------------------------------------------------------------


def vertical(data: Path, out: Path) -> bool:
    folder = out / "vertical"
    guest = pd.read_csv(data / "default_credit_hetero_guest.csv").sample(VERTICAL_ROWS, random_state=0)
    host = pd.read_csv(data / "default_credit_hetero_host.csv").set_index("id").loc[guest["id"]].reset_index()
    noise = pd.DataFrame(np.random.default_rng(1).normal(size=(VERTICAL_ROWS, 10)), columns=[f"n{i}" for i in range(10)])
    tables = {"guest": guest, "host-1": host, "host-2": host.copy(), "host-3": noise.assign(id=guest["id"].to_numpy())}
    folder.mkdir(parents=True, exist_ok=True)
    parties = {"arbiter": {"address": "127.0.0.1:1"}}
    for n, (name, table) in enumerate(tables.items(), start=2):
        table.to_csv(folder / f"{name}.csv", index=False)
        parties[name] = {"address": f"127.0.0.1:{n}",
                         "data": {"path": f"{name}.csv", "id": "id", **({"label": "y"} if name == "guest" else {})}}
    job = {"job": "bench-contribution", "parties": parties,
           "steps": [{"train": TRAIN}, {"evaluate": {}}, {"contribution": {"budget": 100}}]}
    began = time.perf_counter()
    run = run_in_process(job, folder)
    seconds = time.perf_counter() - began
    report = json.loads((run / "guest" / "contribution.json").read_text())

    began = time.perf_counter()
    central = central_shapley(tables, set(pd.read_csv(run / "guest" / "predictions.csv", dtype={"id": str})["id"]))
    central_seconds = time.perf_counter() - began

    values, shares = report["values"], report["shares"]
    print(f"vertical: default_credit, {VERTICAL_ROWS} rows, AUC {report['empty_value']:.4f} (no data) -> "
          f"{report['grand_value']:.4f} (everyone); job with contribution step {seconds:.0f} s "
          f"(central Shapley peer {central_seconds:.1f} s, ratio {seconds / central_seconds:.0f}x)")
    print(f"{'party':<8} {'value':>9} {'share':>7} {'leave-1-out':>12} {'central value':>14}")
    for party in sorted(values):
        print(f"{party:<8} {values[party]:>+9.4f} {shares[party]:>7.2%} {report['leave_one_out'][party]:>+12.4f} "
              f"{central[party]:>+14.4f}")
    efficiency = abs(sum(values.values()) - (report["grand_value"] - report["empty_value"]))
    targets = {
        "noise host share <= 2%": shares["host-3"] <= 0.02,
        "identical hosts within 1 point": abs(shares["host-1"] - shares["host-2"]) <= 0.01,
        "values add up to v(N) - v(empty)": efficiency < 1e-9,
    }
    print(f"identical hosts: shares {shares['host-1']:.4f} vs {shares['host-2']:.4f}; "
          f"|sum(values) - gain| = {efficiency:.1e}")
    return _verdicts(targets)


def central_shapley(tables: dict[str, pd.DataFrame], evaluation_ids: set[str]) -> dict[str, float]:
    """The peer: each coalition trained on pooled columns with scikit-learn, same rows held out."""
    guest = tables["guest"]
    y = guest["y"].to_numpy(float)
    evaluation = guest["id"].astype(str).isin(evaluation_ids).to_numpy()
    columns = {name: table.drop(columns=[c for c in ("id", "y") if c in table]).to_numpy(float)
               for name, table in tables.items()}

    def value(coalition: frozenset[str]) -> float:
        if not coalition:
            return 0.5
        X = np.hstack([columns[name] for name in sorted(coalition)])
        model = algorithm(TRAIN["model"])
        options = model.Options.parse({k: v for k, v in TRAIN.items() if k != "model"}, where="benchmark")
        reference = model.reference(options, "binary", X[~evaluation], y[~evaluation], X[evaluation])
        return float(roc_auc_score(y[evaluation], reference.scores))

    return exact_shapley(sorted(tables), value).values


# --- horizontal ----------------------------------------------------------------------------------


def horizontal(data: Path, out: Path) -> bool:
    folder = out / "horizontal"
    folder.mkdir(parents=True, exist_ok=True)
    pooled = pd.concat([pd.read_csv(data / f"default_credit_homo_{name}.csv")
                        for name in ("guest", "host_1", "host_2")], ignore_index=True)
    shards = iid(len(pooled), 10, seed=0)
    names = [f"client-{i:02d}" for i in range(1, 11)]
    parties = {"aggregator": {"address": "127.0.0.1:1",
                              "data": {"path": str(data / "default_credit_homo_test.csv"), "id": "id", "label": "y"}}}
    parts = []
    for n, (name, rows) in enumerate(zip(names, shards), start=2):
        shard = pooled.iloc[rows].copy()
        if name in FLIPPED:
            shard["y"] = 1 - shard["y"]
        shard.to_csv(folder / f"{name}.csv", index=False)
        parts.append(shard)
        parties[name] = {"address": f"127.0.0.1:{n}", "data": {"path": f"{name}.csv", "id": "id", "label": "y"}}
    job = {"job": "bench-gtg", "parties": parties,
           "steps": [{"train": {"model": "homo_lr", **HORIZONTAL}},
                     {"contribution": {"reveal_updates": True, "budget": 100}}]}
    began = time.perf_counter()
    run = run_in_process(job, folder)
    seconds = time.perf_counter() - began
    report = json.loads((run / "aggregator" / "contribution.json").read_text())

    began = time.perf_counter()
    retrained = retrained_shapley(parts, pd.read_csv(data / "default_credit_homo_test.csv"))
    peer_seconds = time.perf_counter() - began

    values, loo = report["values"], report["leave_one_out"]
    ranking = sorted(values, key=values.get)
    print(f"\nhorizontal: default_credit, 10 IID clients, {', '.join(FLIPPED)} with flipped labels; "
          f"AUC {report['empty_value']:.4f} -> {report['grand_value']:.4f}; training + GTG-Shapley {seconds:.1f} s; "
          f"peer: exact Shapley retraining all 1024 coalitions {peer_seconds:.1f} s ({peer_seconds / seconds:.1f}x)")
    print(f"{'client':<10} {'gtg value':>10} {'share':>7} {'loo (updates)':>14} {'retrained shapley':>18}")
    for client in sorted(values, key=lambda c: -values[c]):
        print(f"{client:<10} {values[client]:>+10.4f} {report['shares'][client]:>7.2%} {loo[client]:>+14.4f} "
              f"{retrained[client]:>+18.4f}")
    correlation = np.corrcoef([values[c] for c in sorted(values)], [retrained[c] for c in sorted(values)])[0, 1]
    print(f"GTG vs retrained Shapley: Pearson {correlation:.3f}; {report['method']}, "
          f"{report['permutations'] or 'no'} sampled orders over {HORIZONTAL['rounds']} rounds")
    return _verdicts({"the 2 flipped clients rank last": set(ranking[:2]) == set(FLIPPED)})


def retrained_shapley(parts: list[pd.DataFrame], test: pd.DataFrame) -> dict[str, float]:
    """The peer: exact Shapley values with every coalition's model trained again by FedAvg (2^10 trainings)."""
    model = LinearModel(parts[0].shape[1] - 2, learning_rate=HORIZONTAL["learning_rate"],
                        batch_size=HORIZONTAL["batch_size"])
    X_test, y_test = test.drop(columns=["id", "y"]).to_numpy(float), test["y"].to_numpy(float)
    clients = {f"client-{i:02d}": LinearClient(model, p.drop(columns=["id", "y"]).to_numpy(float),
                                               p["y"].to_numpy(float), seed=i - 1)
               for i, p in enumerate(parts, start=1)}

    def auc_of(coalition: frozenset[str]) -> float:
        if not coalition:
            return 0.5  # the initial model scores every row alike
        members = {name: clients[name] for name in sorted(coalition)}
        result = simulate(members, FedAvg(fit_config={"epochs": 1}, min_fit_clients=1), HORIZONTAL["rounds"],
                          secure=False, min_clients=1)
        return float(roc_auc_score(y_test, model.predict(result.parameters, X_test)))

    return exact_shapley(sorted(clients), auc_of).values


def _verdicts(targets: dict[str, bool]) -> bool:
    for name, ok in targets.items():
        print(f"  target: {name:<40} {'ok' if ok else 'MISSED'}")
    return all(targets.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--part", choices=("vertical", "horizontal", "both"), default="both")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-contribution"), help="where the jobs run")
    args = parser.parse_args()
    results = [part(args.data, args.out.resolve()) for name, part in (("vertical", vertical), ("horizontal", horizontal))
               if args.part in (name, "both")]
    print("\nall targets met" if all(results) else "\nSOME TARGETS MISSED")


if __name__ == "__main__":
    main()
