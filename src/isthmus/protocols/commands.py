"""One loop for a party that takes orders: a peer sends ``{"op": name, ...}`` and a handler per op acts on it.

Hosts follow the guest's orders this way (train this batch, build these histograms, score these rows,
finish). The loop checks that each order is a map with a known ``op`` before any handler sees it, so
an unexpected or malformed order is a :class:`ProtocolError` naming the peer and the tag, never a
``KeyError`` deep in a handler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from isthmus.protocols.inspect import Inspect
from isthmus.transport.channel import Channel

#: What a handler returns to end the loop (after its own work, e.g. replying).
STOP = object()

#: A handler gets the order (a map with an ``op``) and the inspector bound to its sender and tag.
Handler = Callable[[dict, Inspect], Any]


def stop(order: dict, check: Inspect) -> object:
    """The handler of an order that only ends the loop (``finish``, ``done``)."""
    check.mapping(order, {"op"}, exact=True)
    return STOP


def serve_orders(channel: Channel, peer: str, tag: str, handlers: Mapping[str, Handler], *,
                 timeout: float | None = None) -> str:
    """Run the handler of each order ``peer`` sends under ``tag`` until one returns :data:`STOP`.

    Returns the ``op`` of that last order. ``timeout`` bounds the wait for each order (default: the
    channel's).
    """
    check = Inspect(peer, tag)
    while True:
        order = check.mapping(channel.recv(peer, tag, timeout), {"op"})
        op = order["op"]
        handler = handlers.get(op) if isinstance(op, str) else None
        if handler is None:
            check.fail(f"unexpected order {op!r:.40}; expected one of {sorted(handlers)}")
        if handler(order, check) is STOP:
            return op
