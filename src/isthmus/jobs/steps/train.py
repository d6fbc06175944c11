"""The `train` step: the model the job names, trained federatedly; each party keeps its own part.

The model's name selects an algorithm from the registry; its options are parsed into the
algorithm's typed class, and the algorithm checks the job's roles, when the job loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from isthmus.algorithms.base import Algorithm, Party
from isthmus.algorithms.registry import algorithm
from isthmus.errors import ConfigError
from isthmus.jobs.context import PartyContext, Trained
from isthmus.jobs.spec import JobSpec
from isthmus.jobs.steps.data import party_table
from isthmus.jobs.steps.intersect import OVERLAP
from isthmus.jobs.steps.kind import StepKind
from isthmus.options import Options


@dataclass(frozen=True)
class TrainChoice:
    """The train step's options: which algorithm, with its typed options."""

    algorithm: Algorithm
    options: Options


def parse(raw: Mapping[str, Any], *, spec: JobSpec, where: str) -> TrainChoice:
    raw = dict(raw)
    model = raw.pop("model", None)
    if model is None:
        raise ConfigError(f"{where}: 'model' is required")
    try:
        chosen = algorithm(model)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    options = chosen.Options.parse(raw, where=f"{where} ({model})")
    try:
        chosen.check(spec.roster, options, allow_plaintext=spec.options.benchmark_only_plaintext)
    except ConfigError as exc:
        raise ConfigError(f"{where} ({model}): {exc}") from None
    return TrainChoice(chosen, options)


def prepare(ctx: PartyContext, choice: TrainChoice) -> None:
    """A party that trains on its labels (a vertical guest, a horizontal client) but whose data names none
    fails before the intersection, not after it."""
    learner = "guest" if choice.algorithm.family == "vertical" else "client"
    data = ctx.spec.party(ctx.party).data
    if ctx.role == learner and (data is None or data.label is None):
        raise ConfigError(f"party {ctx.party!r} ({learner}) needs a 'label' in its data for {choice.algorithm.name}")


def run(ctx: PartyContext, choice: TrainChoice) -> None:
    table = party_table(ctx) if ctx.spec.party(ctx.party).data else None
    party = Party(name=ctx.party, roster=ctx.spec.roster, channel=ctx.channel, table=table, workdir=ctx.run_dir,
                  progress=lambda **event: ctx.events.emit(step="train", **event),
                  resume=ctx.spec.options.resume, keys_dir=ctx.certs_dir, overlap=ctx.state.get(OVERLAP))
    part = choice.algorithm.fit(party, choice.options)
    path = part.save(ctx.run_dir)
    ctx.trained = Trained(choice.algorithm, choice.options, part)
    ctx.events.emit(step="train", status="model saved", path=str(path))


def _roles(choice: TrainChoice) -> frozenset[str]:
    return frozenset(choice.algorithm.roles) - choice.algorithm.idle_roles


STEP = StepKind("train", parse, run, prepare=prepare, roles=_roles)
