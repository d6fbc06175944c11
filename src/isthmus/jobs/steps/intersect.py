"""The `intersect` step: guest and hosts align their rows on the shared ids (private set intersection).

With ``keep_all_rows: true`` the tables keep every row and the step only records the shared rows'
positions, in the agreed order, for the train step (``Party.overlap``): transfer learning trains on
rows only one party has. PSI runs, and reveals, exactly the same either way.

PSI hands every party the shared rows in an order drawn afresh by each run's keys; the step puts them in
an order fixed by the job's name and the ids (:func:`agreed_order`), so the same job on the same data holds
out the same rows, draws the same batches and trains the same model twice.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
from pydantic import Field

from isthmus.compute import current
from isthmus.data.ids import DEDUPE_MODES, canonical_id
from isthmus.data.partitions import (
    PARTITIONED_SUFFIXES,
    RowSelection,
    TablePartitions,
    load_rows,
    row_selection,
    table_partitions,
)
from isthmus.errors import DataError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.steps.data import missing_policy, own_data, party_table
from isthmus.jobs.steps.kind import DATA_ROLES, StepKind, data_roles, parse_with
from isthmus.options import Options
from isthmus.protocols.psi import METHODS


class IntersectOptions(Options):
    method: Literal[METHODS] = "ecdh"  # type: ignore[valid-type]
    dedupe: Literal[DEDUPE_MODES] = "error"  # type: ignore[valid-type]
    keep_all_rows: bool = False
    #: Fewer shared rows than this and the job stops before any model sees them (a node's policy sets a floor).
    min_shared_rows: int = Field(1, ge=1)
    #: One side holding more than this many times the other's ids stops the step before any id is blinded: each
    #: side learns which of its ids the other holds, so made-up ids (every phone number) would test membership.
    #: None: no limit (a node's policy may refuse that).
    max_peer_ratio: float | None = Field(100.0, gt=0)


#: Where `intersect` leaves the shared rows' positions when it keeps all rows (``ctx.state``).
OVERLAP = "overlap"


def run(ctx: PartyContext, options: IntersectOptions) -> None:
    from isthmus.protocols.psi import intersect

    if ctx.role not in DATA_ROLES:
        return
    partitions = _partitions(ctx, options)
    if partitions is None:
        table = party_table(ctx)
        ids: np.ndarray | TablePartitions = table.ids
    else:
        selection = _selection(ctx, partitions)  # the header's checks, before any peer is kept waiting on us
        ids = partitions
    result = intersect(ctx.channel, ctx.role, ids, method=options.method, dedupe=options.dedupe,
                       guest=ctx.spec.one("guest"), hosts=ctx.spec.with_role("host"),
                       max_peer_ratio=options.max_peer_ratio,
                       progress=lambda stage, fraction: ctx.events.emit(step="intersect", stage=stage,
                                                                        progress=round(fraction, 3)))
    if result.size == 0:
        raise DataError(f"party {ctx.party!r}: no id is shared by all parties (step intersect); nothing to train on")
    if result.size < options.min_shared_rows:
        raise DataError(f"party {ctx.party!r}: {result.size} shared rows, fewer than the job's min_shared_rows "
                        f"({options.min_shared_rows}) (step intersect)")
    if partitions is not None:
        own_rows = sum(result.partition_rows)
        shared = load_rows(current(), partitions, selection, result.partition_rows, result.positions)
        ctx.table = shared.take(agreed_order(shared.ids, job=ctx.spec.name, party=ctx.party))
        ctx.events.emit(step="load", rows=ctx.table.n_rows, features=len(ctx.table.feature_names), shared_only=True)
    else:
        own_rows = table.n_rows
        positions = result.positions[agreed_order(table.ids[result.positions], job=ctx.spec.name, party=ctx.party)]
        if options.keep_all_rows:
            ctx.state[OVERLAP] = positions
        else:
            ctx.table = table.take(positions)
    ctx.events.emit(step="intersect", own_rows=own_rows, shared_rows=result.size)


def agreed_order(shared_ids: np.ndarray, *, job: str, party: str) -> np.ndarray:
    """The permutation that sorts the shared rows by a hash of the job's name and their canonical ids: the
    same at every party, since each holds the same ids, and the same in every run of the job, unlike PSI's
    order. A hash rather than the ids' own order, because ids often follow account age or branch, and
    trainers cut held-out rows and batches from this order; salted with the job's name, so that a party
    without the ids (an arbiter) cannot link a row of one job with the same customer's row in another.
    It tells a party with the ids nothing new: it knows the shared ids already."""
    salted = hashlib.sha256(f"isthmus shared rows\0{job}\0".encode())  # job names hold no NUL
    digests = []
    for row, raw in enumerate(shared_ids):
        digest = salted.copy()
        digest.update(canonical_id(raw, party=party, row=row).encode())
        digests.append(digest.digest())
    return np.argsort(np.array(digests, dtype="S32"), kind="stable")


def _partitions(ctx: PartyContext, options: IntersectOptions) -> TablePartitions | None:
    """The party's file in partitions when its backend is a cluster: its tasks then read the ids for PSI (per
    partition, canonicalised, and for ECDH hashed and blinded there) and afterwards only the shared rows, so this
    process never holds the whole table. None (the whole table read here, as on the local pool) when the backend
    is local, the table is already loaded, the file cannot be cut (gzip, .npz) or the job keeps every row."""
    path = own_data(ctx).path
    if (not current().remote or ctx.table is not None or options.keep_all_rows
            or not str(path).lower().endswith(PARTITIONED_SUFFIXES)):
        return None
    return table_partitions(path, party=ctx.party, id_column=own_data(ctx).id)


def _selection(ctx: PartyContext, partitions: TablePartitions) -> RowSelection:
    data = own_data(ctx)
    return row_selection(partitions, label_column=data.label, feature_columns=data.features, exclude=data.exclude,
                         missing=missing_policy(ctx.spec))


STEP = StepKind("intersect", parse_with(IntersectOptions), run, roles=data_roles)
