"""A job's plan: its steps with their options parsed into typed classes, before any step runs.

Every party makes the same plan from the same job file, so a misspelt option, a key size below the
minimum or a model the job's roles cannot run is an error naming the party, the step and the option
before the intersection starts. Changes that one step makes to another (the `record` step appended
when the job says ``record: true``; the `aligned` check before vertical steps that no intersection
precedes; secure aggregation switched off when a horizontal job consents to measuring contributions)
are explicit transforms here, listed in :attr:`Plan.notes` and written to the run log. Each step runs
under its own tag scope (``2-train/...``), so two intersections in one job never mix, and a party
accepts only the tags of its plan's steps. A job trains one model: each party keeps one part of it
(``model.json``), which its evaluation, contribution, record and serving all use.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any

from isthmus.algorithms.base import Disclosure
from isthmus.algorithms.registry import algorithm as algorithm_of
from isthmus.algorithms.registry import names
from isthmus.errors import ConfigError
from isthmus.jobs.spec import JobSpec, Step
from isthmus.jobs.steps import STEPS, StepKind
from isthmus.jobs.steps.evaluate import evaluates_alone
from isthmus.jobs.steps.train import TrainChoice
from isthmus.ml.metrics import METRICS


#: Steps a plan adds by itself, which a node's policy need not list: the ledger record (``record: true``) and
#: the alignment check of vertical steps that no intersect step precedes.
ADDED_STEPS = frozenset({"record", "aligned"})
#: Steps that read the parties' rows: an intersect step must come before every one of them.
_ROW_READERS = frozenset({"binning", "select", "train", "evaluate", "contribution"})


@dataclass(frozen=True)
class PlannedStep:
    index: int
    name: str
    kind: StepKind
    options: Any  # the step's typed options

    @property
    def scope(self) -> str:
        """The prefix of every tag this step sends or receives."""
        return f"{self.index}-{self.name}"


@dataclass(frozen=True)
class Plan:
    job: JobSpec
    party: str
    steps: tuple[PlannedStep, ...]
    notes: tuple[str, ...] = ()

    def first(self, name: str) -> PlannedStep | None:
        return next((step for step in self.steps if step.name == name), None)

    def imports(self) -> set[str]:
        """The heavy modules this party's trainings import (:attr:`Algorithm.imports`)."""
        return {module for step in self.steps if isinstance(step.options, TrainChoice)
                for module in step.options.algorithm.imports}

    def tag_prefixes(self) -> list[str]:
        """What this party accepts from its peers: the tags of its steps, nothing else."""
        return [f"{step.scope}/" for step in self.steps]

    @property
    def disclosure(self) -> Disclosure | None:
        """What this party's peers learn of its data in the training (:attr:`Algorithm.discloses` for its
        role), its ``how`` naming the model; None when nothing is measured."""
        train = self.first("train")
        found = train.options.algorithm.discloses.get(self.job.party(self.party).role) if train else None
        if found is None:
            return None
        return replace(found, how=f"{train.options.algorithm.name}: {found.how}")


def make_plan(spec: JobSpec, party: str) -> Plan:
    """Parse every step's options for ``party`` and apply the transforms; every mistake is a ConfigError
    naming the party, the step and the option."""
    spec.party(party)
    _one_training(spec)
    steps, notes = _with_added_steps(spec)
    planned = tuple(_parse(spec, party, index, step) for index, step in enumerate(steps))
    for step in planned:
        if step.kind.after and not any(earlier.name == step.kind.after for earlier in planned[:step.index]):
            raise ConfigError(f"party {party!r}, step {step.index} {step.name!r}: needs a {step.kind.after!r} step "
                              "before it")
    _intersect_first(spec)
    _metrics_apply(planned, party)
    return _measurable(Plan(spec, party, planned, tuple(notes)))


def check_someone_evaluates(plan: Plan) -> None:
    """Where one job file names every party's files (a launch), a horizontal job's evaluate step must find
    rows at someone: without, it finished with no metric and no word. (A party given `run --test` has a
    test file the shared job file does not show, so `run` cannot check this.)"""
    spec, evaluate, train = plan.job, plan.first("evaluate"), plan.first("train")
    if evaluate is None or train is None or train.options.algorithm.family != "horizontal":
        return
    if not any(evaluates_alone(spec, party) for party in spec.parties):
        raise ConfigError(f"job {spec.name!r}, step {evaluate.index} 'evaluate': no party has rows to score; give "
                          "clients held-out rows (`data: {..., test: PATH}`, same columns) or the aggregator `data`, "
                          "or leave the step out")


def _metrics_apply(planned: tuple[PlannedStep, ...], party: str) -> None:
    """The model the job trains must be one that can be evaluated, and the metrics that evaluate and
    contribution steps name must apply to it: 'rmse' for a classifier failed only after the training,
    which may take hours."""
    train = next((step for step in planned if step.name == "train"), None)
    if train is None:
        return
    choice: TrainChoice = train.options
    for step in planned:
        if step.name == "evaluate" and choice.algorithm.unevaluable:
            raise ConfigError(f"party {party!r}, step {step.index} 'evaluate': {choice.algorithm.name} has nothing "
                              f"to evaluate jointly: {choice.algorithm.unevaluable}; leave the step out")
        named = _named_metrics(step)
        if not named:
            continue
        tasks = sorted(choice.algorithm.tasks(choice.options))
        valid = {name for task in tasks for name in METRICS[task]}
        wrong = [name for name in named if name not in valid]
        if wrong:
            raise ConfigError(f"party {party!r}, step {step.index} {step.name!r}: {', '.join(map(repr, wrong))} does not "
                              f"apply to {choice.algorithm.name} (a {' or '.join(tasks)} model); its metrics: "
                              f"{', '.join(sorted(valid))}")


