"""Runs one party's side of a job: its plan's steps in order, each under its own tag scope."""

from __future__ import annotations

import logging
from pathlib import Path

from isthmus.errors import IsthmusError, PeerAbortedError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.events import EventLog
from isthmus.jobs.plan import Plan, make_plan
from isthmus.jobs.spec import JobSpec
from isthmus.transport.channel import Channel

#: Roles whose failure the others survive: horizontal clients drop out and secure aggregation recovers,
#: so a failing client must not abort the federation's job.
EXPENDABLE_ROLES = frozenset({"client"})


def abort_reason(party: str, step: str, exc: BaseException) -> str:
    """What the peers are told when a step fails here: where, and the kind of error, never its text.

    An error's text may quote this party's data (a duplicate id, a cell's value, column names, file
    paths); the peers need only to know who failed and where, the operator reads the rest locally. A
    peer's own notice is passed on as it came: this party did not fail, and a peer that the one giving up
    could not tell (not listening yet) would otherwise blame it ("failed at arbiter (PeerAbortedError)").
    """
    if isinstance(exc, PeerAbortedError):
        return f"step {step} stopped at {party}, passing on {exc.reason}"
    if isinstance(exc, KeyboardInterrupt):
        return f"step {step} was interrupted at {party} (Ctrl-C or SIGTERM there)"
    peer = getattr(exc, "peer", None)  # a peer the error is about (a party's name is no secret in its federation)
    about = f" about {peer}" if isinstance(peer, str) else ""
    return f"step {step} failed at {party} ({type(exc).__name__}{about}; the details are in {party}'s own log)"


def run_party(spec: JobSpec, party: str, channel: Channel, run_dir: Path, *, certs_dir: Path | None = None,
              plan: Plan | None = None) -> PartyContext:
    """Execute ``party``'s plan (made from ``spec`` unless given); on failure tell the peers and re-raise.

    Every step prepares first (checks that need the party's files), then the steps run in order; each
    sees the channel under its own scope. ``certs_dir`` holds the party's keys, for steps that sign.
    The peers learn only :func:`abort_reason`; the error itself goes to this party's events and log.
    """
    plan = plan or make_plan(spec, party)
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = PartyContext(spec=spec, party=party, channel=channel, run_dir=run_dir, events=EventLog(run_dir, party),
                       certs_dir=certs_dir)
    for note in plan.notes:
        ctx.events.emit(step="plan", note=note)
    disclosure = plan.disclosure
    if disclosure:  # a node asked this party's consent already; `isthmus run` says it here
        ctx.events.emit(step="plan", note=f"{disclosure.headline}: {disclosure.how} (docs/security.md)")
    current = "plan"
    try:
        for step in plan.steps:
            if step.kind.prepare:
                current, ctx.channel = step.name, channel.scoped(step.scope)
                step.kind.prepare(ctx, step.options)
        for step in plan.steps:
            current, ctx.channel = step.name, channel.scoped(step.scope)
            ctx.events.emit(step=step.name, status="running")
            step.kind.run(ctx, step.options)
            ctx.events.emit(step=step.name, status="done")
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, IsthmusError) else str(exc)
        told = {"aborted_by": exc.peer} if isinstance(exc, PeerAbortedError) else {}  # the cause is elsewhere
        ctx.events.emit(step=current, status="failed", error=message, **told)
        logging.getLogger(f"isthmus.{party}").error("step %s failed: %s", current, message)
        if ctx.role not in EXPENDABLE_ROLES and not isinstance(exc, PeerAbortedError):  # see Channel.abort_after
            channel.abort(abort_reason(party, current, exc))
        raise
    ctx.events.emit(status="finished")
    return ctx
