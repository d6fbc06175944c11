"""PSI against a party that brings made-up ids: what PSI reveals (which of its ids the other side holds) is a
membership test, and a guest announcing every phone number of a country would learn which are the host's
customers. A host refuses a guest with more than the job's max_peer_ratio times its ids, whatever the guest
says, before it blinds or sends anything."""

from __future__ import annotations

import pytest
from test_psi import _hello, _host_and_fake_guest

from isthmus.errors import DataError, PeerTimeoutError
from isthmus.protocols import psi


def test_a_host_stops_on_a_guest_with_far_more_ids_even_if_the_guest_says_go():
    def guest_ignoring_the_ratio(channel):
        channel.send("host", psi.TAG_HELLO, _hello(count=1_000))
        assert channel.recv("host", psi.TAG_REPLY) == {"count": 3}
        channel.send("host", psi.TAG_START, {"go": True})
        with pytest.raises(PeerTimeoutError):  # no blinded id of the host's comes
            channel.recv("host", psi.TAG_HOST_POINTS, timeout=1)

    results, errors = _host_and_fake_guest(guest_ignoring_the_ratio, max_peer_ratio=100)
    assert set(errors) == {"host"} and "host" not in results and isinstance(errors["host"], DataError)
    assert "'guest' brings 1,000 ids against 3 at 'host'" in str(errors["host"])