def _named_metrics(step: PlannedStep) -> list[str]:
    """The metrics a step names (none: it takes its task's own)."""
    if step.name == "evaluate":
        return list(step.options.metrics or [])
    if step.name == "contribution" and step.options.metric:
        return [step.options.metric]
    return []


def _one_training(spec: JobSpec) -> None:
    trainings = [index for index, step in enumerate(spec.steps) if step.name == "train"]
    if len(trainings) > 1:
        raise ConfigError(f"job {spec.name!r}: steps {trainings[0]} and {trainings[1]} both train; a job trains one "
                          "model (each party keeps it as model.json, and a second would replace the first): run "
                          "another job for another model")


def _intersect_first(spec: JobSpec) -> None:
    """An intersect step aligns the rows of the steps after it; one placed after a step that read the rows
    aligned nothing for it (a vertical train there ran on the `aligned` check, or failed it)."""
    names = [step.name for step in spec.steps]
    if "intersect" not in names:
        return
    at = names.index("intersect")
    reader = next((index for index, name in enumerate(names[:at]) if name in _ROW_READERS), None)
    if reader is not None:
        raise ConfigError(f"job {spec.name!r}: step {at} 'intersect' comes after step {reader} {names[reader]!r}, "
                          "which read the rows before they were aligned: put intersect first")


def _with_added_steps(spec: JobSpec) -> tuple[list[Step], list[str]]:
    """The job's steps with the plan's own (:data:`ADDED_STEPS`), and why each was added."""
    steps, notes = list(spec.steps), []
    if spec.options.record and not any(step.name == "record" for step in steps):
        steps.append(Step("record", {}))
        notes.append("record: true appends a `record` step: the outcome is endorsed on every party's ledger")
    unaligned = _first_unaligned(steps)
    if unaligned is not None:
        steps.insert(unaligned, Step("aligned", {}))
        notes.append("no intersect step aligns the rows: an `aligned` step first checks that every party's table "
                     "lists the same ids in the same order")
    return steps, notes


def _first_unaligned(steps: list[Step]) -> int | None:
    """Where the first step that needs the parties' rows aligned (vertical) stands, if no intersect step or
    `aligned` check comes before it."""
    for position, step in enumerate(steps):
        if step.name in ("intersect", "aligned"):
            return None
        if step.name in ("binning", "select") or (step.name == "train" and _vertical(step)):
            return position
    return None


def _vertical(train: Step) -> bool:
    try:
        return algorithm_of(train.options.get("model")).family == "vertical"
    except ConfigError:  # an unknown model: the train step's own parse says so
        return False


def _measurable(plan: Plan) -> Plan:
    """A `contribution` step needs a model whose parties can be valued; a horizontal one needs each
    round's updates in the clear, so (with the job's consent) the plan turns secure aggregation off."""
    contribution, train = plan.first("contribution"), plan.first("train")
    if contribution is None or train is None:
        return plan
    where = f"party {plan.party!r}, step {contribution.index} 'contribution'"
    choice: TrainChoice = train.options
    method = choice.algorithm.contribution
    if method is None:
        measurable = [name for name in names() if algorithm_of(name).contribution]
        raise ConfigError(f"{where}: the contributions of {choice.algorithm.name} cannot be measured; "
                          f"models that can: {', '.join(measurable)}")
    choice.algorithm.check_contribution(choice.options)
    if method != "rounds":
        return plan
    if choice.options.secure_aggregation and not contribution.options.reveal_updates:
        raise ConfigError(f"{where}: measuring a horizontal job's contributions shows the aggregator every client's "
                          "update, which secure aggregation hides: set `reveal_updates: true` to consent (it turns "
                          "secure aggregation off), or leave the step out")
    options = choice.options.model_copy(update={"secure_aggregation": False, "keep_round_updates": True})
    return with_options(plan, train, TrainChoice(choice.algorithm, options),
                        "contribution with reveal_updates: true turns secure aggregation off: the aggregator sees "
                        "each client's update and keeps every round's, to value the clients")


def _parse(spec: JobSpec, party: str, index: int, step: Step) -> PlannedStep:
    kind = STEPS.get(step.name)
    if kind is None:
        close = difflib.get_close_matches(step.name, STEPS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"job {spec.name!r}: unknown step {step.name!r}{hint}; steps: {', '.join(sorted(STEPS))}")
    where = f"party {party!r}, step {index} {step.name!r}"
    return PlannedStep(index, step.name, kind, kind.parse(step.options, spec=spec, where=where))


def with_options(plan: Plan, step: PlannedStep, options: Any, note: str) -> Plan:
    """``plan`` with ``step``'s options replaced, and why, for the run log."""
    steps = tuple(replace(s, options=options) if s is step else s for s in plan.steps)
    return replace(plan, steps=steps, notes=(*plan.notes, note))
