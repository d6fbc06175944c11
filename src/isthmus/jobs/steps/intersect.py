"""The `intersect` step: guest and hosts align their rows on the shared ids (private set intersection)."""

from __future__ import annotations

from isthmus.errors import ConfigError, DataError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.steps.data import party_table

OPTIONS = {"method", "dedupe"}


def run(ctx: PartyContext, options: dict) -> None:
    from isthmus.protocols.psi import intersect

    unknown = set(options) - OPTIONS
    if unknown:
        raise ConfigError(f"intersect: unknown options {sorted(unknown)}; known: {sorted(OPTIONS)}")
    if ctx.role not in ("guest", "host"):
        return
    table = party_table(ctx)
    result = intersect(ctx.channel, ctx.role, table.ids, method=options.get("method", "ecdh"),
                       dedupe=options.get("dedupe", "error"),
                       guest=ctx.spec.one("guest"), hosts=ctx.spec.with_role("host"),
                       progress=lambda stage, fraction: ctx.events.emit(step="intersect", stage=stage,
                                                                        progress=round(fraction, 3)))
    if result.size == 0:
        raise DataError(f"party {ctx.party!r}: no id is shared by all parties (step intersect); nothing to train on")
    ctx.table = table.take(result.positions)
    ctx.events.emit(step="intersect", own_rows=table.n_rows, shared_rows=result.size)
