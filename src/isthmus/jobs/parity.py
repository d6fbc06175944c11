"""Parity: the federated job against the same model trained centrally on the pooled data.

Pooling is for local benchmarking only: it reads every party's file, which no party of a real
federation can do. The reference uses the guest's evaluation rows (from its predictions.csv) and
trains on the other shared rows, with the hyper-parameters mapped to scikit-learn's conventions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from isthmus.data.table import read_table
from isthmus.errors import ConfigError
from isthmus.jobs.launcher import launch
from isthmus.jobs.spec import JobSpec
from isthmus.ml.metrics import evaluate

PRIMARY_METRIC = {"binary": "auc", "multiclass": "accuracy", "regression": "r2"}


def run_parity(job_path: str | Path, out_dir: str | Path, *, console: Console | None = None) -> dict:
    result = launch(job_path, out_dir, console=console)
    spec = result.spec
    guest = spec.one("guest")
    train = spec.step("train")
    if train is None:
        raise ConfigError("parity needs a job with a train step")
    guest_dir = result.party_dir(guest)
    model = json.loads((guest_dir / "model.json").read_text())
    task = model["task"]
    predictions = pd.read_csv(guest_dir / "predictions.csv", dtype={"id": str})
    ids, X, y = pooled_data(spec)
    evaluation = np.isin(ids, predictions["id"].to_numpy())
    training = ~evaluation if (train.options.get("validation_fraction") or 0) > 0 else np.ones(len(ids), bool)
    reference = centralized_scores(train.options["model"], task, train.options, X, y, training, evaluation)
    metric = PRIMARY_METRIC[task]
    y_eval = y[evaluation]
    if task == "multiclass":
        y_eval = np.searchsorted(np.unique(y), y_eval)
    centralized = evaluate(task, y_eval, reference, metrics=[metric])[metric]
    federated = json.loads((guest_dir / "metrics.json").read_text())["metrics"][metric]
    report = {"metric": metric, "federated": federated, "centralized": centralized,
              "delta": abs(federated - centralized), "model": train.options["model"],
              "train_rows": int(training.sum()), "evaluation_rows": int(evaluation.sum()),
              "seconds": round(result.seconds, 2)}
    (Path(out_dir) / "parity.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def pooled_data(spec: JobSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every guest and host table joined on the id (inner join), guest columns first."""
    guest = spec.one("guest")
    frames, label = [], None
    for name in [guest, *spec.with_role("host")]:
        data = spec.party(name).data
        table = read_table(data.path, party=name, id_column=data.id, label_column=data.label,
                           feature_columns=data.features, exclude=data.exclude)
        frame = pd.DataFrame(table.features, columns=[f"{name}:{c}" for c in table.feature_names])
        frame.index = pd.Index(table.ids.astype(str), name="id")
        if table.label is not None and name == guest:
            frame["__label__"] = table.label
        frames.append(frame)
    joined = frames[0].join(frames[1:], how="inner") if len(frames) > 1 else frames[0]
    label = joined.pop("__label__").to_numpy()
    return joined.index.to_numpy(), joined.to_numpy(dtype=np.float64), label


def centralized_scores(model: str, task: str, options: dict, X: np.ndarray, y: np.ndarray,
                       training: np.ndarray, evaluation: np.ndarray) -> np.ndarray:
    """The reference model's scores on the evaluation rows, same penalty and scaling as the job."""
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import StandardScaler

    if model not in ("hetero_lr", "hetero_linr"):
        raise ConfigError(f"parity has no centralised reference for model {model!r}")
    if options.get("scale", True):
        X = StandardScaler().fit_transform(X)  # the parties scale their columns over all shared rows too
    alpha = float(options.get("alpha", 0.01)) if options.get("penalty", "l2") == "l2" else 0.0
    n = int(training.sum())
    fit_intercept = bool(options.get("fit_intercept", True))
    if model == "hetero_linr":
        reference = Ridge(alpha=alpha * n, fit_intercept=fit_intercept) if alpha else LinearRegression(fit_intercept=fit_intercept)
        return reference.fit(X[training], y[training]).predict(X[evaluation])
    # isthmus minimises mean loss + alpha/2 |w|^2; scikit-learn minimises C * sum loss + 1/2 |w|^2
    logistic = LogisticRegression(C=1.0 / (alpha * n) if alpha else 1e12, fit_intercept=fit_intercept, max_iter=5000)
    if task == "multiclass":
        proba = OneVsRestClassifier(logistic).fit(X[training], y[training]).predict_proba(X[evaluation])
        return proba
    return logistic.fit(X[training], y[training]).predict_proba(X[evaluation])[:, 1]
