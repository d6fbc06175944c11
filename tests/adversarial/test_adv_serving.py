"""Hostile nodes against serving: only a model's guest may withdraw a host's version, a version that is not a
whole number the host holds is "unknown model", nothing more; a guest can neither test ids past the host's
hourly limit, nor grow its queue without bound, nor have it hold versions (each with its table) without
bound; a host's malformed refusal is its failure."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from isthmus.node.peers import CONTROL_JOB, TAG
from isthmus.node.serving import MAX_HELD, REFUSED, SERVE_SCOPE, Serving, ServingError
from tests.test_node_serving import served, serving_federation  # noqa: F401 (served is a fixture)


def test_only_the_models_guest_can_unpublish_a_hosts_version(served):  # noqa: F811
    servings, ids, expected, nodes = served
    servings["guest"].publish("a" * 16, "credit")
    nodes.hub.channel("arbiter", CONTROL_JOB).send("host", TAG, {"kind": "unpublish", "job": "a" * 16,
                                                                 "name": "credit", "version": 1})
    time.sleep(0.5)  # the host's node has handled (and refused) it by now
    assert ("credit", 1) in servings["host"].models
    np.testing.assert_allclose(servings["guest"].predict("credit", ids), expected("a" * 16), rtol=0, atol=1e-12)


def test_a_version_the_host_does_not_hold_as_given_is_an_unknown_model(served):  # noqa: F811
    servings, ids, _, nodes = served
    servings["guest"].publish("a" * 16, "credit")
    guest = nodes.hub.channel("guest", CONTROL_JOB)
    for i, version in enumerate([True, 1.0, "1", 2, -1]):
        rid = f"{i:016d}"
        guest.send("host", TAG, {"kind": "predict", "job": "a" * 16, "name": "credit", "version": version,
                                 "rid": rid, "ids": ids})
        assert guest.scoped(f"{SERVE_SCOPE}{rid}").recv("host", REFUSED, timeout=5) == {"error": "unknown model"}


def test_a_guest_testing_ids_one_by_one_is_stopped_at_the_hosts_hourly_limit(tmp_path):
    """Each answer tells the guest whether the host holds an id ("unknown id" or not): with no limit a guest
    could test every id it can think of and list the host's customers."""
    with serving_federation(tmp_path, max_prediction_ids_per_hour=12) as (servings, ids, _, nodes):
        servings["guest"].publish("a" * 16, "credit")
        guest = nodes.hub.channel("guest", CONTROL_JOB)
        answers = []
        for i in range(15):
            rid = f"{i:016d}"
            guest.send("host", TAG, {"kind": "predict", "job": "a" * 16, "name": "credit", "version": 1,
                                     "rid": rid, "ids": [f"probe-{i}"]})
            answers.append(guest.scoped(f"{SERVE_SCOPE}{rid}").recv("host", REFUSED, timeout=5)["error"])
        assert answers[:12] == ["unknown id"] * 12
        assert all(a.startswith("rate limit: more than 12 ids in an hour") for a in answers[12:]), answers
        with pytest.raises(ServingError, match=r"rate limit"):  # known ids too, through the guest's own node
            servings["guest"].predict("credit", ids[:1])
        outcomes = [json.loads(line)["outcome"] for line in (nodes.coordinators["host"].config.store
                                                             / "serving.jsonl").read_text().splitlines()]
        assert outcomes == ["unknown id"] * 12 + ["rate limit"] * 4
        restarted = Serving(nodes.coordinators["host"], nodes.hub.channel("host", CONTROL_JOB))
        try:  # the host's node restarted: its serving log still counts the guest's hour
            guest.send("host", TAG, {"kind": "predict", "job": "a" * 16, "name": "credit", "version": 1,
                                     "rid": "f" * 16, "ids": ["probe-after-restart"]})
            answer = guest.scoped(f"{SERVE_SCOPE}{'f' * 16}").recv("host", REFUSED, timeout=5)["error"]
            assert answer.startswith("rate limit: more than 12 ids in an hour"), answer
        finally:
            restarted.close()


