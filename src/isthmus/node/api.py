"""The node's local HTTP API (FastAPI): everything the CLI does goes through it.

Bound to loopback by default; bound elsewhere, every request must carry ``Authorization: Bearer TOKEN``
(the token in ``api.token_file``). Request bodies are read with a size limit before they are parsed.
The operator's web board (:mod:`isthmus.node.board`) is served by the same app at ``/``, signed in
with the same token.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from isthmus.errors import ConfigError, IsthmusError
from isthmus.files import append_line
from isthmus.incentive.ledger import ledger_path
from isthmus.incentive.summary import summarise
from isthmus.node.board import Guard, mount_board
from isthmus.node.coordinator import Coordinator
from isthmus.node.event_stream import job_events, stream
from isthmus.node.proposal import MAX_PROPOSAL_BYTES
from isthmus.node.retention import CLEANED_BY_OPERATOR, clean
from isthmus.node.runner import job_folder
from isthmus.node.serving import MAX_IDS, MAX_VERSION, Serving, ServingBusy, ServingError, UnknownId
from isthmus.node.status import node_status
from isthmus.node.store import StoreError

MAX_BODY_BYTES = MAX_PROPOSAL_BYTES + 1024
MAX_PREDICT_BYTES = MAX_IDS * 140  # 10,000 ids of up to 128 characters, quoted
_LOG_TAIL = 64 * 1024


def create_app(coordinator: Coordinator, token: str | None = None, serving: Serving | None = None) -> FastAPI:
    app = FastAPI(title=f"isthmus node {coordinator.me}", docs_url=None, redoc_url=None, openapi_url=None)
    store, config = coordinator.store, coordinator.config

    guard = Guard(token, _port(config.options.api.listen))
    mount_board(app, coordinator, guard)

    app.add_middleware(_Authorise, token=token, guard=guard)  # added last, so it runs first

    @app.exception_handler(IsthmusError)
    async def refused(request: Request, exc: IsthmusError):
        status = 404 if isinstance(exc, UnknownId) else 503 if isinstance(exc, ServingBusy) else \
            502 if isinstance(exc, ServingError) else 409 if isinstance(exc, ConfigError) else \
            507 if isinstance(exc, StoreError) else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        """The API answers JSON; a board page answers its own HTML page (a 404 for an unknown job)."""
        if request.url.path.startswith("/v1/") or request.url.path.startswith("/static/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return app.state.board_page("error.html", http_status=exc.status_code, code=exc.status_code, detail=exc.detail)

    @app.get("/v1/status")
    def status(peers: bool = False) -> dict:
        """This node's identity, certificate and jobs; with ``peers``, which members' nodes answer a ping now."""
        return node_status(coordinator, ping=peers)

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

    @app.get("/v1/jobs/{job_id}/metrics")
    def metrics(job_id: str) -> dict:
        """This party's evaluation of the job (its metrics.json), when it evaluated."""
        found = _job(job_id)
        path = job_folder(config.store, job_id) / "run" / "metrics.json"
        if not path.is_file():
            raise HTTPException(404, f"job {job_id} has no evaluation at {coordinator.me!r} (it is {found['status']}; "
                                     "a party writes one when it evaluates: the guest, or a horizontal client)")
        return json.loads(path.read_text(encoding="utf-8"))

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

    @app.post("/v1/jobs/{job_id}/clean")
    def clean_job(job_id: str) -> dict:
        _job(job_id)
        removed = clean(store, config.store, job_id, CLEANED_BY_OPERATOR)
        return {**_summary(_job(job_id)), "removed": removed}

    @app.get("/v1/ledger")
    def ledger() -> dict:
        """This node's ledger replica and whether its chain verifies against the keys pinned in its key folder."""
        return {"party": coordinator.me, **summarise(ledger_path(config.keys, coordinator.me), coordinator.pinned)}

    @app.get("/v1/ledger/peers")
    def ledger_peers() -> dict:
        """Each peer's replica against this one: the records naming both must be in both (asks every peer)."""
        return {"party": coordinator.me, "peers": coordinator.replicas.check()}

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
        version = _version(body)
        started, outcome = time.perf_counter(), "failed"
        try:
            version = _serving().version_of(name, version)  # logged as the version that answered
            scores = await asyncio.wrap_future(_serving().submit(name, body["ids"], version))  # not the API's threads
            outcome = "served"
            return {"scores": scores}
        finally:
            _log_request(name, version, len(body["ids"]) if isinstance(body["ids"], list) else 0, outcome,
                         (time.perf_counter() - started) * 1000)

    def _log_request(name: str, version: int | None, rows: int, outcome: str, ms: float) -> None:
        """The guest's own record of its predictions (no ids): what the board's latency percentiles read."""
        entry = {"time": time.time(), "model": name[:63], "version": version, "rows": rows, "outcome": outcome,
                 "ms": round(ms, 3)}
        append_line(config.store / "predictions.jsonl", (json.dumps(entry) + "\n").encode())

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


class _Authorise:
    """The API's rule for /v1 (the board's own applies to the rest). Plain ASGI: a BaseHTTPMiddleware
    would add a task hop to every call, predictions included."""

    def __init__(self, app: ASGIApp, token: str | None, guard: Guard):
        self.app, self.token, self.guard = app, token, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/v1" or path.startswith("/v1/")):
            refusal = self._refusal(Request(scope))
            if refusal is not None:
                return await refusal(scope, receive, send)
        await self.app(scope, receive, send)

    def _refusal(self, request: Request) -> JSONResponse | None:
        if self.token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return JSONResponse({"detail": "missing or wrong token"}, status_code=401)
        elif not self.guard.host_allowed(request.headers.get("host", "")) or _from_a_web_page(request):
            return JSONResponse({"detail": "the API takes calls from this machine's clients only"}, status_code=403)
        return None


def _from_a_web_page(request: Request) -> bool:
    """A browser's request made by some web page (the CLI's client sends neither header): without a token,
    such a page could approve a job blind."""
    return "origin" in request.headers or request.headers.get("sec-fetch-site", "none") != "none"


def _port(listen: str) -> int | None:
    port = listen.rpartition(":")[2]
    return int(port) if port.isdigit() else None


def _summary(job: dict) -> dict:
    keys = ("id", "name", "proposer", "status", "reason", "created", "updated", "cleaned", "cleaned_reason")
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
