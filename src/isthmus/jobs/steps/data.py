"""Loading a party's table once, for whichever step needs it first."""

from __future__ import annotations

from isthmus.data.table import PartyTable, read_table
from isthmus.errors import ConfigError
from isthmus.jobs.context import PartyContext


def party_table(ctx: PartyContext, *, missing: str = "error") -> PartyTable:
    if ctx.table is None:
        data = ctx.spec.party(ctx.party).data
        if data is None:
            raise ConfigError(f"party {ctx.party!r} has no 'data' in job {ctx.spec.name!r}, but a step needs it")
        ctx.table = read_table(data.path, party=ctx.party, id_column=data.id, label_column=data.label,
                               feature_columns=data.features, exclude=data.exclude, missing=missing)
        ctx.events.emit(step="load", rows=ctx.table.n_rows, features=len(ctx.table.feature_names))
    return ctx.table
