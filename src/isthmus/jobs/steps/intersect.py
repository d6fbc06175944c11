"""The `intersect` step: guest and hosts align their rows on the shared ids (private set intersection).

With ``keep_all_rows: true`` the tables keep every row and the step only records the shared rows'
positions, in the agreed order, for the train step (``Party.overlap``): transfer learning trains on
rows only one party has. PSI runs, and reveals, exactly the same either way.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from isthmus.compute import current
from isthmus.data.ids import DEDUPE_MODES
from isthmus.data.partitions import PARTITIONED_SUFFIXES, TablePartitions, table_partitions
from isthmus.data.table import PartyTable
from isthmus.errors import DataError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.steps.data import own_data, party_table
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
    result = intersect(ctx.channel, ctx.role, _ids(ctx, options, table), method=options.method, dedupe=options.dedupe,
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


def _ids(ctx: PartyContext, options: IntersectOptions, table: PartyTable) -> np.ndarray | TablePartitions:
    """A host on a cluster has its ids read, canonicalised and blinded by the cluster's tasks per partition of its
    file (ECDH; Parquet or CSV), instead of from the table in this process (which the job still loads whole,
    for the steps after this one)."""
    path = own_data(ctx).path
    if (ctx.role != "host" or options.method != "ecdh" or not current().remote
            or not str(path).lower().endswith(PARTITIONED_SUFFIXES)):
        return table.ids
    return table_partitions(path, party=ctx.party, id_column=own_data(ctx).id)


STEP = StepKind("intersect", parse_with(IntersectOptions), run)
