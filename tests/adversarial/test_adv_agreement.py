"""A peer's job summary is hostile input: a malformed one is refused naming the peer; a well-formed one that
differs in odd ways (wrong types, huge values) is a mismatch with a bounded message, never a crash."""

from __future__ import annotations

import pytest
from test_agreement import plan

from isthmus.errors import ProtocolError
from isthmus.jobs.agreement import TAG, JobMismatchError, check_same_job, job_summary
from isthmus.transport.local import LocalHub


def _against(summary) -> None:
    hub = LocalHub(["guest", "host"])
    hub.channel("host", "same").send("guest", TAG, summary)
    check_same_job(hub.channel("guest", "same"), plan("guest"), ["host"])


@pytest.mark.parametrize("summary", [b"not a mapping", [1, 2], {"job": "same"}, {**job_summary(plan()), "extra": 1},
                                     {**job_summary(plan()), "steps": [["train", {"epochs": 2, 1: 2}]]}])
def test_a_malformed_summary_is_refused_naming_the_peer(summary):
    with pytest.raises(ProtocolError) as caught:
        _against(summary)
    assert caught.value.peer == "host"


@pytest.mark.parametrize("field, value", [
    ("steps", "x" * 10_000), ("steps", [[1, 2, 3]]), ("steps", [["intersect", {}], ["train", "not options"]]),
    ("steps", [["intersect", {}], ["train", {"model": "hetero_lr", "epochs": "9" * 5000}]]),
    ("parties", None), ("options", [0] * 1000),
])
def test_a_summary_of_odd_shape_is_a_mismatch_with_a_bounded_message(field, value):
    with pytest.raises(JobMismatchError) as caught:
        _against({**job_summary(plan()), field: value})
    assert len(str(caught.value)) < 400 and "party 'host' runs another job" in str(caught.value)
