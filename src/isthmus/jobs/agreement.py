"""Before its first step, a party checks that the peers it meets run the same job as it does.

Each party runs its side from its own copy of the job file, and with its own `--record`: copies that
differed in a step, an option, a party or an address ran until one party waited for a message its peer's
job never sends (a `record` step that only the guest had failed after 60 s, its peers long gone; one
more epoch at one party than at the other, the same). Each party sends the peers it meets the job as it
reads it, only its shared parts (never a data path: each party's `--data` is its own), and compares
theirs with its own: a difference stops the job before anything else is sent, naming the peer and
the first difference on both sides. So does a peer running another isthmus release, whose messages may
differ where its job does not. A horizontal aggregator, which waits for no client, answers each
client's summary whenever it comes, and the client that differs stops alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from isthmus import __version__
from isthmus.errors import ConfigError, PeerAbortedError, PeerError, PeerTimeoutError, ProtocolError, printable
from isthmus.jobs.peers import needed_peers
from isthmus.jobs.plan import Plan
from isthmus.jobs.steps.train import TrainChoice
from isthmus.options import Options
from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel
from isthmus.transport.mailbox import ABORT_TAG

TAG = "plan/agreement"
#: Job-level options each party may set for itself: `--resume` (an aggregator's) and `--record`, which shows
#: as a `record` step where it matters.
OWN_OPTIONS = {"resume", "record"}
_SHOWN = 80  # characters of a peer's value quoted in an error
_ANSWER_POLL_S = 1.0  # how soon an aggregator's answering of summaries notices that the job ended
_RUNNING_SIGNS = {TAG, ABORT_TAG}  # deliveries that show a peer runs its job now: its summary, its giving up


def job_summary(plan: Plan) -> dict[str, Any]:
    """The job as this party runs it, as every party must: parties, job options, steps and their options."""
    spec = plan.job
    return {"isthmus": __version__,
            "job": spec.name,
            "parties": {name: [party.role, party.address] for name, party in sorted(spec.parties.items())},
            "options": spec.options.model_dump(mode="json", exclude=OWN_OPTIONS),
            "steps": [[step.name, _options(step.options)] for step in plan.steps]}


def _options(options: Options | TrainChoice) -> dict[str, Any]:
    if isinstance(options, TrainChoice):
        return {"model": options.algorithm.name, **options.options.model_dump(mode="json")}
    return options.model_dump(mode="json")


class JobMismatchError(ConfigError):
    """``peer`` runs the job otherwise than this party."""

    def __init__(self, message: str, *, peer: str):
        super().__init__(message)
        self.peer = peer


def check_same_job(channel: Channel, plan: Plan, peers: list[str]) -> None:
    """Send ``peers`` this party's :func:`job_summary`, then compare theirs with it. Every summary is in before
    any comparison, so a party that stops on a difference has had every peer's (and none is left sending to a
    party gone; each party finds the difference itself)."""
    mine = job_summary(plan)
    for peer in peers:
        channel.send(peer, TAG, mine)
    summaries = {peer: channel.recv(peer, TAG) for peer in peers}
    for peer, theirs in summaries.items():
        _check(mine, peer, theirs)


def answer_summaries(channel: Channel, plan: Plan, clients: list[str], stop: threading.Event,
                     leave_out: Callable[[str, str], None]) -> None:
    """A horizontal aggregator's side, until ``stop`` is set: answer each client's summary with its own, when
    it comes (the aggregator waits for no client, and clients may start late), and ``leave_out(client, why)``
    one that runs another job, or sends garbage. That client finds the difference too and stops; the rounds go
    on without it. It had trained under another model's protocol, unheard, and the aggregator failed after
    round_timeout saying it never sent its columns."""
    mine, asking = job_summary(plan), list(clients)
    while asking and not stop.is_set():
        try:
            client, theirs = channel.recv_any(asking, TAG, timeout=_ANSWER_POLL_S)
        except PeerTimeoutError:
            continue
        except PeerAbortedError:
            return
        except ProtocolError as exc:  # bytes that do not decode
            asking.remove(exc.peer)
            leave_out(exc.peer, str(exc))
            continue
        try:
            channel.send(client, TAG, mine)
            _check(mine, client, theirs)
        except (PeerError, ProtocolError, JobMismatchError) as exc:
            asking.remove(client)
            leave_out(client, str(exc))


def _check(mine: dict[str, Any], peer: str, theirs: Any) -> None:
    if isinstance(theirs, dict) and theirs.get("isthmus") != mine["isthmus"]:  # before its shape: it may differ
        release = theirs.get("isthmus", "an earlier release (one that does not say)")
        raise JobMismatchError(f"party {peer!r} runs another isthmus release: "
                               f"{_differ('isthmus', mine['isthmus'], release)}; every party of a job needs the same "
                               "release", peer=peer)
    difference = first_difference(mine, Inspect(peer, TAG).mapping(theirs, set(mine), exact=True))
    if difference:
        raise JobMismatchError(f"party {peer!r} runs another job than this one: {difference}; every party needs "
                               "the same job file (and the same --record)", peer=peer)


def peer_running_another(plan: Plan, unopened: dict[str, list[tuple[str, str]]]) -> JobMismatchError | None:
    """Whether a peer this party meets sent it the summary of a job of another name, or gave up on one
    (``unopened``: the deliveries refused because their job is not open here), as the error to stop with. That
    peer started the other job with this party's address; having failed to hand its summary over, it ended,
    and this party waited for it a whole connect timeout, then said nothing listened there."""
    for peer in needed_peers(plan):
        other = next((job for job, tag in unopened.get(peer, [])
                      if tag in _RUNNING_SIGNS and job != plan.job.name), None)
        if other is not None:
            return JobMismatchError(f"party {peer!r} runs another job than this one: "
                                    f"{_differ('job', plan.job.name, other)}; every party needs the same job file",
                                    peer=peer)
    return None


def first_difference(mine: dict[str, Any], theirs: dict[str, Any]) -> str | None:
    """Where two summaries first differ, in words: here, then at the peer."""
    for key in ("job", "parties", "options"):
        if mine[key] != theirs[key]:
            return _differ(key, mine[key], theirs[key])
    steps, their_steps = mine["steps"], theirs["steps"]
    names = [step[0] for step in steps]
    their_names = [step[0] for step in their_steps] if _steps(their_steps) else None
    if names != their_names:
        return _differ("steps", ", ".join(names),
                       their_steps if their_names is None else ", ".join(map(str, their_names)))
    for index, ((name, options), (_, their_options)) in enumerate(zip(steps, their_steps, strict=True)):
        if options != their_options:
            keys = [*options, *(k for k in their_options if k not in options)] if isinstance(their_options, dict) \
                else []  # in order, unsorted: a peer's keys need not be text
            key = next((k for k in keys if options.get(k) != their_options.get(k)), None)
            if key is None:
                return _differ(f"step {index} {name!r}", options, their_options)
            return _differ(f"step {index} {name!r}, option {key!r}", options.get(key, "(unset)"),
                           their_options.get(key, "(unset)"))
    return None


def _steps(steps: Any) -> bool:
    return isinstance(steps, list) and all(isinstance(step, list) and len(step) == 2 for step in steps)


def _differ(what: str, mine: Any, theirs: Any) -> str:
    return f"{what}: {_shown(mine)} here, {_shown(theirs)} there"


def _shown(value: Any) -> str:
    text = printable(value) if isinstance(value, str) else repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
