"""The `intersect` step: guest and hosts align their rows on the shared ids (private set intersection).

With ``keep_all_rows: true`` the tables keep every row and the step only records the shared rows'
positions, in the agreed order, for the train step (``Party.overlap``): transfer learning trains on
rows only one party has. PSI runs, and reveals, exactly the same either way.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from isthmus.data.ids import DEDUPE_MODES
from isthmus.errors import DataError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.steps.data import party_table
from isthmus.jobs.steps.kind import StepKind, parse_with
from isthmus.options import Options
from isthmus.protocols.psi import METHODS


class IntersectOptions(Options):
    method: Literal[METHODS] = "ecdh"  # type: ignore[valid-type]
    dedupe: Literal[DEDUPE_MODES] = "error"  # type: ignore[valid-type]
    keep_all_rows: bool = False
    #: Fewer shared rows than this and the job stops before any model sees them (a node's policy sets a floor).
    min_shared_rows: int = Field(1, ge=1)


#: Where `intersect` leaves the shared rows' positions when it keeps all rows (``ctx.state``).
OVERLAP = "overlap"


def run(ctx: PartyContext, options: IntersectOptions) -> None:
    from isthmus.protocols.psi import intersect

    if ctx.role not in ("guest", "host"):
        return
    table = party_table(ctx)
    result = intersect(ctx.channel, ctx.role, table.ids, method=options.method, dedupe=options.dedupe,
                       guest=ctx.spec.one("guest"), hosts=ctx.spec.with_role("host"),
                       progress=lambda stage, fraction: ctx.events.emit(step="intersect", stage=stage,
                                                                        progress=round(fraction, 3)))
    if result.size == 0:
        raise DataError(f"party {ctx.party!r}: no id is shared by all parties (step intersect); nothing to train on")
    if result.size < options.min_shared_rows:
        raise DataError(f"party {ctx.party!r}: {result.size} shared rows, fewer than the job's min_shared_rows "
                        f"({options.min_shared_rows}) (step intersect)")
    if options.keep_all_rows:
        ctx.state[OVERLAP] = result.positions
    else:
        ctx.table = table.take(result.positions)
    ctx.events.emit(step="intersect", own_rows=table.n_rows, shared_rows=result.size)


STEP = StepKind("intersect", parse_with(IntersectOptions), run)
