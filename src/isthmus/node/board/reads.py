"""What the board shows, read from files this node already holds: nothing here asks another party.

Each function turns one of the node's own records (the run's events, its egress audit log, its
metrics and predictions, its model part, its ledger replica, its serving logs) into plain rows and
chart series for the templates. A missing or half-written file reads as "nothing yet", never as an error.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np


#: Event fields that say how far a long step is: (done, of) pairs, in the order they are looked for.
_PROGRESS = (("epoch", "epochs"), ("tree", "trees"), ("round", "rounds"), ("iteration", "iterations"))
_LARGEST = 10
_LOG_LINES = 40
_CHART_POINTS = 200
_TIME_BARS = 60


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- a job's steps ------------------------------------------------------------------------------------

def step_names(proposal_job: dict) -> list[str]:
    """The steps in the order the proposal lists them (``{"train": {...}}`` or ``"evaluate"``), and the
    ``record`` step that ``record: true`` appends (:func:`isthmus.jobs.plan.make_plan`)."""
    names = []
    for step in proposal_job.get("steps", []):
        names.append(next(iter(step)) if isinstance(step, dict) and step else str(step))
    if proposal_job.get("record") is True and "record" not in names:
        names.append("record")
    return names


def steps(names: list[str], events: list[dict]) -> list[dict]:
    """One row per step: state (waiting, running, done, failed), start, duration, progress, failure."""
    rows = {name: {"name": name, "state": "waiting", "started": None, "ended": None, "progress": None,
                   "detail": "", "error": None} for name in names}
    for event in events:
        name = event.get("step")
        if name not in rows:
            continue
        row, status = rows[name], event.get("status")
        if status == "running":
            row["state"], row["started"] = "running", event["time"]
        elif status in ("done", "failed"):
            row["state"], row["ended"] = status, event["time"]
            row["error"] = event.get("error") if status == "failed" else None
        row["progress"] = _progress(event, row["progress"])
        if status is None and "progress" not in event:
            row["detail"] = ", ".join(f"{k} {_short(v)}" for k, v in event.items() if k not in ("time", "party", "step"))
    for row in rows.values():
        end = row["ended"] or (events[-1]["time"] if events and row["state"] == "running" else None)
        row["seconds"] = end - row["started"] if row["started"] and end else None
        if row["state"] == "done":
            row["progress"] = 1.0
    return list(rows.values())


def _progress(event: dict, before: float | None) -> float | None:
    if isinstance(event.get("progress"), (int, float)):
        return float(event["progress"])
    for done, of in _PROGRESS:
        if isinstance(event.get(done), int) and isinstance(event.get(of), int) and event[of] > 0:
            return min(event[done] / event[of], 1.0)
    return before


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)[:40]


def log_tail(path: Path, lines: int = _LOG_LINES) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as log:
        log.seek(max(path.stat().st_size - 16 * 1024, 0))
        return "\n".join(log.read().decode("utf-8", errors="replace").splitlines()[-lines:])


# -- results ------------------------------------------------------------------------------------------

def scalar_metrics(metrics: dict | None) -> dict[str, float]:
    values = (metrics or {}).get("metrics", {})
    return {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def predictions(path: Path) -> Any:
    """This party's own evaluation rows (id, label, score or score_K per class), or None."""
    if not path.exists():
        return None
    import pandas as pd

    return pd.read_csv(path)


def roc_points(frame: Any) -> dict | None:
    """The ROC curve of this party's own evaluation (binary labels and scores it holds), at most 200 points."""
    from sklearn.metrics import roc_curve

    if frame is None or not {"label", "score"} <= set(frame.columns) or frame["label"].nunique() != 2:
        return None
    fpr, tpr, _ = roc_curve(frame["label"], frame["score"])
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), _CHART_POINTS)).astype(int))
    return {"fpr": fpr[keep].round(5).tolist(), "tpr": tpr[keep].round(5).tolist(),
            "ks": float(np.max(tpr - fpr))}


def confusion(frame: Any) -> dict | None:
    """Multiclass: counts of (true class, predicted class), the prediction being the most probable class."""
    if frame is None:
        return None
    columns = [c for c in frame.columns if c.startswith("score_")]
    classes = np.unique(frame["label"]) if "label" in frame.columns else []
    if len(columns) < 3 or len(classes) != len(columns):
        return None
    truth = np.searchsorted(classes, frame["label"].to_numpy())
    predicted = frame[columns].to_numpy().argmax(axis=1)
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(counts, (truth, predicted), 1)
    return {"classes": [str(c) for c in classes], "counts": counts.tolist()}


