"""A peer's job summary is hostile input: a malformed one is refused naming the peer; a well-formed one that
differs in odd ways (wrong types, huge values) is a mismatch with a bounded message, never a crash."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from test_agreement import plan

from isthmus import __version__
from isthmus.errors import ProtocolError
from isthmus.jobs.agreement import TAG, JobMismatchError, answer_summaries, check_same_job, job_summary
from isthmus.transport.local import LocalHub


def _against(summary) -> None:
    hub = LocalHub(["guest", "host"])
    hub.channel("host", "same").send("guest", TAG, summary)
    check_same_job(hub.channel("guest", "same"), plan("guest"), ["host"])


@pytest.mark.parametrize("summary", [b"not a mapping", [1, 2], {"isthmus": __version__, "job": "same"},
                                     {**job_summary(plan()), "extra": 1},
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


@pytest.mark.parametrize("release", ["9" * 10_000, None, ["0.1.0"]])
def test_a_release_of_odd_shape_is_a_mismatch_with_a_bounded_message(release):
    with pytest.raises(JobMismatchError) as caught:
        _against({**job_summary(plan()), "isthmus": release})
    assert len(str(caught.value)) < 400 and "party 'host' runs another isthmus release" in str(caught.value)


HORIZONTAL = {"job": "rows", "steps": [{"train": {"model": "homo_lr", "rounds": 2}}],
              "parties": {"aggregator": {"address": "127.0.0.1:7000"},
                          **{f"client-{n}": {"address": f"127.0.0.1:700{n}", "data": {"path": f"{n}.csv", "id": "id",
                                                                                        "label": "y"}}
                             for n in (1, 2)}}}


def test_a_client_that_sends_garbage_as_its_summary_leaves_the_aggregator_answering_the_others():
    """The aggregator answers summaries for the whole job, in a thread: one client's bytes must not end it."""
    from isthmus.jobs.plan import make_plan
    from isthmus.jobs.spec import parse_job

    spec = parse_job(HORIZONTAL, base_dir=Path("."))
    hub = LocalHub(["aggregator", "client-1", "client-2"])
    stop, left_out = threading.Event(), {}
    answering = threading.Thread(target=answer_summaries, args=(
        hub.channel("aggregator", "rows"), make_plan(spec, "aggregator"), ["client-1", "client-2"], stop,
        left_out.__setitem__))
    answering.start()
    clients = {name: hub.channel(name, "rows") for name in ("client-1", "client-2")}
    for channel in clients.values():
        channel.default_timeout = 5.0  # an answer that never comes fails the test, not hangs it
    try:
        clients["client-1"]._send_raw("aggregator", TAG, b"\xff not the codec's")
        for _ in range(3):  # asking again is answered again
            check_same_job(clients["client-2"], make_plan(spec, "client-2"), ["aggregator"])
    finally:
        stop.set()
        answering.join(5)
    assert not answering.is_alive()
    assert list(left_out) == ["client-1"] and len(left_out["client-1"]) < 1000


def test_a_client_whose_summary_is_garbage_is_left_out_with_a_bounded_reason():
    from isthmus.jobs.plan import make_plan
    from isthmus.jobs.spec import parse_job

    spec = parse_job(HORIZONTAL, base_dir=Path("."))
    hub = LocalHub(["aggregator", "client-1", "client-2"])
    stop, left_out = threading.Event(), {}
    hub.channel("client-1", "rows").send("aggregator", TAG, {"job": ["x" * 10_000]})
    answering = threading.Thread(target=answer_summaries, args=(
        hub.channel("aggregator", "rows"), make_plan(spec, "aggregator"), ["client-1", "client-2"], stop,
        left_out.__setitem__))
    answering.start()
    deadline = time.monotonic() + 5
    while not left_out and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    answering.join(5)
    assert list(left_out) == ["client-1"] and len(left_out["client-1"]) < 1000
