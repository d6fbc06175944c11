"""Runs one party's side of a job: its steps in order, over a channel to the other parties."""

from __future__ import annotations

import logging
from pathlib import Path

from isthmus.errors import ConfigError, IsthmusError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.events import EventLog
from isthmus.jobs.spec import JobSpec
from isthmus.jobs.steps import PREPARE, STEPS
from isthmus.jobs.steps.record import planned_steps
from isthmus.transport.channel import Channel


#: Roles whose failure the others survive: horizontal clients drop out and secure aggregation recovers,
#: so a failing client must not abort the federation's job.
EXPENDABLE_ROLES = frozenset({"client"})


def check_steps(spec: JobSpec) -> None:
    unknown = [s.name for s in spec.steps if s.name not in STEPS]
    if unknown:
        raise ConfigError(f"job {spec.name!r}: unknown steps {unknown}; known steps: {sorted(STEPS)}")


def abort_reason(party: str, step: str, exc: BaseException) -> str:
    """What the peers are told when a step fails here: where, and the kind of error, never its text.

    An error's text may quote this party's data (a duplicate id, a cell's value, column names, file
    paths); the peers need only to know who failed and where, the operator reads the rest locally.
    """
    return f"step {step} failed at {party} ({type(exc).__name__}; the details are in {party}'s own log)"


def run_party(spec: JobSpec, party: str, channel: Channel, run_dir: Path, *,
              certs_dir: Path | None = None) -> PartyContext:
    """Execute every step for ``party``; on failure tell the peers (so they stop) and re-raise.

    Steps that need to act before any step runs (check options, see earlier steps' messages) are
    prepared first; ``certs_dir`` holds the party's keys, for steps that sign. The peers learn only
    :func:`abort_reason`; the error itself goes to this party's events and log.
    """
    check_steps(spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = PartyContext(spec=spec, party=party, channel=channel, run_dir=run_dir, events=EventLog(run_dir, party),
                       certs_dir=certs_dir)
    current = "start"
    try:
        for step in planned_steps(ctx.spec):
            if step.name in PREPARE:
                current = step.name
                PREPARE[step.name](ctx, step.options)
        for step in planned_steps(ctx.spec):
            current = step.name
            ctx.events.emit(step=step.name, status="running")
            STEPS[step.name](ctx, step.options)
            ctx.events.emit(step=step.name, status="done")
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, IsthmusError) else str(exc)
        ctx.events.emit(step=current, status="failed", error=message)
        logging.getLogger(f"isthmus.{party}").error("step %s failed: %s", current, message)
        if ctx.role not in EXPENDABLE_ROLES:
            channel.abort(abort_reason(party, current, exc))
        raise
    ctx.events.emit(status="finished")
    return ctx
