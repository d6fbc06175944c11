"""Horizontal parity: FedAvg (secure aggregation on) against the same model trained on the union.

FATE's horizontal splits: default_credit_homo_{guest,host_1,host_2} (3 parties) and
breast_homo_{guest,host} (2 parties), each scored on its own *_homo_test.csv. The reference is the
same numpy logistic regression with the same hyper-parameters trained centrally for as many epochs as
the federation ran rounds x local epochs; scikit-learn's LogisticRegression is shown for context.
Target: |AUC_fed - AUC_central| <= 0.005. Non-IID: the default_credit union re-split over 10
clients with Dirichlet(alpha = 0.5) label skew, reported.

    .venv/bin/python benchmarks/horizontal_parity.py [--data ../shared/datasets/fate]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from isthmus.horizontal import FedAvg, LinearClient, LinearModel, simulate
from isthmus.horizontal.partition import dirichlet_label_skew

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fate"
ROUNDS, LOCAL_EPOCHS = 20, 1


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    table = pd.read_csv(path)
    return table.drop(columns=["id", "y"]).to_numpy(float), table["y"].to_numpy(float)


def compare(
    name: str, parts: list[tuple[np.ndarray, np.ndarray]], test: tuple[np.ndarray, np.ndarray], model: LinearModel
) -> float:
    X_test, y_test = test
    began = time.perf_counter()
    clients = [LinearClient(model, X, y, seed=i) for i, (X, y) in enumerate(parts)]
    fed = simulate(clients, FedAvg(fit_config={"epochs": LOCAL_EPOCHS}), ROUNDS)  # secure aggregation on
    seconds = time.perf_counter() - began
    X_all = np.vstack([X for X, _ in parts])
    y_all = np.concatenate([y for _, y in parts])
    central = model.train(
        model.initial_parameters(), X_all, y_all, np.random.default_rng(0), epochs=ROUNDS * LOCAL_EPOCHS
    )
    sklearn_auc = roc_auc_score(y_test, LogisticRegression(max_iter=2000).fit(X_all, y_all).decision_function(X_test))
    fed_auc = roc_auc_score(y_test, model.predict(fed.parameters, X_test))
    central_auc = roc_auc_score(y_test, model.predict(central, X_test))
    delta = abs(fed_auc - central_auc)
    verdict = "ok" if delta <= 0.005 else "MISSED"
    print(
        f"{name:<42} {len(parts):>3} {fed_auc:>9.4f} {central_auc:>11.4f} {delta:>8.4f} {verdict:>6} "
        f"{sklearn_auc:>9.4f} {seconds:>7.2f}"
    )
    return delta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    if not (args.data / "README.md").exists():
        raise SystemExit(f"FATE data sets not found at {args.data}")
    print(
        f"FedAvg, {ROUNDS} rounds x {LOCAL_EPOCHS} local epoch, secure aggregation on; central = same model, {ROUNDS * LOCAL_EPOCHS} epochs"
    )
    print(
        f"{'data set':<42} {'clients':>3} {'fed AUC':>9} {'central AUC':>11} {'delta':>8} {'<=.005':>6} {'sklearn':>9} {'fed s':>7}"
    )

    credit = [read(args.data / f"default_credit_homo_{p}.csv") for p in ("guest", "host_1", "host_2")]
    credit_test = read(args.data / "default_credit_homo_test.csv")
    credit_model = LinearModel(credit_test[0].shape[1], learning_rate=0.02, batch_size=64)
    compare("default_credit (FATE split)", credit, credit_test, credit_model)

    breast = [read(args.data / f"breast_homo_{p}.csv") for p in ("guest", "host")]
    breast_test = read(args.data / "breast_homo_test.csv")
    compare(
        "breast (FATE split)",
        breast,
        breast_test,
        LinearModel(breast_test[0].shape[1], learning_rate=0.05, batch_size=16, l2=1e-3),
    )

    X_all = np.vstack([X for X, _ in credit])
    y_all = np.concatenate([y for _, y in credit])
    shards = dirichlet_label_skew(y_all, 10, alpha=0.5, seed=0, min_rows=50)
    positives = ", ".join(f"{y_all[s].mean():.2f}" for s in shards)
    compare(
        "default_credit Dirichlet a=0.5 (non-IID)", [(X_all[s], y_all[s]) for s in shards], credit_test, credit_model
    )
    print(f"  non-IID shards: sizes {[len(s) for s in shards]}, positive rates [{positives}]")


if __name__ == "__main__":
    main()
