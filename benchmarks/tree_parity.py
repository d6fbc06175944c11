"""Lossless parity of vertical SecureBoost: federated vs the plaintext reference booster vs XGBoost.

On FATE's shared data sets (breast, default_credit, give_credit split guest x0-x4 / host x5-x9,
student regression), by 5-fold cross-validation (every row is predicted once, by the model that did
not train on it; a single small hold-out makes AUC too noisy to compare at 0.005):

* federated (guest + host over the in-process hub, Paillier) vs ``SecureBoostReference`` with the
  same bins: held-out predictions must agree to 1e-6 (they are the same trees);
* federated vs XGBoost (``tree_method=hist``, same trees, depth, learning rate, max_bin) on the
  out-of-fold predictions: AUC delta <= 0.005, R2 delta <= 0.01 (student).

XGBoost is the named peer, measured in the same run (``pip install xgboost``; the ``bench`` extra).

    python benchmarks/tree_parity.py [--key-bits 1024] [--trees 10] [--folds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold

from isthmus.transport.local import LocalHub
from isthmus.tree.booster import SecureBoostReference
from isthmus.algorithms.hetero_secureboost.guest import HeteroSecureBoostGuest
from isthmus.algorithms.hetero_secureboost.host import HeteroSecureBoostHost

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fate"
PREDICTION_TOLERANCE = 1e-6
AUC_TOLERANCE = 0.005
R2_TOLERANCE = 0.01


def load(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Guest features, host features, label, task."""
    if name == "give_credit":
        table = pd.read_csv(DATA / "give_credit_homo_test.csv")
        return (table[[f"x{i}" for i in range(5)]].to_numpy(float), table[[f"x{i}" for i in range(5, 10)]].to_numpy(float),
                table["y"].to_numpy(float), "binary")
    guest = pd.read_csv(DATA / f"{name}_hetero_guest.csv")
    host = pd.read_csv(DATA / f"{name}_hetero_host.csv")
    if not (guest["id"].to_numpy() == host["id"].to_numpy()).all():
        raise SystemExit(f"{name}: guest and host rows are not aligned")
    task = "regression" if name == "student" else "binary"
    return (guest.drop(columns=["id", "y"]).to_numpy(float), host.drop(columns=["id"]).to_numpy(float),
            guest["y"].to_numpy(float), task)


def federated(X_guest, X_host, y, train, test, params: dict, key_bits: int) -> tuple[np.ndarray, float]:
    """Predictions for rows ``test`` of a guest + host fit on rows ``train`` over the in-process hub,
    and the fit's seconds."""
    hub = LocalHub(["guest", "host"])
    guest = HeteroSecureBoostGuest(key_bits=key_bits, **params)
    host = HeteroSecureBoostHost(params["bins"])
    failure = []

    def host_role():
        try:
            channel = hub.channel("host")
            host.fit(channel, X_host[train])
            host.serve_predict(channel, X_host[test])
        except Exception as exc:  # noqa: BLE001 - re-raised by the main thread
            failure.append(exc)

    thread = threading.Thread(target=host_role)
    thread.start()
    channel = hub.channel("guest")
    start = time.perf_counter()
    guest.fit(channel, X_guest[train], y[train], hosts=["host"])
    seconds = time.perf_counter() - start
    prediction = guest.decision_function(channel, X_guest[test])
    thread.join()
    if failure:
        raise failure[0]
    return guest.ensemble_.objective.transform(prediction), seconds


def reference_prediction(X_guest, X_host, y, train, test, params: dict) -> np.ndarray:
    reference = SecureBoostReference(**params).fit([X_guest[train], X_host[train]], y[train])
    return reference.ensemble_.objective.transform(reference.decision_function([X_guest[test], X_host[test]]))


def xgboost_prediction(X, y, train, test, params: dict) -> np.ndarray:
    import xgboost

    common = {"n_estimators": params["n_trees"], "max_depth": params["max_depth"], "learning_rate": params["learning_rate"],
              "max_bin": params["bins"], "tree_method": "hist", "reg_lambda": 1.0, "min_child_weight": 1.0}
    if params["objective"] == "regression":
        return xgboost.XGBRegressor(**common).fit(X[train], y[train]).predict(X[test])
    return xgboost.XGBClassifier(**common).fit(X[train], y[train]).predict_proba(X[test])[:, 1]


def run(name: str, params: dict, key_bits: int, folds: int) -> dict:
    X_guest, X_host, y, task = load(name)
    params = {**params, "objective": task}
    splitter = (KFold if task == "regression" else StratifiedKFold)(folds, shuffle=True, random_state=0)
    fed, ref, xgb = (np.zeros(len(y)) for _ in range(3))
    seconds = 0.0
    for train, test in splitter.split(X_guest, y):
        fed[test], fit_seconds = federated(X_guest, X_host, y, train, test, params, key_bits)
        seconds += fit_seconds
        ref[test] = reference_prediction(X_guest, X_host, y, train, test, params)
        xgb[test] = xgboost_prediction(np.hstack([X_guest, X_host]), y, train, test, params)
    score, metric = (r2_score, "r2") if task == "regression" else (roc_auc_score, "auc")
    result = {"task": task, "rows": len(y), "fit_s_per_tree": seconds / folds / params["n_trees"], "metric": metric,
              "max_diff_vs_reference": float(np.abs(fed - ref).max()),
              "federated": score(y, fed), "reference": score(y, ref), "xgboost": score(y, xgb)}
    result["delta_vs_xgboost"] = result["federated"] - result["xgboost"]
    tolerance = R2_TOLERANCE if task == "regression" else AUC_TOLERANCE
    result["pass"] = bool(result["max_diff_vs_reference"] <= PREDICTION_TOLERANCE and abs(result["delta_vs_xgboost"]) <= tolerance)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-bits", type=int, default=1024)
    parser.add_argument("--trees", type=int, default=10)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=0.3)
    parser.add_argument("--bins", type=int, default=32)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--data", action="append", choices=["breast", "default_credit", "give_credit", "student"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"data sets not found at {DATA}")
    params = {"n_trees": args.trees, "max_depth": args.depth, "learning_rate": args.learning_rate, "bins": args.bins}
    results = {name: run(name, params, args.key_bits, args.folds) for name in args.data or ["breast", "default_credit", "give_credit", "student"]}
    if args.json:
        print(json.dumps({"params": params, "key_bits": args.key_bits, "results": results}))
        return
    print(f"vertical SecureBoost parity, {params}, {args.key_bits}-bit keys, {args.folds}-fold out-of-fold predictions")
    print(f"{'data':<16}{'rows':>7}{'s/tree':>8}{'max|fed-ref|':>14}{'metric':>8}{'federated':>11}{'xgboost':>10}{'delta':>9}  pass")
    for name, r in results.items():
        print(f"{name:<16}{r['rows']:>7}{r['fit_s_per_tree']:>8.2f}{r['max_diff_vs_reference']:>14.2e}{r['metric']:>8}"
              f"{r['federated']:>11.4f}{r['xgboost']:>10.4f}{r['delta_vs_xgboost']:>+9.4f}  {r['pass']}")


if __name__ == "__main__":
    main()
