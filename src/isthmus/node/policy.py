"""A node's decision on a proposal: accept, or refuse naming the rule it breaks.

The proposal is first planned as this party's own job (:func:`isthmus.jobs.plan.make_plan`), so its
options are type-checked exactly as a run would check them; the policy then looks at the typed plan.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

from isthmus.data.table import count_rows, open_columns
from isthmus.errors import ConfigError, DataError, IsthmusError
from isthmus.jobs.plan import ADDED_STEPS, Plan, make_plan
from isthmus.jobs.steps.train import TrainChoice
from isthmus.node.config import NodeConfig
from isthmus.node.proposal import Proposal, ProposalError, job_for

_log = logging.getLogger(__name__)


class Refusal(IsthmusError):
    """Why a node refuses a proposal: ``rule`` names the policy rule, the message says what broke it."""

    def __init__(self, rule: str, message: str):
        super().__init__(f"{rule}: {message}")
        self.rule = rule


def review(config: NodeConfig, proposal: Proposal) -> Plan:
    """This node's plan for ``proposal`` if its policy accepts it; otherwise a :class:`Refusal`."""
    policy, me = config.policy, config.party
    if policy.proposers is not None and proposal.proposer not in policy.proposers:
        raise Refusal("proposers", f"{proposal.proposer!r} may not propose jobs to {me!r}")
    if me not in proposal.parties:
        raise Refusal("participant", f"{me!r} is not a party of this job")
    try:
        plan = make_plan(job_for(proposal, me, config.options.catalogue, base=config.base), me)
    except ProposalError as exc:
        raise Refusal(exc.rule, str(exc)) from None
    except ConfigError as exc:
        raise Refusal("options", str(exc)) from None
    for step in plan.steps:
        if step.name not in policy.steps and step.name not in ADDED_STEPS:
            raise Refusal("steps", f"step {step.name!r} is not accepted here (accepted: {', '.join(policy.steps)})")
        options = step.options.options if isinstance(step.options, TrainChoice) else step.options
        if isinstance(step.options, TrainChoice) and policy.models is not None \
                and step.options.algorithm.name not in policy.models:
            raise Refusal("models", f"model {step.options.algorithm.name!r} is not accepted here "
                                    f"(accepted: {', '.join(policy.models) or 'none'})")
        for where, bits in key_sizes(options):
            if bits < policy.min_key_bits:
                raise Refusal("min_key_bits", f"step {step.name!r}: {where} = {bits} is below this node's minimum "
                                              f"of {policy.min_key_bits}")
        if step.name == "intersect" and step.options.min_shared_rows < policy.min_intersection:
            raise Refusal("min_intersection", f"the intersect step's min_shared_rows ({step.options.min_shared_rows}) "
                                              f"is below this node's minimum of {policy.min_intersection}")
        if step.name == "intersect" and policy.max_peer_ratio is not None and (
                step.options.max_peer_ratio is None or step.options.max_peer_ratio > policy.max_peer_ratio):
            ratio, limit = step.options.max_peer_ratio, policy.max_peer_ratio
            raise Refusal("max_peer_ratio", f"the intersect step sets no max_peer_ratio; this node's limit is {limit:g}"
                          if ratio is None else
                          f"the intersect step's max_peer_ratio ({ratio:g}) is above this node's limit of {limit:g}")
    if plan.first("intersect") is None and any(entry.get("data") for entry in proposal.parties.values()) \
            and plan.job.with_role("guest"):
        raise Refusal("min_intersection", "a vertical job must intersect, with min_shared_rows of at least "
                                          f"{policy.min_intersection}")
    _check_readable(config, proposal.alias_of(me))
    _check_max_rows(config, proposal.alias_of(me))
    for weakening in weakenings(plan):
        if weakening not in policy.allow_weakening:
            raise Refusal("allow_weakening", f"the job uses {weakening}{_because(plan, weakening)}, which weakens "
                                             "privacy; this node never accepts it (policy.allow_weakening)")
    return plan


def _because(plan: Plan, weakening: str) -> str:
    """What a weakening the name alone does not explain means for this job."""
    disclosure = plan.disclosure
    return f" ({disclosure.how})" if disclosure and disclosure.weakening == weakening else ""


