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

from isthmus.data.table import PartyTable, read_table
from isthmus.errors import ConfigError
from isthmus.jobs.events import read_events
from isthmus.jobs.launcher import LaunchResult, launched
from isthmus.jobs.plan import make_plan
from isthmus.jobs.rundir import write_json
from isthmus.jobs.spec import JobSpec, load_job
from isthmus.jobs.steps.data import missing_policy
from isthmus.jobs.steps.train import TrainChoice
from isthmus.ml.metrics import PRIMARY_METRIC, evaluate

PARITY_FILE = "parity.json"


def run_parity(job_path: str | Path, out_dir: str | Path, *, console: Console | None = None) -> dict:
    """Launch the job into ``out_dir`` and write ``parity.json`` beside its results (an earlier run is replaced)."""
    spec = load_job(job_path)
    train = make_plan(spec, min(spec.parties)).first("train")
    if train is None or not any(step.name == "evaluate" for step in spec.steps):  # else found after the job ran
        raise ConfigError("parity needs a job with a train step and an evaluate step after it: it compares the "
                          "federated model's evaluation with the pooled one's")
    choice: TrainChoice = train.options
    with launched(job_path, out_dir, console=console) as result:
        compare = _vertical if choice.algorithm.family == "vertical" else _horizontal
        report = {**compare(result, choice), "model": choice.algorithm.name, "seconds": round(result.seconds, 2)}
        write_json(result.out_dir / PARITY_FILE, report)  # atomically, while the folder is still locked
    return report


def _vertical(result: LaunchResult, choice: TrainChoice) -> dict:
    """The guest's metric beside the reference trained on the pooled columns of the other shared rows."""
    spec = result.spec
    guest_dir = result.party_dir(spec.one("guest"))
    task = json.loads((guest_dir / "model.json").read_text())["task"]
    predictions = pd.read_csv(guest_dir / "predictions.csv", dtype={"id": str})
    ids, X, y, owners = pooled_columns(spec, selected=_selected_columns(result))
    if task != "regression":  # class indices, as the guest's part holds them (two labels 1 and 2 are 0 and 1)
        y = np.searchsorted(np.unique(y), y)
    evaluation = np.isin(ids, predictions["id"].to_numpy())
    training = ~evaluation if not evaluation.all() else evaluation  # the rows the training did not hold out
    reference = choice.algorithm.reference_by_party(choice.options, task, X[training], y[training], X[evaluation],
                                                    owners, spec.roster)
    metric = PRIMARY_METRIC[task]
    centralized = evaluate(task, y[evaluation], reference.scores, metrics=[metric])[metric]
    federated = json.loads((guest_dir / "metrics.json").read_text())["metrics"][metric]
    return {"metric": metric, "federated": federated, "centralized": centralized,
            "delta": abs(federated - centralized), "reference": reference.name,
            "train_rows": int(training.sum()), "evaluation_rows": int(evaluation.sum())}


def _horizontal(result: LaunchResult, choice: TrainChoice) -> dict:
    """Each evaluating party's metric beside the reference trained on the union of the clients' rows.

    The top-level numbers are those of the party with the largest delta.
    """
    spec = result.spec
    clients, aggregator = spec.with_role("client"), spec.roster.aggregator
    model = json.loads((result.party_dir(aggregator) / "model.json").read_text())
    task, features = model["task"], model["features"]  # the columns as the clients agreed them
    pooled = [_rows(spec, name, spec.party(name).data.path, features) for name in clients]
    X, y = np.vstack([t.features for t in pooled]), np.concatenate([t.label for t in pooled])
    metric = PRIMARY_METRIC[task]
    evaluated = {}
    for name in [*clients, aggregator]:
        party_dir = result.party_dir(name)
        if not any(e.get("step") == "evaluate" and "rows" in e for e in read_events(party_dir / "events.jsonl")):
            continue  # no test data, or dropped out before evaluating
        data = spec.party(name).data
        evaluated[name] = _rows(spec, name, data.test or data.path, features)
    if not evaluated:
        raise ConfigError("parity needs an evaluate step and test data ('test:' or the aggregator's data) somewhere")
    # one reference for everyone's rows: a network trains once, not once per party
    reference = choice.algorithm.reference(choice.options, task, X, y, np.vstack([r.features for r in evaluated.values()]))
    scores = np.split(reference.scores, np.cumsum([rows.n_rows for rows in evaluated.values()])[:-1])
    parties = {}
    for (name, rows), party_scores in zip(evaluated.items(), scores, strict=True):
        centralized = evaluate(task, rows.label, party_scores, metrics=[metric])[metric]
        federated = json.loads((result.party_dir(name) / "metrics.json").read_text())["metrics"][metric]
        parties[name] = {"federated": federated, "centralized": centralized, "delta": abs(federated - centralized),
                         "evaluation_rows": rows.n_rows, "reference": reference.name}
    worst = max(parties, key=lambda name: parties[name]["delta"])
    return {"metric": metric, **{k: parties[worst][k] for k in ("federated", "centralized", "delta", "reference")},
            "party": worst, "train_rows": len(y), "evaluation_rows": parties[worst]["evaluation_rows"],
            "parties": parties}


def _rows(spec: JobSpec, party: str, path: Path, features: list[str]) -> PartyTable:
    """Labelled rows of ``path`` with exactly the model's columns, in its order."""
    data = spec.party(party).data
    if data.label is None:
        raise ConfigError(f"party {party!r} needs a 'label' in its data for parity")
    return read_table(path, party=party, id_column=data.id, label_column=data.label, feature_columns=features,
                      missing=missing_policy(spec))


def _selected_columns(result: LaunchResult) -> dict[str, list[str]]:
    """Per party, the columns a `select` step kept (from its selection.json), if the job had one."""
    kept = {}
    for name in result.spec.parties:
        selection = result.party_dir(name) / "selection.json"
        if selection.exists():
            kept[name] = json.loads(selection.read_text())["kept"]
    return kept


def parity_summary(report: dict) -> str:
    """Two short lines for people: both metrics, then the delta (kept on one line with its number, for whoever
    greps for it), the rows and the time."""
    reference = f" ({report['reference']})" if report.get("reference") else ""
    return (f"[bold]{report['metric'].upper()}[/]: federated {report['federated']:.4f}, centralised{reference} on "
            f"pooled data {report['centralized']:.4f}\ndelta {report['delta']:.4f} on the same rows "
            f"({report['train_rows']} training rows, {report['evaluation_rows']} evaluated; {report['seconds']} s)")


def pooled_data(spec: JobSpec, selected: dict[str, list[str]] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every guest and host table joined on the id (inner join), guest columns first; a party's
    ``selected`` columns only, when given. Empty cells stay NaN where the job's model takes them."""
    return pooled_columns(spec, selected)[:3]


def pooled_columns(spec: JobSpec, selected: dict[str, list[str]] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """:func:`pooled_data` and the party that holds each column."""
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
    owners = [column.split(":", 1)[0] for column in joined.columns]
    return joined.index.to_numpy(), joined.to_numpy(dtype=np.float64), label, owners
