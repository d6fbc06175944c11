"""The `evaluate` step: the guest scores the evaluation rows jointly and writes metrics and plots.

Evaluation rows are those the train step held out (``validation_fraction``), or every aligned row
when nothing was held out. Hosts serve partial scores; the arbiter has nothing to do. In horizontal
jobs every party instead scores its own test rows with its copy of the model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from isthmus.errors import ConfigError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.steps import horizontal
from isthmus.ml.metrics import write_report

OPTIONS = {"metrics", "threshold"}


def run(ctx: PartyContext, options: dict) -> None:
    unknown = set(options) - OPTIONS
    if unknown:
        raise ConfigError(f"evaluate: unknown options {sorted(unknown)}; known: {sorted(OPTIONS)}")
    trained = ctx.state.get("trained")
    threshold = float(options.get("threshold", 0.5))
    if isinstance(trained, horizontal.LocalModel):
        horizontal.evaluate_locally(ctx, trained, metrics=options.get("metrics"), threshold=threshold)
        return
    if ctx.role == "arbiter":
        return
    if trained is None:
        raise ConfigError("evaluate needs a train step before it")
    if ctx.role == "host":
        trained.serve(ctx.channel)
        return
    rows = trained.evaluation_rows
    scores = trained.scores(ctx.channel, rows)
    trained.finish(ctx.channel)
    labels = ctx.table.label[rows]
    y_true = np.searchsorted(trained.classes, labels) if trained.task == "multiclass" else labels
    result = write_report(ctx.run_dir, trained.task, y_true, scores, options.get("metrics"), threshold=threshold)
    _write_predictions(ctx, rows, labels, scores)
    ctx.events.emit(step="evaluate", rows=len(rows),
                    **{k: round(v, 6) for k, v in result.items() if isinstance(v, float)})


def _write_predictions(ctx: PartyContext, rows: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> None:
    """The guest's own ids, labels and scores: stays in the guest's run directory."""
    frame = pd.DataFrame({"id": ctx.table.ids[rows], "label": labels})
    if scores.ndim == 2:
        for k in range(scores.shape[1]):
            frame[f"score_{k}"] = scores[:, k]
    else:
        frame["score"] = scores
    frame.to_csv(ctx.run_dir / "predictions.csv", index=False)
