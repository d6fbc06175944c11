"""Parity: the federated job against the same model trained centrally on the pooled data.

Pooling is for local benchmarking only: it reads every party's file, which no party of a real
federation can do. The reference uses the guest's evaluation rows (from its predictions.csv) and
trains on the other shared rows, with the hyper-parameters mapped to scikit-learn's conventions.
Horizontal jobs are compared with the same model trained on the union of the clients' training rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from isthmus.data.table import read_table
from isthmus.errors import ConfigError
from isthmus.jobs.events import read_events
from isthmus.jobs.launcher import LaunchResult, launched
from isthmus.jobs.rundir import write_json
from isthmus.jobs.spec import JobSpec, load_job
from isthmus.jobs.steps import horizontal
from isthmus.jobs.steps.data import missing_policy
from isthmus.ml.metrics import evaluate

PRIMARY_METRIC = {"binary": "auc", "multiclass": "accuracy", "regression": "r2"}
PARITY_FILE = "parity.json"


def run_parity(job_path: str | Path, out_dir: str | Path, *, console: Console | None = None) -> dict:
    """Launch the job into ``out_dir`` and write ``parity.json`` beside its results (an earlier run is replaced)."""
    train = load_job(job_path).step("train")
    if train is None:
        raise ConfigError("parity needs a job with a train step")
    with launched(job_path, out_dir, console=console) as result:
        report = _compare(result, train.options)
        write_json(result.out_dir / PARITY_FILE, report)  # atomically, while the folder is still locked
    return report


def _compare(result: LaunchResult, options: dict) -> dict:
    spec = result.spec
    if options.get("model") in horizontal.MODELS:
        return horizontal_parity(result, options)
    if options.get("model") == "homo_secureboost":
        raise ConfigError("parity has no centralised reference for homo_secureboost yet; the job's results "
                          f"are in {result.out_dir}")
    guest = spec.one("guest")
    guest_dir = result.party_dir(guest)
    model = json.loads((guest_dir / "model.json").read_text())
    task = model["task"]
    predictions = pd.read_csv(guest_dir / "predictions.csv", dtype={"id": str})
    ids, X, y = pooled_data(spec, selected=_selected_columns(result))
    evaluation = np.isin(ids, predictions["id"].to_numpy())
    training = ~evaluation if (options.get("validation_fraction") or 0) > 0 else np.ones(len(ids), bool)
    if options["model"] == "hetero_secureboost":
        reference, reference_name = booster_scores(task, options, X, y, training, evaluation)
    else:
        reference = centralized_scores(options["model"], task, options, X, y, training, evaluation)
        reference_name = "scikit-learn"
    metric = PRIMARY_METRIC[task]
    y_eval = y[evaluation]
    if task == "multiclass":
        y_eval = np.searchsorted(np.unique(y), y_eval)
    centralized = evaluate(task, y_eval, reference, metrics=[metric])[metric]
    federated = json.loads((guest_dir / "metrics.json").read_text())["metrics"][metric]
    return {"metric": metric, "federated": federated, "centralized": centralized,
            "delta": abs(federated - centralized), "model": options["model"], "reference": reference_name,
            "train_rows": int(training.sum()), "evaluation_rows": int(evaluation.sum()),
            "seconds": round(result.seconds, 2)}


def horizontal_parity(result: LaunchResult, options: dict) -> dict:
    """Each evaluating party's metric beside the same LinearModel trained centrally on the clients' union.

    The reference runs the clients' local SGD over the pooled rows for ``rounds * local_epochs``
    epochs. The top-level numbers are those of the party with the largest delta.
    """
    spec, model = result.spec, options["model"]
    settings = horizontal.HorizontalSettings.parse(model, {k: v for k, v in options.items() if k != "model"})
    clients, aggregator = spec.with_role("client"), horizontal.aggregator_of(spec)
    features = json.loads((result.party_dir(aggregator) / "model.json").read_text())["features"]  # as agreed
    tables = [horizontal.read_rows(name, spec.party(name).data, spec.party(name).data.path, features)
              for name in clients]
    X, y = np.vstack([t.features for t in tables]), np.concatenate([t.label for t in tables])
    linear = settings.linear_model(len(features))
    central = linear.train(linear.initial_parameters(), X, y, np.random.default_rng(settings.seed),
                           epochs=settings.rounds * settings.local_epochs)
    metric = PRIMARY_METRIC[settings.task]
    parties = {}
    for name in [*clients, aggregator]:
        party_dir = result.party_dir(name)
        if not any(e.get("step") == "evaluate" and "rows" in e for e in read_events(party_dir / "events.jsonl")):
            continue  # no test data, or dropped out before evaluating
        data = spec.party(name).data
        rows = horizontal.read_rows(name, data, data.test or data.path, features)
        scores = linear.predict(central, rows.features)
        centralized = evaluate(settings.task, rows.label, scores, metrics=[metric])[metric]
        federated = json.loads((party_dir / "metrics.json").read_text())["metrics"][metric]
        parties[name] = {"federated": federated, "centralized": centralized, "delta": abs(federated - centralized),
                         "evaluation_rows": rows.n_rows}
    if not parties:
        raise ConfigError("parity needs an evaluate step and test data ('test:' or the aggregator's data) somewhere")
    worst = max(parties, key=lambda name: parties[name]["delta"])
    return {"metric": metric, **{k: parties[worst][k] for k in ("federated", "centralized", "delta")},
            "model": model, "party": worst, "train_rows": len(y), "evaluation_rows": parties[worst]["evaluation_rows"],
            "parties": parties, "seconds": round(result.seconds, 2)}


def _selected_columns(result: LaunchResult) -> dict[str, list[str]]:
    """Per party, the columns a `select` step kept (from its selection.json), if the job had one."""
    kept = {}
    for name in result.spec.parties:
        selection = result.party_dir(name) / "selection.json"
        if selection.exists():
            kept[name] = json.loads(selection.read_text())["kept"]
    return kept


def parity_summary(report: dict) -> str:
    """One line for people: both metrics, the delta, the rows and the time."""
    reference = f" ({report['reference']})" if report.get("reference") else ""
    return (f"[bold]{report['metric'].upper()}[/]: federated {report['federated']:.4f}, centralised{reference} on "
            f"pooled data {report['centralized']:.4f}, delta {report['delta']:.4f} ({report['train_rows']} training "
            f"rows, {report['evaluation_rows']} evaluated; {report['seconds']} s)")


def pooled_data(spec: JobSpec, selected: dict[str, list[str]] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every guest and host table joined on the id (inner join), guest columns first; a party's
    ``selected`` columns only, when given. Empty cells stay NaN where the job's model takes them."""
    guest = spec.one("guest")
    frames, label = [], None
    for name in [guest, *spec.with_role("host")]:
        data = spec.party(name).data
        features = (selected or {}).get(name, data.features)
        table = read_table(data.path, party=name, id_column=data.id, label_column=data.label,
                           feature_columns=features, exclude=data.exclude,
                           missing=missing_policy(spec))
        frame = pd.DataFrame(table.features, columns=[f"{name}:{c}" for c in table.feature_names])
        frame.index = pd.Index(table.ids.astype(str), name="id")
        if table.label is not None and name == guest:
            frame["__label__"] = table.label
        frames.append(frame)
    joined = frames[0].join(frames[1:], how="inner") if len(frames) > 1 else frames[0]
    label = joined.pop("__label__").to_numpy()
    return joined.index.to_numpy(), joined.to_numpy(dtype=np.float64), label


