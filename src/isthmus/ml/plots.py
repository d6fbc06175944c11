"""ROC and KS charts for a binary model's evaluation report, written as PNG files.

Figures are built with :class:`matplotlib.figure.Figure` and saved by the Agg renderer, never
through pyplot: pyplot keeps global state and picks a GUI backend, and parties run in threads
(tests) or headless processes (jobs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve


def plot_roc(y_true: np.ndarray, y_score: np.ndarray, path: Path) -> Path:
    """ROC curve with its AUC in the legend."""
    fpr, tpr, _ = roc_curve(y_true, y_score)
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, label=f"ROC (AUC = {roc_auc_score(y_true, y_score):.4f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_ks(y_true: np.ndarray, y_score: np.ndarray, path: Path) -> Path:
    """Cumulative TPR and FPR against the share of rows scored at or above each threshold; KS is the widest gap."""
    fpr, tpr, _ = roc_curve(y_true, y_score)
    y_true = np.asarray(y_true)
    positives = float(np.sum(y_true == 1))
    population = (tpr * positives + fpr * (len(y_true) - positives)) / len(y_true)
    best = int(np.argmax(tpr - fpr))
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    ax.plot(population, tpr, label="true positive rate")
    ax.plot(population, fpr, label="false positive rate")
    ax.vlines(population[best], fpr[best], tpr[best], colors="red", linestyles="--",
              label=f"KS = {tpr[best] - fpr[best]:.4f}")
    ax.set(xlabel="share of rows at or above the threshold", ylabel="cumulative rate", title="KS",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="center right")
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    return path
