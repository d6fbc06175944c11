"""How the aggregator reaches its clients: one request per client per stage, replies until a deadline.

The round logic in :mod:`~isthmus.horizontal.aggregator` is written once against :class:`Fleet`;
:class:`ChannelFleet` carries it over a :class:`~isthmus.transport.Channel` (processes, machines) and
the simulation's fleet calls in-process client states directly.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

from isthmus.errors import IsthmusError, PeerGoneError, PeerTimeoutError, ProtocolError
from isthmus.horizontal.participant import REQUEST_TAG, reply_tag
from isthmus.transport.channel import Channel

Replies = dict[str, Any]
Failures = dict[str, str]


class Fleet(ABC):
    @abstractmethod
    def request(
        self, op: str, server_round: int, messages: Mapping[str, dict], timeout: float
    ) -> tuple[Replies, Failures]:
        """Send each client its message; return the replies that came in time and why the others did not."""

    @abstractmethod
    def notify(self, clients: Iterable[str], message: dict) -> None:
        """Tell clients something that needs no answer (dropped from a round, stop)."""


class ChannelFleet(Fleet):
    def __init__(self, channel: Channel):
        self.channel = channel

    def request(
        self, op: str, server_round: int, messages: Mapping[str, dict], timeout: float
    ) -> tuple[Replies, Failures]:
        failures: Failures = {}
        for name, message in messages.items():
            try:
                self.channel.send(name, REQUEST_TAG, {"op": op, "round": server_round, **message})
            except IsthmusError as exc:
                failures[name] = f"unreachable: {exc}"
        waiting = set(messages) - set(failures)
        replies: Replies = {}
        deadline = time.monotonic() + timeout
        while waiting and (left := deadline - time.monotonic()) > 0:
            try:
                sender, reply = self.channel.recv_any(sorted(waiting), reply_tag(op, server_round), timeout=left)
            except PeerGoneError as exc:  # every client it still waits for stopped answering pings
                failures.update({name: f"unreachable: {exc}" for name in waiting})
                return replies, failures
            except PeerTimeoutError:
                break
            except ProtocolError as exc:  # undecodable bytes: that sender is out of this stage
                if exc.peer not in waiting:
                    raise
                waiting.discard(exc.peer)
                failures[exc.peer] = str(exc)
                continue
            waiting.discard(sender)
            if isinstance(reply, dict) and "error" in reply:
                failures[sender] = f"client reported: {str(reply['error'])[:500]}"
            else:
                replies[sender] = reply
        failures.update({name: f"no reply within {timeout:g} s" for name in waiting})
        return replies, failures

    def notify(self, clients: Iterable[str], message: dict) -> None:
        for name in clients:
            try:
                self.channel.send(name, REQUEST_TAG, message)
            except IsthmusError:
                pass  # a client we cannot reach has nothing to be told
