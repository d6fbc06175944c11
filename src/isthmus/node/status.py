"""What a node says of itself (``isthmus node status``): who it is, how long its certificate lasts, its jobs,
and, when asked, which members' nodes answer now: what an operator checks before proposing a job, or after a
member's node went quiet."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from isthmus.node.coordinator import Coordinator
from isthmus.transport.certs import WARN_DAYS
from isthmus.transport.keyfiles import FEDERATION_FILE, NEXT_KEY, PARTY_CERT, load_certificate, load_pinned_tls_keys

#: How long a member's node has to answer the status's ping.
PING_S = 2.0


def node_status(coordinator: Coordinator, *, ping: bool = False) -> dict:
    config = coordinator.config
    status = {
        "party": coordinator.me, "members": sorted(config.members), "approval": config.policy.approval,
        "catalogue": sorted(config.options.catalogue), "certificate": certificate_status(coordinator),
        "tls_keys": tls_key_status(coordinator),
        "jobs": dict(Counter(job["status"] for job in coordinator.store.jobs())),
    }
    if ping:
        others = sorted(set(config.members) - {coordinator.me})
        with ThreadPoolExecutor(max(len(others), 1)) as pool:  # all at once: a node down costs PING_S, not each
            answered = list(pool.map(lambda member: coordinator.answers(member, PING_S), others))
        status["peers"] = {member: {"address": config.members[member], "answers": answers}
                           for member, answers in zip(others, answered)}
    return status


def certificate_status(coordinator: Coordinator) -> dict:
    """The certificate the node presents (it reads its files once, at start) and, when another is installed
    since (renewed), that one's end: the node must restart to present it, or its peers refuse it at the old end."""
    config = coordinator.config
    installed = load_certificate(config.keys / config.party / PARTY_CERT, "this node's certificate")
    served = coordinator.certificate or installed
    ends = served.not_valid_after_utc
    days_left = (ends - dt.datetime.now(dt.UTC)).days  # not keyfiles.days_left: a node may run past the end
    renewed = installed.serial_number != served.serial_number
    return {"valid_until": ends.isoformat(), "days_left": days_left, "renew": days_left < WARN_DAYS and not renewed,
            "installed_until": installed.not_valid_after_utc.isoformat() if renewed else None}


def tls_key_status(coordinator: Coordinator) -> dict:
    """Whose TLS keys the installed federation file pins (a member without a pin can be impersonated by a
    certificate the CA signs by hand: each member's next `ca sign --renew` pins its key), and whether this
    party's re-key waits for its certificate (`keys rekey`)."""
    config = coordinator.config
    pinned = load_pinned_tls_keys(config.keys / FEDERATION_FILE)
    return {"unpinned": sorted(set(config.members) - set(pinned)),
            "rekey_pending": (config.keys / config.party / NEXT_KEY).exists()}
