"""PSI against a party that brings made-up ids: what PSI reveals (which of its ids the other side holds) is a
membership test, and a guest announcing every phone number of a country would learn which are the host's
customers. A host refuses a guest with more than the job's max_peer_ratio times its ids, whatever the guest
says, before it blinds or sends anything; a node may also bound what each member tests across jobs."""

from __future__ import annotations

import pytest
from node_helpers import federation, local_nodes, proposal
from test_psi import _hello, _host_and_fake_guest

from isthmus.errors import DataError, PeerTimeoutError
from isthmus.node.coordinator import Coordinator, proposal_of
from isthmus.node.policy import Refusal
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


def _with_ratio(ratio: float) -> dict:
    body = proposal()
    body["steps"][0]["intersect"]["max_peer_ratio"] = ratio
    return body


def test_a_member_may_test_only_so_many_ids_a_day_against_a_node(tmp_path):
    """max_peer_ratio bounds what one job's PSI tests; job after job, a node approving them automatically let a
    member test that many ids each time. The refusal names no number: it would tell the node's row count."""
    nodes = local_nodes(federation(tmp_path, host={"max_peer_ids_per_day": 1_500}))  # the host's table: 500 rows
    try:
        first = nodes.coordinators["guest"].submit(_with_ratio(2))  # the guest may test 2 x 500 ids
        nodes.wait("host", first, "accepted")
        second = nodes.coordinators["guest"].submit(_with_ratio(2))
        reason = nodes.wait("guest", second, "refused")["reason"]
        assert reason == ("host refuses: max_peer_ids_per_day: guest may test no more ids against this node's tables "
                          "today (the job's max_peer_ratio times this node's rows)"), reason
        third = nodes.coordinators["guest"].submit(_with_ratio(1))  # 500 more: 1,500 of 1,500
        nodes.wait("host", third, "accepted")
        host = nodes.coordinators["host"]
        restarted = Coordinator(host.config, host.store, host.signing_key, host.pinned, host.runner)
        with pytest.raises(Refusal, match="guest may test no more ids"):  # a restart does not renew the budget
            restarted._spend_testable_ids(proposal_of(host.store.job(third)))
    finally:
        nodes.stop()