def table_problem(config: NodeConfig, alias: str) -> str | None:
    """Why this node cannot read its catalogue table ``alias`` now (missing file, a column the catalogue
    names that the header lacks), naming the file: for this node's operator only. Reads headers only."""
    entry = config.options.catalogue[alias]
    try:
        for path in (p for p in (entry.path, entry.test) if p is not None):
            open_columns(config.path(path), party=config.party, id_column=entry.id, label_column=entry.label,
                         feature_columns=entry.features, exclude=entry.exclude)
    except DataError as exc:
        return str(exc)
    return None


def _check_readable(config: NodeConfig, alias: str | None) -> None:
    """Refuse a job on a table this node cannot read: accepted, it failed only once every party had started."""
    problem = None if alias is None else table_problem(config, alias)
    if problem is not None:  # the reason reaches the proposer: it names the table, never the file
        _log.warning("node %s refuses a job on table %r: %s", config.party, alias, problem)
        raise Refusal("alias", f"this node cannot read its table {alias!r} now (its operator's log says why)")


def _check_max_rows(config: NodeConfig, alias: str | None) -> None:
    """Refuse a job on a table holding more rows than the policy lets one job use.

    The whole table is compared, not what the intersection keeps: how many rows a job ends up using
    depends on the other parties' tables, which this node does not see when it decides.
    """
    if alias is None:
        return
    entry = config.options.catalogue[alias]
    limits = [n for n in (entry.max_rows, config.policy.max_rows) if n is not None]
    if not limits:
        return
    try:
        rows = count_rows(config.path(entry.path), party=config.party, id_column=entry.id)
    except DataError:  # its message names the file, which must not reach the proposer
        raise Refusal("max_rows", f"this node cannot count the rows of its table {alias!r}") from None
    if rows > min(limits):  # the reason reaches the proposer: it says the table is larger, not how large
        raise Refusal("max_rows", f"table {alias!r} holds more rows than the {min(limits)} this node lets one job "
                                  "use (max_rows)")


def charged_members(proposal: Proposal, me: str) -> list[str]:
    """The members ``proposal`` lets test ids against ``me``'s table: its other parties that bring data."""
    return [party for party, entry in proposal.parties.items() if party != me and entry.get("data")]


def testable_ids(config: NodeConfig, plan: Plan, alias: str | None) -> float:
    """How many ids each other data party of ``plan`` may test against this node's table ``alias`` through the
    plan's intersect step: its max_peer_ratio times the table's rows (unbounded without a ratio; none without an
    intersect step or a table here)."""
    step = plan.first("intersect")
    if step is None or alias is None:
        return 0
    if step.options.max_peer_ratio is None:
        return math.inf
    entry = config.options.catalogue[alias]
    try:
        rows = count_rows(config.path(entry.path), party=config.party, id_column=entry.id)
    except DataError:  # its message names the file, which must not reach the proposer
        raise Refusal("max_peer_ids_per_day", f"this node cannot count the rows of its table {alias!r}") from None
    return math.ceil(step.options.max_peer_ratio * rows)


def weakenings(plan: Plan) -> list[str]:
    """The privacy-weakening choices the plan makes, by the names a policy lists (a model's disclosure at the
    party whose data it discloses only: ``labels_to_hosts`` at the guest)."""
    found = []
    if plan.job.options.benchmark_only_plaintext:
        found.append("benchmark_only_plaintext")
    contribution = plan.first("contribution")
    if contribution is not None and contribution.options.reveal_updates:
        found.append("reveal_updates")
    train = plan.first("train")
    options = train.options.options if train is not None else None
    if getattr(options, "secure_aggregation", True) is False and "reveal_updates" not in found:
        found.append("secure_aggregation_off")
    if options is not None and "dp" in type(options).model_fields and options.dp is None:
        found.append("dp_off")
    disclosure = plan.disclosure
    if disclosure:
        found.append(disclosure.weakening)
    return found


def key_sizes(options: Any, where: str = "") -> Iterator[tuple[str, int]]:
    """Every ``key_bits`` in typed options, nested options included."""
    fields = getattr(type(options), "model_fields", {})
    for name in fields:
        value = getattr(options, name)
        if name == "key_bits" and isinstance(value, int):
            yield where + name, value
        elif hasattr(type(value), "model_fields"):
            yield from key_sizes(value, f"{where}{name}.")