def booster_scores(task: str, options: dict, X: np.ndarray, y: np.ndarray, training: np.ndarray,
                   evaluation: np.ndarray) -> tuple[np.ndarray, str]:
    """A centralised booster's scores on the evaluation rows, and its name: XGBoost (``tree_method=hist``,
    the job's trees, depth, learning rate, bins and regularisation) if installed, else isthmus's own
    plaintext booster (:class:`~isthmus.tree.booster.SecureBoostReference`) on all columns at once."""
    from isthmus.jobs.steps.secureboost import boost_params

    params = boost_params({k: v for k, v in options.items() if k not in ("model", "validation_fraction",
                                                                         "early_stopping_rounds", "objective")},
                          objective=task, n_classes=len(np.unique(y)) if task == "multiclass" else None)
    bins = int(options.get("bins", 32))
    labels = np.searchsorted(np.unique(y), y) if task == "multiclass" else y
    X_train, y_train, X_eval = X[training], labels[training], X[evaluation]
    try:
        import xgboost
    except ImportError:
        from isthmus.tree.booster import SecureBoostReference, to_prediction, to_proba

        reference = SecureBoostReference(bins=bins, **params.to_dict()).fit([X_train], y_train)
        raw = reference.decision_function([X_eval])
        objective = reference.ensemble_.objective
        scores = to_prediction(objective, raw) if task == "regression" else to_proba(objective, raw)
        return (scores[:, 1] if task == "binary" else scores), "isthmus SecureBoostReference (xgboost not installed)"
    settings = {"n_estimators": params.n_trees, "max_depth": params.max_depth, "learning_rate": params.learning_rate,
                "max_bin": bins, "tree_method": "hist", "reg_lambda": params.reg_lambda,
                "min_child_weight": params.min_child_weight, "gamma": params.min_split_gain,
                "subsample": params.subsample, "colsample_bytree": params.colsample_bytree,
                "random_state": params.seed}
    if task == "regression":
        return xgboost.XGBRegressor(**settings).fit(X_train, y_train).predict(X_eval), f"xgboost {xgboost.__version__}"
    proba = xgboost.XGBClassifier(**settings).fit(X_train, y_train).predict_proba(X_eval)
    return (proba[:, 1] if task == "binary" else proba), f"xgboost {xgboost.__version__}"


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
