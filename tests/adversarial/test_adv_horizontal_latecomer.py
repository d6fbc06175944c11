"""A client left out of a horizontal job that comes late with bytes that are no column names.

The aggregator reads a latecomer's columns only to learn that it is up and tell it it is out (test_horizontal_job);
undecodable bytes there must not end the job of the clients that take part."""

from __future__ import annotations

import json

from tests.test_horizontal_job import aggregator_events, run_without_the_last_client


def test_undecodable_late_columns_are_answered_and_the_rounds_go_on(tmp_path):
    errors = run_without_the_last_client(tmp_path, clients=4, late_columns=b"\xff" * 64)
    assert errors == {}, errors
    events = aggregator_events(tmp_path)
    assert any(e.get("told_left_out") == "client-4" for e in events)
    assert [e["clients"] for e in events if "epoch" in e] == [3, 3]
    assert json.loads((tmp_path / "run" / "aggregator" / "model.json").read_text())["secure_aggregation"] is True
