"""The `binning` and `select` steps: WOE/IV of every party's columns, then keeping the informative ones.

`binning`: each party bins its own columns; the guest computes WOE and IV of its columns locally and
of the hosts' columns from their encrypted per-bin label sums (:mod:`isthmus.protocols.binning`).
Each party writes `iv.json`: the guest its own columns' WOE/IV and the hosts' by column position (it
never learns their names or split points); a host its split points, which stay with it.

`select`: the guest keeps columns by IV (threshold and/or top-k over all parties' columns) and tells
each host which of its own to keep; every party then drops the others from its table, so later steps
use only the kept columns. Each party writes `selection.json`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import Field

from isthmus.algorithms.base import KeyBits
from isthmus.errors import ConfigError, DataError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.steps.data import party_table
from isthmus.jobs.steps.kind import DATA_ROLES, StepKind, data_roles, parse_with
from isthmus.ml.binning import QuantileBinner, WoeIv, woe_iv
from isthmus.options import Options
from isthmus.protocols.binning import (
    hetero_woe_iv_guest,
    hetero_woe_iv_host,
    select_features_guest,
    select_features_host,
)

class BinningOptions(Options):
    bins: int = Field(10, ge=2, le=255)
    key_bits: KeyBits = 2048


class SelectOptions(Options):
    iv_threshold: float | None = Field(None, ge=0)
    top_k: int | None = Field(None, ge=1)


def run_binning(ctx: PartyContext, options: BinningOptions) -> None:
    bins, key_bits = options.bins, options.key_bits
    if ctx.role not in DATA_ROLES:
        return
    table = party_table(ctx)
    guest = ctx.spec.one("guest")
    if ctx.role == "host":
        binner = hetero_woe_iv_host(ctx.channel, table.features, guest, bins=bins)
        ctx.write_json("iv.json", {"party": ctx.party, "computed_by": guest, "features": {
            name: {"split_points": points} for name, points in zip(table.feature_names, binner.split_points_)}})
        return
    if table.label is None:
        raise ConfigError(f"guest {ctx.party!r} needs a 'label' column for WOE/IV")
    events = _events(table.label)
    binner = QuantileBinner(bins).fit(table.features)
    own = woe_iv(binner.transform(table.features), events, binner.bins + 1)
    hosts = hetero_woe_iv_guest(ctx.channel, events, ctx.spec.with_role("host"), key_bits=key_bits)
    ctx.state["iv"] = {ctx.party: own.iv, **{host: result.iv for host, result in hosts.items()}}
    report = {ctx.party: _per_feature(own, table.feature_names)}
    report.update({host: _per_feature(result, [str(i) for i in range(len(result.iv))]) for host, result in hosts.items()})
    ctx.write_json("iv.json", {"party": ctx.party, "bins": bins, "missing_bin": "last", "parties": report})
    ctx.events.emit(step="binning", features=sum(len(iv) for iv in ctx.state["iv"].values()),
                    best_iv=round(float(max((iv.max(initial=0) for iv in ctx.state["iv"].values()), default=0)), 4))


def _events(label: np.ndarray) -> np.ndarray:
    """The label as 0/1 events: of two values, the larger is the event, as the classifiers take it."""
    values = np.unique(label)
    if len(values) > 2:
        raise DataError(f"WOE/IV needs a binary label; the guest's has {len(values)} values")
    return (label == values[-1]).astype(np.float64) if len(values) == 2 else label


def _per_feature(result: WoeIv, names: list[str]) -> dict[str, dict]:
    """IV and, per bin (the missing-value bin last), WOE and counts of one party's columns."""
    return {name: {"iv": float(result.iv[f]), "woe": result.woe[f], "events": result.events[f],
                   "non_events": result.non_events[f]} for f, name in enumerate(names)}


def run_select(ctx: PartyContext, options: SelectOptions) -> None:
    if ctx.role not in DATA_ROLES:
        return
    table = party_table(ctx)
    guest = ctx.spec.one("guest")
    if ctx.role == "guest":
        masks = select_features_guest(ctx.channel, ctx.state["iv"], threshold=options.iv_threshold,
                                      top_k=options.top_k)
        keep = masks[ctx.party]
        hosts_kept = {host: int(mask.sum()) for host, mask in masks.items() if host != ctx.party}
    else:
        keep = select_features_host(ctx.channel, len(table.feature_names), guest)
        hosts_kept = {}
    names = np.array(table.feature_names, dtype=object)
    ctx.table = replace(table, features=np.ascontiguousarray(table.features[:, keep]),
                        feature_names=names[keep].tolist())
    ctx.write_json("selection.json", {"party": ctx.party, "kept": names[keep].tolist(),
                                      "dropped": names[~keep].tolist(),
                                      **({"host_columns_kept": hosts_kept} if hosts_kept else {})})
    ctx.events.emit(step="select", kept=int(keep.sum()), dropped=int((~keep).sum()))


BINNING = StepKind("binning", parse_with(BinningOptions), run_binning, roles=data_roles)
SELECT = StepKind("select", parse_with(SelectOptions), run_select, after="binning", roles=data_roles)