def residuals(frame: Any, task: str | None) -> dict | None:
    """Regression: (prediction, label - prediction) of up to 500 evenly spaced rows."""
    if frame is None or task != "regression" or not {"label", "score"} <= set(frame.columns):
        return None
    keep = np.unique(np.linspace(0, len(frame) - 1, min(len(frame), 500)).astype(int))
    rows = frame.iloc[keep]
    return {"x": rows["score"].round(5).tolist(), "y": (rows["label"] - rows["score"]).round(5).tolist()}


def deciles(metrics: dict | None) -> dict | None:
    """Cumulative gain and lift by decile, as the evaluate step wrote them."""
    values = (metrics or {}).get("metrics", {})
    if not isinstance(values.get("gain"), list) or not isinstance(values.get("lift"), list):
        return None
    return {"labels": [f"{10 * (i + 1)}%" for i in range(len(values["gain"]))],
            "gain": values["gain"], "lift": values["lift"]}


def own_model_part(model: dict | None, party: str) -> list[tuple[str, float]]:
    """This party's own features with their coefficients (linear models) or total split gain (trees),
    largest first; a host's importance as the guest holds it is not this party's and is left out."""
    if not isinstance(model, dict):
        return []
    features = model.get("features") or model.get("feature_names")
    weights = model.get("coef")
    importance = model.get("feature_importance")
    if isinstance(importance, dict):
        own = importance.get(party, importance)
        weights = own.get("gain") if isinstance(own, dict) else None
    if not isinstance(features, list) or not isinstance(weights, list) \
            or not all(isinstance(w, (int, float)) for w in weights):
        return []
    pairs = [(str(f), float(w)) for f, w in zip(features, weights)]  # an intercept, if any, comes last: left out
    return sorted(pairs, key=lambda pair: -abs(pair[1]))


# -- audit --------------------------------------------------------------------------------------------

def audit(entries: list[dict]) -> dict:
    """What this party sent, by peer, by step and over time; the largest messages; the kinds that left."""
    sent = [e for e in entries if e.get("direction") == "send" and isinstance(e.get("bytes"), int)]
    received = sum(e["bytes"] for e in entries if e.get("direction") == "recv" and isinstance(e.get("bytes"), int))
    by_peer, by_step, kinds = Counter(), Counter(), defaultdict(set)
    for entry in sent:
        step, kind = _step_and_kind(entry.get("tag", ""))
        by_peer[entry["peer"]] += entry["bytes"]
        by_step[step] += entry["bytes"]
        kinds[step].add(kind)
    start = min((e["time"] for e in sent), default=0.0)
    span = max((e["time"] for e in sent), default=0.0) - start
    width = max(round(span / _TIME_BARS, 1), 0.1)  # at most about 60 bars, each a tenth of a second or more
    over_time = Counter()
    for entry in sent:
        over_time[int((entry["time"] - start) / width)] += entry["bytes"]
    bars = range(max(over_time, default=-1) + 1)
    return {"sent_bytes": sum(e["bytes"] for e in sent), "messages": len(sent), "received_bytes": received,
            "by_peer": sorted(by_peer.items(), key=lambda kv: -kv[1]), "by_step": sorted(by_step.items()),
            "over_time": {"seconds": [f"{bar * width:.1f}" for bar in bars], "bytes": [over_time.get(bar, 0) for bar in bars],
                          "width": width},
            "largest": sorted(sent, key=lambda e: -e["bytes"])[:_LARGEST],
            "kinds": {step: sorted(names) for step, names in sorted(kinds.items())}}


def _step_and_kind(tag: str) -> tuple[str, str]:
    """``1-train/hetero-linear/masked`` -> (``train``, ``hetero-linear/masked``): the step and what the message is."""
    head, _, rest = tag.partition("/")
    index, dash, name = head.partition("-")
    step = name if dash and index.isdigit() else head
    return step, rest or head


# -- serving (the ledger's rows: isthmus.incentive.summary) ------------------------------------------------

def serving(models: list[dict], served: list[dict], asked: list[dict]) -> list[dict]:
    """Per version of each published model: requests this node answered as a host, and those it made as the
    guest with their latency percentiles (a log line from before versions counts as version 1)."""
    rows = []
    for model in models:
        def of_model(entry: dict) -> bool:
            return entry.get("model") == model["name"] and (entry.get("version") or 1) == model["version"]

        mine = [e for e in asked if of_model(e)]
        millis = np.array([e["ms"] for e in mine if isinstance(e.get("ms"), (int, float))])
        outcomes = Counter(e.get("outcome") for e in served if of_model(e))
        rows.append({**model, "requests": len(mine), "served": dict(outcomes),
                     "p50": float(np.percentile(millis, 50)) if millis.size else None,
                     "p99": float(np.percentile(millis, 99)) if millis.size else None})
    return rows
