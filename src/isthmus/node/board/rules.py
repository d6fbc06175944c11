"""Which of this node's policy rules a pending proposal meets, rule by rule, for the approvals page.

The node's own review (:func:`isthmus.node.policy.review`) decides; this only lays its checks out
beside the values the proposal asks for, so an approver sees why the proposal reached them.
"""

from __future__ import annotations

import math

from isthmus.budget import IdBudget
from isthmus.errors import IsthmusError
from isthmus.jobs.plan import Plan
from isthmus.jobs.steps.train import TrainChoice
from isthmus.node.config import NodeConfig
from isthmus.node.policy import charged_members, key_sizes, review, testable_ids, weakenings
from isthmus.node.proposal import Proposal


def policy_rows(config: NodeConfig, proposal: Proposal, testable: IdBudget | None = None) -> list[dict]:
    """One row per rule: its name, this node's setting, what the proposal asks, and whether it is met.
    ``testable``: the ids each member tested against this node today (its coordinator's budget)."""
    policy = config.policy
    try:
        plan = review(config, proposal)
    except IsthmusError as exc:  # the policy changed since the proposal arrived
        return [{"rule": "review", "setting": "-", "asked": str(exc), "met": False}]
    models, bits, rows_min, ratio = [], [], None, "no intersect step"
    for step in plan.steps:
        options = step.options.options if isinstance(step.options, TrainChoice) else step.options
        if isinstance(step.options, TrainChoice):
            models.append(step.options.algorithm.name)
        bits += [b for _, b in key_sizes(options)]
        if step.name == "intersect":
            rows_min, ratio = step.options.min_shared_rows, _number(step.options.max_peer_ratio)
    weak = weakenings(plan)
    return [
        {"rule": "proposers", "setting": _listed(policy.proposers, "every member"), "asked": proposal.proposer,
         "met": True},
        {"rule": "models", "setting": _listed(policy.models, "every model"), "asked": ", ".join(models) or "-",
         "met": True},
        {"rule": "steps", "setting": ", ".join(policy.steps), "asked": ", ".join(s.name for s in plan.steps),
         "met": True},
        {"rule": "min_key_bits", "setting": str(policy.min_key_bits), "asked": str(min(bits)) if bits else "no keys",
         "met": True},
        {"rule": "min_intersection", "setting": str(policy.min_intersection),
         "asked": str(rows_min) if rows_min is not None else "no intersect step", "met": True},
        {"rule": "max_peer_ratio", "setting": _number(policy.max_peer_ratio), "asked": ratio, "met": True},
        {"rule": "max_rows", "setting": _max_rows(config, proposal.alias_of(config.party)),
         "asked": f"table {proposal.alias_of(config.party)}" if proposal.alias_of(config.party) else "no table",
         "met": True},
        {"rule": "allow_weakening", "setting": _listed(policy.allow_weakening, "none"),
         "asked": ", ".join(weak) or "none", "met": True},
        _ids_left_today(config, plan, proposal, testable),
    ]


def _ids_left_today(config: NodeConfig, plan: Plan, proposal: Proposal, testable: IdBudget | None) -> dict:
    """What the job charges each member's max_peer_ids_per_day, beside what each has left: an approval over
    it is refused. Only this node's operator sees the charge (it tells this node's row count)."""
    row = {"rule": "max_peer_ids_per_day", "setting": _number(config.policy.max_peer_ids_per_day), "met": True}
    if testable is None:
        return {**row, "asked": "-"}
    try:
        charge = testable_ids(config, plan, proposal.alias_of(config.party))
    except IsthmusError as exc:
        return {**row, "asked": str(exc), "met": False}
    if charge == math.inf:
        return {**row, "asked": "no max_peer_ratio: any number of ids", "met": False}
    left = {member: testable.left(member) for member in charged_members(proposal, config.party)}
    return {**row, "asked": f"{charge:,.0f} ids from each of {', '.join(left) or 'no one'}; left today: "
                            + (", ".join(f"{member} {ids:,.0f}" for member, ids in left.items()) or "-"),
            "met": all(ids >= charge for ids in left.values())}


def _max_rows(config: NodeConfig, alias: str | None) -> str:
    entry = config.options.catalogue.get(alias) if alias else None
    limits = [n for n in (entry.max_rows if entry else None, config.policy.max_rows) if n is not None]
    return str(min(limits)) if limits else "none"


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def _listed(values: list[str] | None, default: str) -> str:
    return default if values is None or (not values and default == "none") else ", ".join(values) or "none"
