"""The board's pages on the node's FastAPI app: jobs, a job (live), approvals, results, audit, ledger, serving,
federation.

Every page is rendered on the server from this node's own store and files (:mod:`.reads`); the
browser gets HTML with autoescaping, the vendored htmx and Chart.js, and no inline script, so the
Content-Security-Policy can forbid any. A job page follows its job through server-sent events: one
connection, a fragment pushed only when the job's state, events or log changed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import parse_qs

import jinja2
import yaml
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from isthmus.errors import ConfigError
from isthmus.incentive.ledger import ledger_path
from isthmus.incentive.summary import summarise
from isthmus.jobs.events import read_events, read_recent_events
from isthmus.node.board import reads
from isthmus.node.board.guard import SESSION_COOKIE, SESSION_SECONDS, Guard
from isthmus.node.board.rules import policy_rows
from isthmus.node.coordinator import Coordinator, proposal_of
from isthmus.node.retention import CLEANED_BY_OPERATOR, ROW_OUTPUTS, clean
from isthmus.node.runner import job_folder
from isthmus.node.status import PING_S, node_status
from isthmus.node.store import FINAL

HERE = Path(__file__).parent
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
#: The only messages a redirect may ask a page to show (no text from the URL is ever shown).
NOTES = {"approved": "You approved this job: its proposer starts it when every party has signed.",
         "refused": "You refused this job; its proposer and the other parties are told your reason.",
         "cleaned": "You removed this job's per-row outputs here; its model part, metrics, logs and audit stay.",
         "twice": "This form had been submitted already: it was acted on once."}
_FORM_BYTES = 4096
#: How much of each serving log the serving page reads: the last ~40,000 requests. The logs grow by a line
#: per request for as long as the node runs.
RECENT_LOG_BYTES = 4 << 20
_LIVE_SECONDS = 120.0  # a live stream ends after this; the browser reconnects (so a node can always shut down)
_LIVE_TICK = 0.5


class _Gate:
    """The board's rule for every path but the API's: loopback names, a session, its security headers.
    Plain ASGI (a BaseHTTPMiddleware would add a task hop to every API call, predictions included)."""

    def __init__(self, app: ASGIApp, guard: Guard):
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path == "/v1" or path.startswith("/v1/"):
            return await self.app(scope, receive, send)  # the API's own token rule (api.create_app) applies
        request = Request(scope)
        if not self.guard.host_allowed(request.headers.get("host", "")):
            return await Response("this board answers on its loopback address only", status_code=421)(
                scope, receive, send)
        if not (path.startswith("/static/") or path == "/signin"
                or self.guard.signed_in(request.headers, request.cookies)):
            return await RedirectResponse("/signin", status_code=303)(scope, receive, send)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(_HEADERS)
            await send(message)

        await self.app(scope, receive, with_headers)


def mount_board(app: FastAPI, coordinator: Coordinator, guard: Guard) -> None:
    store, config = coordinator.store, coordinator.config
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["when"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t else "-"
    env.filters["size"] = _size
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def page(name: str, http_status: int = 200, **values) -> HTMLResponse:
        html = env.get_template(name).render(party=coordinator.me, csrf=guard.csrf_token, **values)
        return HTMLResponse(html, status_code=http_status)

    def job_or_404(job_id: str) -> dict:
        job = store.job(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r} on node {coordinator.me!r}")
        return job

    def run_dir(job_id: str) -> Path:
        return job_folder(config.store, job_id) / "run"

    def live_values(job: dict) -> dict:
        run = run_dir(job["id"])
        events = read_events(run / "events.jsonl")
        rows = reads.steps(reads.step_names(job["proposal"]["job"]), events)
        failed = next((row for row in rows if row["state"] == "failed"), None)
        return {"job": job, "steps": rows, "failed": failed, "log": reads.log_tail(run / "party.log"),
                "has_results": (run / "metrics.json").exists(), "has_audit": (run / "audit.jsonl").exists(),
                "has_row_outputs": any((run / name).exists() for name in ROW_OUTPUTS)}

    app.add_middleware(_Gate, guard=guard)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/jobs", status_code=303)

    @app.get("/signin", response_class=HTMLResponse)
    def signin_form() -> HTMLResponse:
        return page("signin.html", needed=guard.token is not None, wrong=False)

    @app.post("/signin")
    async def signin(request: Request) -> Response:
        form = await _form(request)
        if guard.check_form(form.get("csrf", ""), request.headers.get("origin"), request.headers.get("host", "")) \
                == "forged":
            raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
        session = guard.session_for(form.get("token", ""))
        if session is None:
            return page("signin.html", http_status=401, needed=True, wrong=True)
        response = RedirectResponse("/jobs", status_code=303)
        response.set_cookie(SESSION_COOKIE, session, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                            path="/")
        return response

    @app.get("/jobs", response_class=HTMLResponse)
    def jobs(q: str = "", status: str = "") -> HTMLResponse:
        rows = [_summary(job) for job in reversed(store.jobs())]
        shown = [row for row in rows if (not status or row["status"] == status) and _matches(row, q.strip().lower())]
        return page("jobs.html", jobs=shown, total=len(rows), q=q, status=status,
                    statuses=sorted({row["status"] for row in rows}))

    @app.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(job_id: str, note: str = "") -> HTMLResponse:
        job = job_or_404(job_id)
        votes = store.votes(job_id)
        return page("job.html", note=NOTES.get(note), votes=votes, summary=_summary(job), **live_values(job))

    @app.get("/jobs/{job_id}/live")
    async def live(job_id: str, request: Request) -> StreamingResponse:
        job_or_404(job_id)
        fragment = env.get_template("_live.html")

        async def stream():
            seen, ends = None, time.monotonic() + _LIVE_SECONDS
            while time.monotonic() < ends and not await request.is_disconnected():
                job = store.job(job_id)
                run = run_dir(job_id)
                mark = (job["status"], job["updated"], *(_size_of(run / n) for n in ("events.jsonl", "party.log")))
                if mark != seen:
                    seen = mark
                    html = fragment.render(party=coordinator.me, **live_values(job))
                    yield "event: state\n" + "".join(f"data: {line}\n" for line in html.splitlines()) + "\n"
                if job["status"] in FINAL:
                    yield "event: end\ndata: end\n\n"
                    return
                await asyncio.sleep(_LIVE_TICK)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

    @app.get("/approvals", response_class=HTMLResponse)
    def approvals() -> HTMLResponse:
        pending = []
        for job in store.with_status("pending"):
            proposal = proposal_of(job)
            pending.append({"job": job, "summary": _summary(job),
                            "rules": policy_rows(config, proposal, coordinator.testable),
                            "document": yaml.safe_dump(proposal.body, sort_keys=False),
                            "tables": _my_tables(config, proposal, coordinator.me)})
        return page("approvals.html", pending=pending)

    @app.post("/jobs/{job_id}/approve")
    async def approve(job_id: str, request: Request) -> Response:
        return await _decide(job_id, request, lambda form: coordinator.approve(job_id), "approved")

    @app.post("/jobs/{job_id}/refuse")
    async def refuse(job_id: str, request: Request) -> Response:
        def act(form: dict) -> None:
            reason = form.get("reason", "").strip()
            if not reason:
                raise ConfigError("a refusal needs a reason")
            coordinator.refuse(job_id, reason)
        return await _decide(job_id, request, act, "refused")

    @app.post("/jobs/{job_id}/clean")
    async def clean_job(job_id: str, request: Request) -> Response:
        return await _decide(job_id, request, lambda form: clean(store, config.store, job_id, CLEANED_BY_OPERATOR),
                             "cleaned")

    async def _decide(job_id: str, request: Request, act, note: str) -> Response:
        job_or_404(job_id)
        form = await _form(request)
        verdict = guard.check_form(form.get("csrf", ""), request.headers.get("origin"), request.headers.get("host", ""))
        if verdict == "forged":
            raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
        if verdict == "fresh":
            try:
                await run_in_threadpool(act, form)
            except ConfigError as exc:
                job = job_or_404(job_id)
                return page("job.html", http_status=409, note=str(exc), votes=store.votes(job_id), summary=_summary(job),
                            **live_values(job))
        return RedirectResponse(f"/jobs/{job_id}?note={note if verdict == 'fresh' else 'twice'}", status_code=303)

    @app.get("/jobs/{job_id}/results", response_class=HTMLResponse)
    def results(job_id: str) -> HTMLResponse:
        job = job_or_404(job_id)
        run = run_dir(job_id)
        metrics = reads.read_json(run / "metrics.json")
        task = (metrics or {}).get("task")
        rows = reads.predictions(run / "predictions.csv")
        return page("results.html", job=job, summary=_summary(job), metrics=reads.scalar_metrics(metrics), task=task,
                    roc=reads.roc_points(rows), confusion=reads.confusion(rows), residuals=reads.residuals(rows, task),
                    deciles=reads.deciles(metrics), model=reads.own_model_part(reads.read_json(run / "model.json"), coordinator.me))

    @app.get("/jobs/{job_id}/audit", response_class=HTMLResponse)
    def audit(job_id: str) -> HTMLResponse:
        job = job_or_404(job_id)
        entries = read_events(run_dir(job_id) / "audit.jsonl")
        return page("audit.html", job=job, summary=_summary(job), audit=reads.audit(entries))

    @app.get("/ledger", response_class=HTMLResponse)
    def ledger() -> HTMLResponse:
        path = ledger_path(config.keys, coordinator.me)
        return page("ledger.html", ledger=summarise(path, coordinator.pinned), path=path)

    @app.get("/ledger/peers", response_class=HTMLResponse)
    def ledger_peers() -> HTMLResponse:
        """The peers' replicas against this one: a fragment the ledger page loads, so a peer that is down
        holds only this part of the page (for up to the wait of the check)."""
        return page("_replicas.html", peers=coordinator.replicas.check())

    @app.get("/federation", response_class=HTMLResponse)
    def federation() -> HTMLResponse:
        return page("federation.html", status=node_status(coordinator), addresses=config.members)

    @app.get("/federation/peers", response_class=HTMLResponse)
    def federation_peers() -> HTMLResponse:
        """The members' nodes pinged: a fragment the federation page loads, so a node that is down holds only
        this part of the page (for the ping's wait)."""
        return page("_peers.html", peers=node_status(coordinator, ping=True)["peers"], wait=PING_S)

    @app.get("/serving", response_class=HTMLResponse)
    def serving() -> HTMLResponse:
        rows = reads.serving(store.models(), read_recent_events(config.store / "serving.jsonl", RECENT_LOG_BYTES),
                             read_recent_events(config.store / "predictions.jsonl", RECENT_LOG_BYTES))
        return page("serving.html", models=rows, window=RECENT_LOG_BYTES)

    app.state.board_page = page  # the 404 page (api.create_app's handler) uses the same layout


def _summary(job: dict) -> dict:
    body = job["proposal"]["job"]
    models = [step["train"].get("model") for step in body.get("steps", [])
              if isinstance(step, dict) and isinstance(step.get("train"), dict)]
    return {"id": job["id"], "name": job["name"], "proposer": job["proposer"], "status": job["status"],
            "reason": job["reason"], "created": job["created"], "updated": job["updated"],
            "cleaned": job["cleaned"], "cleaned_reason": job["cleaned_reason"],
            "parties": {name: entry.get("role") for name, entry in body["parties"].items()},
            "model": ", ".join(str(m) for m in models if m) or "-"}


def _matches(row: dict, q: str) -> bool:
    if not q:
        return True
    text = " ".join([row["id"], row["name"], row["proposer"], row["model"], row["status"], *row["parties"]])
    return q in text.lower()


def _my_tables(config, proposal, me: str) -> list[dict]:
    alias = proposal.alias_of(me)
    if alias is None:
        return []
    entry = config.options.catalogue.get(alias)
    return [{"alias": alias, "known": entry is not None,
             "columns": entry.model_dump(exclude_none=True, exclude={"path", "test"}) if entry else {}}]


def _size(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (the board's own), read with a size limit; the last value of each field."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _FORM_BYTES:
            raise HTTPException(413, f"a form is at most {_FORM_BYTES} bytes")
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in fields.items()}
