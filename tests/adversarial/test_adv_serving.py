"""Hostile nodes against model versions: only a model's guest may withdraw a host's version, and a version
that is not a whole number the host holds is "unknown model", nothing more."""

from __future__ import annotations

import time

import numpy as np

from isthmus.node.peers import CONTROL_JOB, TAG
from isthmus.node.serving import SERVE_SCOPE
from tests.test_node_serving import served  # noqa: F401 (the fixture)


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
        assert guest.scoped(f"{SERVE_SCOPE}{rid}").recv("host", "ready", timeout=5) == {
            "ok": False, "error": "unknown model"}
