"""What a step is: its options, parsed when the job loads, and what it does at every party."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from isthmus.jobs.context import PartyContext
from isthmus.jobs.spec import JobSpec
from isthmus.options import Options

#: Raw options of the job file -> the step's typed options; ``where`` names party and step in errors.
Parse = Callable[..., Any]
#: The roles of a vertical job that hold rows: the steps on rows (PSI, the alignment check, binning, joint
#: scoring) are between them; the arbiter holds none.
DATA_ROLES = frozenset({"guest", "host"})


def every_role(options: Any) -> None:
    """A step that every party takes part in."""


def data_roles(options: Any) -> frozenset[str]:
    """A step between the parties that hold rows (a horizontal job's evaluation sends nothing at all)."""
    return DATA_ROLES


@dataclass(frozen=True)
class StepKind:
    name: str
    #: ``parse(raw, spec=job, where=...)``: the step's typed options, or a ConfigError.
    parse: Parse
    #: ``run(ctx, options)`` at every party, in plan order.
    run: Callable[[PartyContext, Any], None]
    #: ``prepare(ctx, options)`` before any step runs: checks that need the party's files (keys, tables),
    #: so that no job trains for an hour to fail at its last step.
    prepare: Callable[[PartyContext, Any], None] | None = None
    #: A step of this name must come earlier in the job (checked when the plan is made, before anything runs).
    after: str | None = None
    #: ``roles(options)``: the roles that exchange messages in this step; None: every party's. A party waits
    #: before its first step only for the peers it meets in some step.
    roles: Callable[[Any], frozenset[str] | None] = every_role


def parse_with(options: type[Options]) -> Parse:
    """The parser of a step whose options are one :class:`Options` class."""

    def parse(raw: Mapping[str, Any], *, spec: JobSpec, where: str) -> Options:
        return options.parse(raw, where=where)

    return parse
