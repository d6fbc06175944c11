"""The node's local HTTP API (FastAPI): everything the CLI does goes through it.

Bound to loopback by default; bound elsewhere, every request must carry ``Authorization: Bearer TOKEN``
(the token in ``api.token_file``). Request bodies are read with a size limit before they are parsed.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from isthmus.errors import ConfigError, IsthmusError
from isthmus.node.coordinator import Coordinator
from isthmus.node.event_stream import job_events, stream
from isthmus.node.proposal import MAX_PROPOSAL_BYTES
from isthmus.node.runner import job_folder
from isthmus.node.serving import MAX_IDS, MAX_VERSION, Serving, ServingError, UnknownId

MAX_BODY_BYTES = MAX_PROPOSAL_BYTES + 1024
MAX_PREDICT_BYTES = MAX_IDS * 140  # 10,000 ids of up to 128 characters, quoted
_LOG_TAIL = 64 * 1024


def create_app(coordinator: Coordinator, token: str | None = None, serving: Serving | None = None) -> FastAPI:
    app = FastAPI(title=f"isthmus node {coordinator.me}", docs_url=None, redoc_url=None, openapi_url=None)
    store, config = coordinator.store, coordinator.config

    if token is not None:  # without a token (loopback), no middleware: each would add a task hop to every prediction
        @app.middleware("http")
        async def authorise(request: Request, call_next):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return JSONResponse({"detail": "missing or wrong token"}, status_code=401)
            return await call_next(request)

    @app.exception_handler(IsthmusError)
    async def refused(request: Request, exc: IsthmusError):
        status = 404 if isinstance(exc, UnknownId) else 502 if isinstance(exc, ServingError) else \
            409 if isinstance(exc, ConfigError) else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.get("/v1/status")
    def status() -> dict:
        return {"party": coordinator.me, "members": sorted(config.members), "approval": config.policy.approval,
                "catalogue": sorted(config.options.catalogue)}

    @app.post("/v1/jobs", status_code=201)
    async def submit(request: Request) -> dict:
        body = await _json_body(request)
        if not isinstance(body, dict) or set(body) != {"proposal"}:
            raise HTTPException(422, "send {\"proposal\": JOB}")
        return {"id": coordinator.submit(body["proposal"])}

    @app.get("/v1/jobs")
    def jobs() -> list[dict]:
        return [_summary(job) for job in store.jobs()]

    @app.get("/v1/jobs/{job_id}")
    def job(job_id: str) -> dict:
        found = _job(job_id)
        votes = {party: {"decision": v["decision"], "reason": v["reason"]} for party, v in store.votes(job_id).items()}
        return {**_summary(found), "proposal": found["proposal"]["job"], "digest": found["digest"], "votes": votes}

    @app.get("/v1/jobs/{job_id}/events")
    def events(job_id: str, request: Request, after: int = 0):
        """The events from the ``after``-th on: a JSON list, or a live stream when the client accepts
        ``text/event-stream`` (see :mod:`isthmus.node.event_stream`)."""
        _job(job_id)
        if "text/event-stream" not in request.headers.get("accept", ""):
            return job_events(store, config.store, job_id)[max(after, 0):]
        resume = request.headers.get("last-event-id", "")
        after = int(resume) if resume.isdigit() and len(resume) < 10 else after
        return StreamingResponse(stream(store, config.store, job_id, after, request.is_disconnected),
                                 media_type="text/event-stream", headers={"cache-control": "no-cache"})

    @app.get("/v1/jobs/{job_id}/logs", response_class=PlainTextResponse)
    def logs(job_id: str) -> str:
        _job(job_id)
        path = job_folder(config.store, job_id) / "run" / "party.log"
        if not path.exists():
            return ""
        with path.open("rb") as log:
            log.seek(max(path.stat().st_size - _LOG_TAIL, 0))
            return log.read().decode("utf-8", errors="replace")

    @app.post("/v1/jobs/{job_id}/approve")
    def approve(job_id: str) -> dict:
        coordinator.approve(job_id)
        return _summary(_job(job_id))

    @app.post("/v1/jobs/{job_id}/refuse")
    async def refuse(job_id: str, request: Request) -> dict:
        body = await _json_body(request)
        reason = body.get("reason") if isinstance(body, dict) else None
        if not isinstance(reason, str) or not reason.strip():
            raise HTTPException(422, "a refusal needs a reason: {\"reason\": TEXT}")
        coordinator.refuse(job_id, reason.strip())
        return _summary(_job(job_id))

    @app.post("/v1/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict:
        coordinator.cancel(job_id)
        return _summary(_job(job_id))

    @app.get("/v1/models")
    def models() -> list[dict]:
        return store.models()

    @app.post("/v1/models", status_code=201)
    async def publish(request: Request) -> dict:
        body = await _json_body(request)
        if not isinstance(body, dict) or set(body) != {"job", "name"}:
            raise HTTPException(422, "send {\"job\": ID, \"name\": NAME}")
        return await run_in_threadpool(_serving().publish, body["job"], body["name"])

    @app.post("/v1/models/{name}/predict")
    async def predict(name: str, request: Request) -> dict:
        body = await _json_body(request, limit=MAX_PREDICT_BYTES)
        if not isinstance(body, dict) or "ids" not in body or not set(body) <= {"ids", "version"}:
            raise HTTPException(422, "send {\"ids\": [ID, ...]} and optionally \"version\": N")
        return {"scores": await run_in_threadpool(_serving().predict, name, body["ids"], _version(body))}

    @app.post("/v1/models/{name}/rollback")
    async def rollback(name: str, request: Request) -> dict:
        return _serving().rollback(name, _version(await _optional_body(request)))

    @app.post("/v1/models/{name}/unpublish")
    async def unpublish(name: str, request: Request) -> dict:
        return _serving().unpublish(name, _version(await _optional_body(request)))

    def _serving() -> Serving:
        if serving is None:
            raise HTTPException(503, "this node serves no models")
        return serving

    def _job(job_id: str) -> dict:
        found = store.job(job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id!r} on node {coordinator.me!r}")
        return found

    return app


async def _optional_body(request: Request) -> dict:
    """``{}`` or ``{"version": N}``; an empty body is ``{}``."""
    found = await _json_body(request, limit=1024, empty={})
    if not isinstance(found, dict) or not set(found) <= {"version"}:
        raise HTTPException(422, "send nothing, or {\"version\": N}")
    return found


def _version(body: dict) -> int | None:
    version = body.get("version")
    if version is not None and (type(version) is not int or not 0 < version <= MAX_VERSION):
        raise HTTPException(422, f"a version is a whole number from 1 to {MAX_VERSION}")
    return version


def _summary(job: dict) -> dict:
    keys = ("id", "name", "proposer", "status", "reason", "created", "updated")
    return {**{k: job[k] for k in keys}, "parties": {name: entry["role"]
                                                     for name, entry in job["proposal"]["job"]["parties"].items()}}


async def _json_body(request: Request, limit: int = MAX_BODY_BYTES, empty: Any = None) -> Any:
    """The body as JSON, refused past ``limit`` bytes before it is all read; ``empty`` if given and it is empty."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(413, f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the body is larger than {limit} bytes")
    if empty is not None and not body.strip():
        return empty
    try:
        return json.loads(body)
    except ValueError:
        raise HTTPException(422, "the body is not JSON") from None
