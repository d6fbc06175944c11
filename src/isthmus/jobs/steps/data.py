"""Loading a party's table once, for whichever step needs it first."""

from __future__ import annotations

from isthmus.data.table import PartyTable, read_table
from isthmus.errors import ConfigError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.spec import JobSpec

#: Models that route missing values themselves (a learned default direction at every split).
MISSING_VALUE_MODELS = frozenset({"hetero_secureboost", "homo_secureboost"})


def missing_policy(spec: JobSpec) -> str:
    """``keep`` empty cells (as NaN) unless a train step of the job needs complete rows, else ``error``.

    Decided from the whole job because the first step to load the table (often `intersect`) fixes it.
    """
    models = {step.options.get("model") for step in spec.steps if step.name == "train"}
    return "keep" if models <= MISSING_VALUE_MODELS else "error"


def party_table(ctx: PartyContext, *, missing: str | None = None) -> PartyTable:
    """The party's table; ``missing`` defaults to :func:`missing_policy` of the job."""
    if ctx.table is None:
        data = ctx.spec.party(ctx.party).data
        if data is None:
            raise ConfigError(f"party {ctx.party!r} has no 'data' in job {ctx.spec.name!r}, but a step needs it")
        ctx.table = read_table(data.path, party=ctx.party, id_column=data.id, label_column=data.label,
                               feature_columns=data.features, exclude=data.exclude,
                               missing=missing or missing_policy(ctx.spec))
        ctx.events.emit(step="load", rows=ctx.table.n_rows, features=len(ctx.table.feature_names))
    return ctx.table
