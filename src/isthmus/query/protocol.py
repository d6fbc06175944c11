"""The messages of the query service: tags, request ids, and checks on what a peer sent.

Every exchange is a request and one reply. A request is a map with a random request id ``rid``
and the sender's policy digest; the reply travels under ``<tag>/<rid>``, so concurrent queries
never take each other's answers. A reply is ``{"ok": True, ...}`` or ``{"ok": False, "error": why}``.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from typing import Any

from isthmus.budget import IdBudget
from isthmus.errors import PeerRefusedError, PeerTimeoutError, ProtocolError
from isthmus.query.config import Policy
from isthmus.query.querylog import QueryRecord
from isthmus.transport.channel import Channel

#: The transport job under which the query service runs (long-lived, unlike training jobs).
JOB = "isthmus-query"
#: Asker -> each other institution: blinded ids to evaluate under that institution's OPRF key.
EVALUATE = "query/evaluate"
#: Asker -> aggregator: pseudonyms and encrypted pads; the reply holds the encrypted sums.
LOOKUP = "query/lookup"
#: Institution -> aggregator: the full set of its published records (tags and sealed values).
PUBLISH = "query/publish"
#: Aggregator -> institutions on start: "I hold nothing, publish again".
HELLO = "query/hello"

_RID = re.compile(r"[0-9a-f]{32}")


class Refusal(Exception):
    """A service declines a well-formed request (batch too large, other policy, not a member...)."""


def new_request(policy_digest: str, **body: Any) -> dict[str, Any]:
    return {"rid": secrets.token_hex(16), "policy": policy_digest, **body}


def is_request_id(value: Any) -> bool:
    return isinstance(value, str) and _RID.fullmatch(value) is not None


def reply_tag(tag: str, rid: str) -> str:
    return f"{tag}/{rid}"


def fields(message: Any, expected: dict[str, type | tuple[type, ...]], *, peer: str, tag: str) -> dict[str, Any]:
    """``message`` if it is a map with exactly the ``expected`` keys and types, else a ProtocolError."""
    if not isinstance(message, dict) or set(message) != set(expected):
        keys = sorted(message) if isinstance(message, dict) else type(message).__name__
        raise ProtocolError(f"expected a map with keys {sorted(expected)}, got {keys}", peer=peer, tag=tag)
    for key, kind in expected.items():
        value = message[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise ProtocolError(f"field {key!r} has type {type(value).__name__}", peer=peer, tag=tag)
    if "rid" in expected and not is_request_id(message["rid"]):
        raise ProtocolError("malformed request id", peer=peer, tag=tag)
    return message


def check_policy(request: dict[str, Any], policy_digest: str) -> None:
    if request["policy"] != policy_digest:
        raise Refusal("the request was made under a different consortium policy; compare the query configurations")


#: the window of ``policy.max_ids_per_day``
DAY_SECONDS = 24 * 3600


class BatchLimits:
    """What a service answers one member at most: ``policy.max_batch`` ids at a time, ``policy.max_ids_per_day``
    in any 24 hours (counted where the ids are answered, so a member cannot go round it). ``answered``: the
    batches answered in the last 24 hours before this service started (its query log), counted again, so that
    a restart does not renew a member's limit."""

    def __init__(self, policy: Policy, answered: Iterable[QueryRecord] = ()):
        self.policy = policy
        self._daily = IdBudget(policy.max_ids_per_day, DAY_SECONDS)
        now, monotonic = time.time(), time.monotonic()
        for entry in answered:
            self._daily.take(entry.asker, entry.ids, now=monotonic - (now - entry.time))

    def check(self, sender: str, ids: int) -> None:
        limit = self.policy.max_batch
        if not 1 <= ids <= limit:
            raise Refusal(f"a batch must hold 1 to {limit} ids (policy.max_batch), not {ids}")
        if not self._daily.take(sender, ids):
            raise Refusal(f"{sender} may ask about {self.policy.max_ids_per_day} ids in any 24 hours "
                          f"(policy.max_ids_per_day) and has asked about {self._daily.spent(sender)}: "
                          f"this batch of {ids} is not answered")


def call(channel: Channel, peer: str, tag: str, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send ``request`` to ``peer`` and wait for its reply; a refusal is a :class:`PeerRefusedError`."""
    channel.send(peer, tag, request)
    answer_tag = reply_tag(tag, request["rid"])
    try:
        reply = channel.recv(peer, answer_tag, timeout=timeout)
    except PeerTimeoutError:
        channel.close_scope(answer_tag)  # the service's job never ends: a late reply must not wait in it for ever
        raise
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ProtocolError("a reply must be a map with a boolean 'ok'", peer=peer, tag=answer_tag)
    if not reply["ok"]:
        error = reply.get("error")
        raise PeerRefusedError(f"refused: {str(error)[:500]}", peer=peer, tag=tag)
    return reply
