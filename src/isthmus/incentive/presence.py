"""Reaching the parties that are still in a job: horizontal clients may drop out and the job goes on.

Every other role is indispensable (a vertical job cannot finish without each of its parties), so
failing to reach one of those is an error, while an unreachable client is reported as absent.
"""

from __future__ import annotations

from typing import Any

from isthmus.errors import PeerUnreachableError
from isthmus.incentive.record import MAY_BE_ABSENT
from isthmus.transport.channel import Channel


def send_to_present(channel: Channel, roles: dict[str, str], tag: str, obj: Any) -> dict[str, str]:
    """Send ``obj`` to every other party in ``roles``; returns the absent ones (name -> role)."""
    absent = {}
    for party in sorted(roles):
        if party == channel.party:
            continue
        try:
            channel.send(party, tag, obj)
        except PeerUnreachableError:
            if roles[party] not in MAY_BE_ABSENT:
                raise
            absent[party] = roles[party]
    return absent
