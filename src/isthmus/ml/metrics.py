"""Evaluation metrics for the guest's ``evaluate`` step: one entry point, JSON-ready results.

scikit-learn computes every metric it has; KS and the decile gain/lift table are derived here from
its ROC curve and a sort, since it has neither.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from isthmus.errors import ConfigError, DataError
from isthmus.files import write_whole

MetricValue = float | list[float]


def _sklearn():
    """scikit-learn's metrics, imported when first needed: ~0.8 s that parties which never score need not pay."""
    from sklearn import metrics

    return metrics


def auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve."""
    _require_both_classes(y_true, "auc")
    return float(_sklearn().roc_auc_score(y_true, y_score))


def ks_statistic(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic: the largest gap max(TPR - FPR) along the ROC curve."""
    _require_both_classes(y_true, "ks")
    fpr, tpr, _ = _sklearn().roc_curve(y_true, y_score)
    return float(np.max(tpr - fpr))


def gain_lift_by_decile(y_true: np.ndarray, y_score: np.ndarray, n_bins: int = 10) -> dict[str, list[float]]:
    """Cumulative gain and lift of the top 1..n_bins score bins (deciles by default).

    Rows are ranked by score, highest first (ties keep input order), and cut into ``n_bins`` bins whose
    sizes differ by at most one. For the top k bins: ``population`` is the share of rows they hold,
    ``gain`` the share of all positives they catch, and ``lift`` = gain / population, i.e. how many times
    better than picking rows at random.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    if not np.any(y_true == 1):
        raise DataError("gain/lift need at least one positive label")
    order = np.argsort(-np.asarray(y_score, dtype=np.float64), kind="stable")
    n = len(y_true)
    cuts = -(-n * np.arange(1, n_bins + 1) // n_bins)  # ceil(n * k / n_bins): never an empty top bin
    caught = np.cumsum(y_true[order])[cuts - 1]
    population = cuts / n
    gain = caught / caught[-1]
    return {"population": population.tolist(), "gain": gain.tolist(), "lift": (gain / population).tolist()}


def _labels_at(y_score: np.ndarray, threshold: float) -> np.ndarray:
    return (y_score >= threshold).astype(np.int64)


_Metric = Callable[[np.ndarray, np.ndarray, float], MetricValue]

# Each metric takes (y_true, y_score, threshold); only the binary label metrics use the threshold.
_METRICS: dict[str, dict[str, _Metric]] = {
    "binary": {
        "auc": lambda y, s, t: auc(y, s),
        "ks": lambda y, s, t: ks_statistic(y, s),
        "accuracy": lambda y, s, t: float(_sklearn().accuracy_score(y, _labels_at(s, t))),
        "precision": lambda y, s, t: float(_sklearn().precision_score(y, _labels_at(s, t), zero_division=0)),
        "recall": lambda y, s, t: float(_sklearn().recall_score(y, _labels_at(s, t), zero_division=0)),
        "f1": lambda y, s, t: float(_sklearn().f1_score(y, _labels_at(s, t), zero_division=0)),
        "gain": lambda y, s, t: gain_lift_by_decile(y, s)["gain"],
        "lift": lambda y, s, t: gain_lift_by_decile(y, s)["lift"],
    },
    "regression": {
        "rmse": lambda y, s, t: float(_sklearn().root_mean_squared_error(y, s)),
        "mae": lambda y, s, t: float(_sklearn().mean_absolute_error(y, s)),
        "r2": lambda y, s, t: float(_sklearn().r2_score(y, s)),
    },
    "multiclass": {
        "accuracy": lambda y, s, t: float(_sklearn().accuracy_score(y, s.argmax(axis=1))),
        "macro_f1": lambda y, s, t: float(_sklearn().f1_score(y, s.argmax(axis=1), average="macro", zero_division=0)),
    },
}

METRICS: dict[str, tuple[str, ...]] = {task: tuple(table) for task, table in _METRICS.items()}
"""The metric names each task offers, in the order :func:`evaluate` reports them."""

#: The one number parity and contribution compare, per task.
PRIMARY_METRIC = {"binary": "auc", "multiclass": "accuracy", "regression": "r2"}


def evaluate(
    task: str,
    y_true: np.ndarray,
    y_score: np.ndarray,
    *,
    metrics: list[str] | None = None,
    threshold: float = 0.5,
) -> dict[str, MetricValue]:
    """Metrics of ``y_score`` against ``y_true``: all of the task's unless ``metrics`` names some.

    ``y_score`` holds probabilities: P(y=1) of shape (n,) for "binary" (a row is predicted positive
    when its score >= ``threshold``), class probabilities (n, k) for "multiclass" (labels 0..k-1),
    predictions (n,) for "regression". Values are plain floats or lists of floats (gain, lift).
    """
    if task not in _METRICS:
        raise ConfigError(f"unknown task {task!r}; valid tasks: {', '.join(_METRICS)}")
    table = _METRICS[task]
    names = list(table) if metrics is None else list(metrics)
    unknown = [name for name in names if name not in table]
    if unknown:
        raise ConfigError(f"unknown {task} metric(s) {', '.join(map(repr, unknown))}; valid: {', '.join(table)}")
    y_true, y_score = _checked(task, y_true, y_score)
    return {name: table[name](y_true, y_score, threshold) for name in names}


def write_report(
    run_dir: Path,
    task: str,
    y_true: np.ndarray,
    y_score: np.ndarray,
    metrics: list[str] | None = None,
    *,
    threshold: float = 0.5,
) -> dict[str, MetricValue]:
    """Evaluate, write ``run_dir/metrics.json`` and, for a binary task, ``roc.png`` and ``ks.png``."""
    from isthmus.ml.plots import plot_ks, plot_roc  # matplotlib loads only when a report is written

    result = evaluate(task, y_true, y_score, metrics=metrics, threshold=threshold)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    report = {"task": task, "rows": len(y_true), "threshold": threshold, "metrics": result}
    write_whole(run_dir / "metrics.json", (json.dumps(report, indent=2, allow_nan=False) + "\n").encode())
    if task == "binary":
        y_true, y_score = _checked(task, y_true, y_score)
        plot_roc(y_true, y_score, run_dir / "roc.png")
        plot_ks(y_true, y_score, run_dir / "ks.png")
    return result


def _checked(task: str, y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 copies; a wrong shape or value is a DataError saying which."""
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or len(y) == 0:
        raise DataError(f"y_true must be a non-empty 1-D array, got shape {y.shape}")
    expected_ndim = 2 if task == "multiclass" else 1
    if s.ndim != expected_ndim or len(s) != len(y):
        raise DataError(f"{task} y_score must have {expected_ndim} dimension(s) and {len(y)} rows, got shape {s.shape}")
    if not (np.isfinite(y).all() and np.isfinite(s).all()):
        raise DataError("y_true and y_score must be finite (no NaN or inf)")
    if task == "binary":
        if not np.isin(y, (0.0, 1.0)).all():
            raise DataError(f"binary y_true must hold only 0 and 1, found {np.unique(y)[:5].tolist()}")
        if s.min() < 0.0 or s.max() > 1.0:
            raise DataError(f"binary y_score must be probabilities in [0, 1], found [{s.min():g}, {s.max():g}]")
    if task == "multiclass":
        k = s.shape[1]
        if k < 2 or not (np.isin(y, np.arange(k))).all():
            raise DataError(f"multiclass y_true must hold class indices 0..{k - 1} matching y_score's {k} columns")
    return y, s


def _require_both_classes(y_true: np.ndarray, metric: str) -> None:
    if len(np.unique(y_true)) < 2:
        raise DataError(f"{metric} needs both classes in y_true, found only {np.unique(y_true).tolist()}")
