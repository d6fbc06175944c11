"""The `evaluate` step: the trained model scores held-out rows; metrics and plots stay with the party.

Vertical models: the guest scores the rows the training held out (``validation_fraction``), or every
aligned row when nothing was held out, jointly with the hosts, which serve their parts. Horizontal
models: every party scores its own test rows (`data.test`; the aggregator its own `data`) alone.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from isthmus.algorithms.base import GuestPart, HostPart, LocalPart
from isthmus.data.table import PartyTable, open_columns
from isthmus.errors import DataError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.spec import JobSpec
from isthmus.jobs.steps.data import own_data, party_table, test_table
from isthmus.jobs.steps.kind import StepKind, data_roles, parse_with
from isthmus.ml.metrics import METRICS, write_report
from isthmus.options import Options

MetricName = Literal[tuple(sorted({name for names in METRICS.values() for name in names}))]  # type: ignore[valid-type]


class EvaluateOptions(Options):
    metrics: Annotated[list[MetricName], Field(min_length=1)] | None = None  # default: every metric of the task
    threshold: float = Field(0.5, gt=0, lt=1)  # a row is predicted positive when its score >= threshold


def prepare(ctx: PartyContext, options: EvaluateOptions) -> None:
    """A missing or malformed test file, or one lacking a column the party trains on, fails before training,
    not after it."""
    test = test_table(ctx)
    if test is None:
        return
    data = own_data(ctx)
    _, trained_on, _ = open_columns(data.path, party=ctx.party, id_column=data.id, label_column=data.label,
                                    feature_columns=data.features, exclude=data.exclude)  # the header only
    if lacking := [column for column in trained_on.features if column not in test.feature_names]:
        raise DataError(f"party {ctx.party!r}: its test file {str(data.test)!r} lacks {len(lacking)} of the columns it "
                        f"trains on: {', '.join(map(repr, lacking[:5]))}{', ...' if len(lacking) > 5 else ''}")


def run(ctx: PartyContext, options: EvaluateOptions) -> None:
    part = ctx.trained.part
    if isinstance(part, GuestPart):
        _jointly(ctx, part, options)
    elif isinstance(part, HostPart):
        part.serve(ctx.channel, party_table(ctx).features)
    elif isinstance(part, LocalPart):
        _alone(ctx, part, options)
    # a role without a model part (an arbiter) has nothing to evaluate


def _jointly(ctx: PartyContext, part: GuestPart, options: EvaluateOptions) -> None:
    table, rows = party_table(ctx), part.evaluation_rows
    scores = part.predict(ctx.channel, table.features, rows)
    part.finish(ctx.channel)
    labels = table.label[rows]
    _report(ctx, part.task, table.ids[rows], labels, part.targets(labels), scores, options)


def _alone(ctx: PartyContext, part: LocalPart, options: EvaluateOptions) -> None:
    rows = _own_evaluation_rows(ctx)
    if rows is None:
        ctx.events.emit(step="evaluate", status="skipped", reason="no test data at this party")
        return
    rows = rows.columns(part.feature_names)
    if part.task == "binary" and not np.isin(rows.label, (0.0, 1.0)).all():
        raise DataError(f"party {ctx.party!r}: a binary model is evaluated on labels 0 and 1, found "
                        f"{np.unique(rows.label)[:5].tolist()}")
    _report(ctx, part.task, rows.ids, rows.label, rows.label, part.predict(rows.features), options)


def evaluates_alone(spec: JobSpec, party: str) -> bool:
    """Whether ``party`` of a horizontal job has rows to score: a test file, or (the aggregator) data."""
    data = spec.party(party).data
    return data is not None and (data.test is not None or spec.role_of(party) != "client")


def _own_evaluation_rows(ctx: PartyContext) -> PartyTable | None:
    """A party's test rows; the aggregator's own data is its evaluation set."""
    if not evaluates_alone(ctx.spec, ctx.party):
        return None
    return test_table(ctx) if ctx.spec.party(ctx.party).data.test else party_table(ctx)


def _report(ctx: PartyContext, task: str, ids: np.ndarray, labels: np.ndarray, y_true: np.ndarray,
            scores: np.ndarray, options: EvaluateOptions) -> None:
    """Metrics and plots, and the party's own ids, labels and scores: all stay in its run directory."""
    result = write_report(ctx.run_dir, task, y_true, scores, options.metrics, threshold=options.threshold)
    frame = pd.DataFrame({"id": ids, "label": labels})
    if scores.ndim == 2:
        for k in range(scores.shape[1]):
            frame[f"score_{k}"] = scores[:, k]
    else:
        frame["score"] = scores
    frame.to_csv(ctx.run_dir / "predictions.csv", index=False)
    ctx.events.emit(step="evaluate", rows=len(ids), **{k: round(v, 6) for k, v in result.items() if isinstance(v, float)})


STEP = StepKind("evaluate", parse_with(EvaluateOptions), run, prepare=prepare, after="train", roles=data_roles)
