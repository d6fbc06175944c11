"""Loading a party's tables once, for whichever step needs them first."""

from __future__ import annotations

from isthmus.algorithms.registry import algorithm
from isthmus.data.table import PartyTable, read_table
from isthmus.errors import ConfigError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.spec import DataSpec, JobSpec


def missing_policy(spec: JobSpec) -> str:
    """``keep`` empty cells (as NaN) when every model the job trains routes them itself, else ``error``.

    Decided from the whole job because the first step to load the table (often `intersect`) fixes it.
    """
    models = [step.options.get("model") for step in spec.steps if step.name == "train"]
    return "keep" if all(algorithm(model).accepts_missing for model in models) else "error"


def party_table(ctx: PartyContext) -> PartyTable:
    """The party's table (its `data.path`), loaded once."""
    if ctx.table is None:
        data = own_data(ctx)
        ctx.table = read_table(data.path, party=ctx.party, id_column=data.id, label_column=data.label,
                               feature_columns=data.features, exclude=data.exclude, missing=missing_policy(ctx.spec))
        ctx.events.emit(step="load", rows=ctx.table.n_rows, features=len(ctx.table.feature_names))
    return ctx.table


def test_table(ctx: PartyContext) -> PartyTable | None:
    """The party's held-out rows (its `data.test`), loaded once; None when it has none."""
    data = ctx.spec.party(ctx.party).data
    if data is None or data.test is None:
        return None
    if "test_table" not in ctx.state:
        if data.label is None:
            raise ConfigError(f"party {ctx.party!r} needs a 'label' in its data to evaluate on its test rows")
        ctx.state["test_table"] = read_table(data.test, party=ctx.party, id_column=data.id, label_column=data.label,
                                             feature_columns=data.features, exclude=data.exclude,
                                             missing=missing_policy(ctx.spec))
    return ctx.state["test_table"]


def own_data(ctx: PartyContext) -> DataSpec:
    data = ctx.spec.party(ctx.party).data
    if data is None:
        raise ConfigError(f"party {ctx.party!r} has no 'data' in job {ctx.spec.name!r}, but a step needs it")
    return data
