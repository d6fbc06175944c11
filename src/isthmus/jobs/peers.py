"""Before a party's first step: wait until the peers it cannot do without are listening.

Without this, a party whose first act is to receive (a host waiting for the guest's PSI hello) would
wait the job's whole message ``timeout`` for a peer that never started. Listening is checked with a
plain TCP connection to the peer's address, which carries no data; who answers is checked by mutual
TLS on the first real message.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

from isthmus.errors import PeerUnreachableError
from isthmus.jobs.plan import Plan
from isthmus.jobs.runner import EXPENDABLE_ROLES
from isthmus.jobs.spec import JobSpec

_RETRY_S = 0.2
#: Peers that listen within this many seconds (parties started together) are waited for without a word.
_QUIET_S = 1.0


def needed_peers(plan: Plan) -> list[str]:
    """The peers this party meets in some step of its plan, but those whose absence the job survives (horizontal
    clients). A party that meets nobody (an arbiter listed in a PSI-only job, or in SecureBoost's, where it
    idles) finishes at once, often before a slower peer first looked for it, which then waited its whole
    connect timeout for it and failed saying "start it"."""
    return [name for name, role in _met(plan) if role not in EXPENDABLE_ROLES]


def expendable_peers(plan: Plan) -> list[str]:
    """The peers this party meets whose absence the job survives: a horizontal aggregator's clients."""
    return [name for name, role in _met(plan) if role in EXPENDABLE_ROLES]


def _met(plan: Plan) -> list[tuple[str, str]]:
    """(name, role) of every peer this party meets in some step of its plan."""
    roster, me = plan.job.roster, plan.job.role_of(plan.party)
    met: set[str] = set()
    for step in plan.steps:
        roles = step.kind.roles(step.options)
        roles = set(roster.roles.values()) if roles is None else roles
        if me in roles:
            met |= roles
    return [(name, role) for name, role in sorted(roster.roles.items()) if name != plan.party and role in met]


def wait_for_peers(plan: Plan, *, timeout: float, check_abort: Callable[[], None] = lambda: None,
                   heard_from: Callable[[], set[str]] = set,
                   on_reached: Callable[[list[str]], None] = lambda peers: None) -> None:
    """Return once every needed peer accepts a connection; after ``timeout`` raise naming every one that did not.

    ``check_abort`` raises once a peer has given up on the job (it may fail and exit before this party
    ever sees it listening), so that waiting for it stops at once. ``heard_from`` names the peers that
    have already delivered to this job: they count as reached, since a quick peer may send everything
    it has to send and exit before a slow party first looks for it. ``on_reached`` is called with the
    peers reached since its last call, as they come.
    """
    spec, party, started = plan.job, plan.party, time.monotonic()
    deadline, missing = started + timeout, needed_peers(plan)
    log, said = logging.getLogger(f"isthmus.{party}"), None
    while True:
        check_abort()
        reached = [name for name in missing
                   if name in heard_from() or _listening(spec.parties[name].address, deadline)]
        if reached:
            on_reached(reached)
            missing = [name for name in missing if name not in reached]
        if not missing:
            if said:
                log.info("step=connect every peer listens, after %.0f s", time.monotonic() - started)
            return
        if missing != said and time.monotonic() - started >= _QUIET_S:  # a wait worth telling the operator of
            log.info("step=connect waiting for %s, for at most %g s (connect_timeout)", _where(spec, missing), timeout)
            said = missing
        if time.monotonic() >= deadline:
            break
        time.sleep(_RETRY_S)
    where = _where(spec, missing)
    them = "it" if len(missing) == 1 else "them"
    raise PeerUnreachableError(
        f"party {party!r} of job {spec.name!r} waited {timeout:g} s (the job's connect_timeout) for its peers; "
        f"nothing listens where {where} should: start {them}, or check the job's addresses",
        peer=missing[0], address=spec.parties[missing[0]].address)


def _where(spec: JobSpec, parties: list[str]) -> str:
    return " and ".join(f"{name!r} ({spec.parties[name].address})" for name in parties)


def listening_peers(spec: JobSpec, party: str, *, wait: float = 0.5) -> list[str]:
    """The peers listening now: those a party interrupted while connecting can tell at once. Telling one
    that has not started would retry for a whole connect timeout after the operator pressed Ctrl-C."""
    deadline = time.monotonic() + wait
    return [name for name in sorted(spec.parties) if name != party and _listening(spec.parties[name].address, deadline)]


def _listening(address: str, deadline: float) -> bool:
    host, _, port = address.rpartition(":")
    wait = min(1.0, max(deadline - time.monotonic(), 0.05))
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=wait):
            return True
    except OSError:
        return False
