"""The `aligned` step: the parties' tables must list the same ids in the same order, when no `intersect`
step aligns them (files aligned beforehand, as the benchmarks' are).

The plan adds it before a job's first vertical step (binning, select, a vertical model's training) when
no intersect step comes first: training on rows that are not the same customers gives a model of noise
without a word, which is what a job that forgot its intersect step on two organisations' own files did.
Each host sends the guest one SHA-256 digest of its ids in table order (canonical text, as intersect
compares them), salted with the job's name; the guest compares it with its own. Equal digests mean equal
lists; a peer learns nothing from a digest unless it can guess the other's whole ordered id list.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from isthmus.data.ids import canonical_id
from isthmus.errors import DataError, ProtocolError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.steps.data import party_table
from isthmus.jobs.steps.kind import DATA_ROLES, StepKind, data_roles, parse_with
from isthmus.options import Options

TAG = "ids-digest"


class AlignedOptions(Options):
    """The check takes no options."""


def ids_digest(job: str, party: str, ids: Iterable[object]) -> bytes:
    """SHA-256 of the job's name and the ids in order, each length-prefixed so that no two lists collide."""
    digest = hashlib.sha256(f"isthmus aligned ids\0{job}\0".encode())
    for row, raw in enumerate(ids):
        value = canonical_id(raw, party=party, row=row).encode()
        digest.update(len(value).to_bytes(4, "big") + value)
    return digest.digest()


def run(ctx: PartyContext, options: AlignedOptions) -> None:
    if ctx.role not in DATA_ROLES:
        return
    table = party_table(ctx)
    mine, guest = ids_digest(ctx.spec.name, ctx.party, table.ids), ctx.spec.one("guest")
    if ctx.role == "host":
        ctx.channel.send(guest, TAG, mine)
        return
    for host in ctx.spec.with_role("host"):
        theirs = ctx.channel.recv(host, TAG)
        if type(theirs) is not bytes or len(theirs) != len(mine):
            raise ProtocolError("expected a 32-byte digest of the host's ids", peer=host, tag=TAG)
        if theirs != mine:
            raise DataError(f"the table of host {host!r} does not list the guest's {table.n_rows} ids in the same "
                            "order, and no intersect step aligns them: add `- intersect: {}` before this step")
    ctx.events.emit(step="aligned", rows=table.n_rows, hosts=len(ctx.spec.with_role("host")))


STEP = StepKind("aligned", parse_with(AlignedOptions), run, roles=data_roles)