def test_a_guest_publishing_name_after_name_cannot_make_a_host_hold_its_table_without_bound(tmp_path):
    """Each version a host holds keeps a copy of its table in memory, and a guest could publish any number of
    names: past the host's policy.max_published_versions, it refuses until one is unpublished."""
    with serving_federation(tmp_path, max_published_versions=2) as (servings, ids, expected, _):
        guest, host = servings["guest"], servings["host"]
        guest.publish("a" * 16, "first")
        guest.publish("a" * 16, "second")
        with pytest.raises(ServingError, match=r"hosts \['host'\] did not confirm publishing 'third'"):
            guest.publish("a" * 16, "third", timeout=1)
        assert sorted(host.models) == [("first", 1), ("second", 1)]
        guest.unpublish("first")
        deadline = time.monotonic() + 5
        while ("first", 1) in host.models and time.monotonic() < deadline:
            time.sleep(0.02)
        guest.publish("a" * 16, "third")
        np.testing.assert_allclose(guest.predict("third", ids), expected("a" * 16), rtol=0, atol=1e-12)


def test_a_guest_flooding_requests_it_never_follows_up_gets_busy_not_an_endless_queue(served):  # noqa: F811
    servings, ids, expected, nodes = served
    servings["guest"].publish("a" * 16, "credit")
    guest = nodes.hub.channel("guest", CONTROL_JOB)
    rids = [f"{i:016d}" for i in range(MAX_HELD + 5)]
    for rid in rids:  # each holds a place until its guest sends the scoring's orders, which never come
        guest.send("host", TAG, {"kind": "predict", "job": "a" * 16, "name": "credit", "version": 1, "rid": rid,
                                 "ids": ids})
    for rid in rids[MAX_HELD:]:
        assert guest.scoped(f"{SERVE_SCOPE}{rid}").recv("host", REFUSED, timeout=5)["error"].startswith("busy:")
    part = servings["guest"].models["credit", 1].part
    for rid in rids[:MAX_HELD]:  # release them: the places come back
        part.finish(guest.scoped(f"{SERVE_SCOPE}{rid}"))
    deadline = time.monotonic() + 10
    while True:
        try:
            np.testing.assert_allclose(servings["guest"].predict("credit", ids), expected("a" * 16), atol=1e-12)
            break
        except ServingError:
            assert time.monotonic() < deadline, "the host's places never came back"
            time.sleep(0.1)


def test_a_member_sending_abort_notices_cannot_fail_anyone_elses_predictions(served):  # noqa: F811
    """The nodes' job is never over, so a member's abort notice ends nothing in it. Before, any member's
    notice failed every receive of the job until the node's listener cleared it: a member outside a model
    could fail its predictions by sending notices over and over."""
    servings, ids, expected, nodes = served
    servings["guest"].publish("a" * 16, "credit")
    hostile = nodes.hub.channel("arbiter", CONTROL_JOB)
    stop = threading.Event()

    def keep_aborting() -> None:
        while not stop.is_set():
            hostile.abort("nothing in particular")
            hostile.scoped(SERVE_SCOPE.rstrip("/")).abort("nor in a prediction's scope")
            time.sleep(0.001)

    flood = threading.Thread(target=keep_aborting)
    flood.start()
    try:
        for _ in range(30):
            np.testing.assert_allclose(servings["guest"].predict("credit", ids), expected("a" * 16), atol=1e-12)
    finally:
        stop.set()
        flood.join()


@pytest.mark.parametrize("refusal", [["not", "a", "map"], {"error": "unknown id", "more": 1}, "x" * 100],
                         ids=["list", "extra key", "text"])
def test_a_host_sending_a_malformed_refusal_fails_the_prediction_naming_it(served, refusal):  # noqa: F811
    """A host's refusal is read from hostile bytes like anything else: a malformed one is the host's failure,
    not an unexplained protocol error at the guest's API."""
    servings, ids, _, _ = served
    servings["guest"].publish("a" * 16, "credit")
    host = servings["host"]
    del host.models["credit", 1].index[ids[0]]  # the host refuses: an id it lacks

    def malformed_refusal(link, channel, guest, error):
        channel.send(guest, REFUSED, refusal)
        channel.abort("refused")
        link.detach()

    host._refuse = malformed_refusal
    with pytest.raises(ServingError, match="host 'host' failed the prediction for model 'credit'"):
        servings["guest"].predict("credit", ids[:1])
