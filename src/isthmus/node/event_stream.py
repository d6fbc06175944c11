"""One job's events as server-sent events (``text/event-stream``), for a board that follows a job live.

The events are the node's own (consent, statuses, publications) merged with the run's progress events,
in time order, numbered from 1; each is sent once as ``id: N``, ``event: node|run``, ``data: JSON``. A
client that reconnects sends ``Last-Event-ID: N`` (or ``?after=N``) and gets what followed. The stream
ends with ``event: end`` (data: the job's final status and reason) once the job is finished, failed,
refused or cancelled here; until then a comment line every 15 s keeps proxies from closing it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi.concurrency import run_in_threadpool

from isthmus.jobs.events import read_events
from isthmus.node.runner import job_folder
from isthmus.node.store import FINAL, Store

POLL_S = 0.25
KEEPALIVE_S = 15.0


def job_events(store: Store, store_dir: Path, job_id: str) -> list[dict]:
    """Every event of ``job_id`` here, the node's and its run's, in time order."""
    run = read_events(job_folder(store_dir, job_id) / "run" / "events.jsonl")
    return sorted([{"source": "node", **e} for e in store.events(job_id)] + [{"source": "run", **e} for e in run],
                  key=lambda e: e["time"])


async def stream(store: Store, store_dir: Path, job_id: str, after: int,
                 disconnected: Callable[[], object]) -> AsyncIterator[str]:
    def look() -> tuple[list[dict], dict]:
        job = store.job(job_id)  # the status first: events read after a final status are all there are
        return job_events(store, store_dir, job_id), job

    sent, quiet_since = max(after, 0), time.monotonic()
    while not await disconnected():
        events, job = await run_in_threadpool(look)
        for number, event in enumerate(events[sent:], start=sent + 1):
            yield f"id: {number}\nevent: {event['source']}\ndata: {json.dumps(event, default=str)}\n\n"
            quiet_since = time.monotonic()
        sent = max(sent, len(events))
        if job["status"] in FINAL:
            yield f"event: end\ndata: {json.dumps({'status': job['status'], 'reason': job['reason']})}\n\n"
            return
        if time.monotonic() - quiet_since > KEEPALIVE_S:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(POLL_S)
