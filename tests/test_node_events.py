"""A job's events streamed by the node's API as server-sent events: in order, numbered, resumable with
Last-Event-ID, ended by an ``end`` event carrying the final status; the JSON list stays for the CLI."""

from __future__ import annotations

import json
import threading
import time

from fastapi.testclient import TestClient

from isthmus.jobs.events import EventLog, read_recent_events
from isthmus.node.api import create_app
from isthmus.node.runner import job_folder
from tests.node_helpers import federation, local_nodes, proposal

SSE = {"accept": "text/event-stream"}


def parse(text: str) -> list[dict]:
    """The stream's events as ``{"id", "event", "data"}``; comment lines dropped."""
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if fields:
            events.append({"id": fields.get("id"), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


def test_a_jobs_events_stream_live_until_it_ends_and_resume_after_the_last_id_seen(tmp_path):
    nodes = local_nodes(federation(tmp_path))
    try:
        guest = nodes.coordinators["guest"]
        job = nodes.coordinators["host"].submit(proposal())
        nodes.wait("guest", job, "pending")

        def the_job_runs() -> None:  # while the stream is open: approval, a progress event, the end
            time.sleep(0.3)
            guest.approve(job)
            nodes.wait("guest", job, "running")
            run = job_folder(guest.config.store, job) / "run"
            run.mkdir(parents=True)
            EventLog(run, "guest").emit(step="train", status="started")
            time.sleep(0.3)
            guest.job_done(job, "finished", None)

        runner = threading.Thread(target=the_job_runs)
        runner.start()
        api = TestClient(create_app(guest), base_url=f"http://{guest.config.options.api.listen}")  # a loopback name
        response = api.get(f"/v1/jobs/{job}/events", headers=SSE)
        runner.join()
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse(response.text)
        assert events[-1] == {"id": None, "event": "end", "data": {"status": "finished", "reason": None}}
        numbered = events[:-1]
        assert [e["id"] for e in numbered] == [str(i) for i in range(1, len(numbered) + 1)]
        statuses = [e["data"].get("status") for e in numbered if e["event"] == "node" and "vote" not in e["data"]]
        assert statuses == ["proposed", "pending", "accepted", "running", "finished"]
        assert {"source": "run", "party": "guest", "step": "train", "status": "started"}.items() <= \
            next(e["data"] for e in numbered if e["event"] == "run").items()

        resumed = parse(api.get(f"/v1/jobs/{job}/events", headers={**SSE, "last-event-id": str(len(numbered) - 1)}).text)
        assert resumed == events[-2:]
        assert api.get(f"/v1/jobs/{job}/events", params={"after": 1}).json() == [e["data"] for e in numbered[1:]]
    finally:
        nodes.stop()


def test_recent_events_are_the_whole_lines_at_the_end_of_a_log(tmp_path):
    """What a page reads of a log that grows for as long as the node runs: its end, from the first whole line."""
    log = tmp_path / "predictions.jsonl"
    lines = [json.dumps({"n": i}) + "\n" for i in range(100)]  # 10 or 11 bytes each
    log.write_text("".join(lines))
    assert read_recent_events(log, 10 << 20) == [{"n": i} for i in range(100)]
    assert read_recent_events(log, len(lines[-1]) + len(lines[-2]) - 1) == [{"n": 99}]  # a cut line is dropped
    assert read_recent_events(log, len(lines[-1]) + len(lines[-2])) == [{"n": 98}, {"n": 99}]
    assert read_recent_events(tmp_path / "none.jsonl", 100) == []
    with log.open("a") as writing:
        writing.write('{"n": 10')  # a line being written right now
    assert read_recent_events(log, 50)[-1] == {"n": 99}
