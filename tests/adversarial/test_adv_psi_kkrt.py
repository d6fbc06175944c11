"""A hostile peer in KKRT PSI: every malformed message stops the honest side with a ProtocolError naming the peer and the tag."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from test_psi import _guest_and_fake_host, _hello, _host_and_fake_guest

from isthmus.errors import ProtocolError
from isthmus.protocols import psi
from isthmus.protocols.kkrt import base_ot
from isthmus.protocols.kkrt import psi as kkrt
from isthmus.protocols.kkrt.ot_extension import WIDTH

GUEST_IDS = ["a", "b", "c"]


def _honest_base_reply(setup: dict) -> bytes:
    reply, _ = base_ot.receive(setup["point"], np.zeros(WIDTH, dtype=np.uint8))
    return reply


def _fake_host(base_reply: Callable[[dict], Any], values: list[Any] = (), count: int = 2) -> Callable:
    """Handshake as a host of ``count`` ids, answer the base OTs with ``base_reply(setup)``, then send
    ``values`` messages (without waiting for the columns: sends do not block)."""

    def fake(channel):
        channel.recv("guest", psi.TAG_HELLO)
        channel.send("guest", psi.TAG_REPLY, {"count": count})
        channel.recv("guest", psi.TAG_START)
        setup = channel.recv("guest", kkrt.TAG_SETUP)
        channel.send("guest", kkrt.TAG_BASE, base_reply(setup))
        for message in values:
            channel.send("guest", kkrt.TAG_VALUES, message)

    return fake


def _off_curve(setup: dict) -> bytes:
    reply = bytearray(_honest_base_reply(setup))
    reply[32] ^= 1  # v no longer a square root of the curve equation at u
    return bytes(reply)


@pytest.mark.parametrize(
    "base_reply, message",
    [
        (lambda setup: _honest_base_reply(setup)[:-64], "expected 512 points"),
        (lambda setup: "points", "expected 512 points"),
        (_off_curve, "not a canonical point"),
        (lambda setup: setup["point"] * WIDTH, "must differ"),  # B = A: B - A is no point
    ],
)
def test_malformed_base_ot_replies_are_refused(base_reply, message):
    _, errors = _guest_and_fake_host(_fake_host(base_reply), guest_ids=GUEST_IDS, method="kkrt")
    error = errors["guest"]
    assert isinstance(error, ProtocolError) and message in str(error)
    assert error.peer == "host" and error.tag == kkrt.TAG_BASE


@pytest.mark.parametrize(
    "values, message",
    [
        ([bytes(47)], "48-byte records"),  # wrong length
        ([bytes(48 * 3)], "overruns"),  # more ids than announced: an over-long set
        ([bytes(range(48)) * 2], "repeated records"),  # two ids with one value: would match one of ours twice
        ([[bytes(48)]], "48-byte records"),  # not bytes
    ],
)
def test_malformed_oprf_values_are_refused(values, message):
    _, errors = _guest_and_fake_host(_fake_host(_honest_base_reply, values), guest_ids=GUEST_IDS, method="kkrt")
    error = errors["guest"]
    assert isinstance(error, ProtocolError) and message in str(error)
    assert error.peer == "host" and error.tag == kkrt.TAG_VALUES


def _fake_guest(setup: Any, columns: list[Any] = ()) -> Callable:
    def fake(channel):
        channel.send("host", psi.TAG_HELLO, _hello(method="kkrt"))
        channel.recv("host", psi.TAG_REPLY)
        channel.send("host", psi.TAG_START, {"go": True})
        if setup is None:  # an honest setup, then the columns given
            channel.send("host", kkrt.TAG_SETUP, {"point": base_ot.Sender().message(), "key": bytes(16)})
            channel.recv("host", kkrt.TAG_BASE)
        else:
            channel.send("host", kkrt.TAG_SETUP, setup)
        for message in columns:
            channel.send("host", kkrt.TAG_COLUMNS, message)

    return fake


@pytest.mark.parametrize(
    "setup, message, tag",
    [
        ({"point": base_ot.Sender().message(), "key": bytes(8)}, "key of 16 bytes", kkrt.TAG_SETUP),
        ({"point": base_ot.Sender().message()}, "keys ['key', 'point']", kkrt.TAG_SETUP),
        ({"point": bytes(63), "key": bytes(16)}, "a point is 64 bytes", kkrt.TAG_SETUP),
        ({"point": (2**255 - 19).to_bytes(32, "little") * 2, "key": bytes(16)}, "not a canonical point", kkrt.TAG_SETUP),
        (None, "expected 16384 bytes of columns", kkrt.TAG_COLUMNS),  # the host's 3 ids -> 256 bins x 512 bits
    ],
)
def test_malformed_guest_messages_are_refused(setup, message, tag):
    _, errors = _host_and_fake_guest(_fake_guest(setup, [bytes(100)]), method="kkrt")
    error = errors["host"]
    assert isinstance(error, ProtocolError) and message in str(error)
    assert error.peer == "guest" and error.tag == tag


def test_an_over_long_guest_set_is_refused_before_any_memory_is_committed():
    replies = []

    def fake(channel):
        channel.send("host", psi.TAG_HELLO, _hello(method="kkrt", count=kkrt.MAX_IDS + 1))
        replies.append(channel.recv("host", psi.TAG_REPLY))

    _, errors = _host_and_fake_guest(fake, method="kkrt")
    assert isinstance(errors["host"], ProtocolError) and "set size" in str(errors["host"]) and errors["host"].peer == "guest"
    assert replies == [{"abort": True}]


def test_an_over_long_host_set_is_refused():
    def fake(channel):
        channel.recv("guest", psi.TAG_HELLO)
        channel.send("guest", psi.TAG_REPLY, {"count": kkrt.MAX_IDS + 1})

    _, errors = _guest_and_fake_host(fake, method="kkrt")
    assert isinstance(errors["guest"], ProtocolError) and "set size" in str(errors["guest"]) and errors["guest"].peer == "host"
