"""One node as a process: its store, its mutual-TLS port to the other nodes, its runner, its HTTP API, and
the query service when node.yaml has a ``query:`` section.

A node stopped cleanly (SIGINT, SIGTERM) marks the jobs it was running failed and tells their peers, so no
party waits for it. On start, a job this node was running when it died is marked failed with that
reason (its process died with the node) and its peers are told; nothing else changes state.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from contextlib import AbstractContextManager, contextmanager
from collections.abc import Iterator
from pathlib import Path

from isthmus.errors import ConfigError
from isthmus.jobs.rundir import locked
from isthmus.node.config import NodeConfig
from isthmus.node.coordinator import Coordinator
from isthmus.node.query import query_service
from isthmus.node.peers import CONTROL_JOB, MAX_MESSAGE_BYTES, TAG, PeerLink
from isthmus.node.policy import table_problem
from isthmus.node.retention import clean_expired
from isthmus.node.runner import ProcessRunner
from isthmus.node.serving import PING_S, SERVE_SCOPE, Serving
from isthmus.node.status import certificate_status
from isthmus.node.store import Store
from isthmus.transport.audit import AuditLog
from isthmus.transport.certs import WARN_DAYS, tls_files_for
from isthmus.transport.grpc_transport import GrpcNode
from isthmus.transport.keyfiles import RENEW_PARTY_CERT, federation_file, load_pinned_keys, load_signing_key

RESTARTED = "the node restarted while this job ran; its side of the job ended with it"
STOPPED = "the node was stopped while this job ran; its side of the job ended with it"
_log = logging.getLogger(__name__)


@contextmanager
def running_node(config: NodeConfig) -> Iterator[Coordinator]:
    """Everything but the HTTP API, started; stopped (jobs killed) when the block ends."""
    with _holding_store(config), _started(config) as coordinator:
        yield coordinator


def _holding_store(config: NodeConfig) -> AbstractContextManager[Path]:
    """The store is this process's alone while it runs: a second node started on it by mistake would have
    marked the first one's running jobs failed before finding its ports taken."""
    config.store.mkdir(parents=True, exist_ok=True, mode=0o700)
    return locked(config.store, "is that node running already? Stop it first, or give this one its own store")


@contextmanager
def _api_socket(config: NodeConfig) -> Iterator[socket.socket]:
    """The API's port, bound before anything starts, so that a taken one is reported like the peers' port
    before the node touches its jobs (uvicorn, binding it, exited with its own message and status 3)."""
    listen = config.options.api.listen
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    # IPPROTO_TCP named, as getaddrinfo would: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every API answer waited ~40 ms for a delayed ACK (a prediction's p50 went from 13 to 56 ms)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as api:
        api.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart need not wait
        try:
            api.bind((host, int(port)))
        except OSError as exc:
            raise ConfigError(f"node {config.party!r} cannot serve its API on {listen}: {exc.strerror}") from None
        yield api


@contextmanager
def _started(config: NodeConfig) -> Iterator[Coordinator]:
    store_dir = config.store
    store = Store(store_dir / "node.sqlite")
    signing_key = load_signing_key(config.keys, config.party)
    pinned = load_pinned_keys(federation_file(config.keys))
    coordinator: Coordinator
    runner = ProcessRunner(config.party, store_dir, config.keys, config.options.job_host,
                           on_done=lambda job, status, reason: coordinator.job_done(job, status, reason),
                           compute=config.options.compute, ports=config.job_ports)
    coordinator = Coordinator(config, store, signing_key, pinned, runner)
    runner.warm()
    for alias in config.options.catalogue:  # a file may be mounted later: a warning, not a stop
        if (problem := table_problem(config, alias)) is not None:
            _log.warning("node %s: catalogue table %r cannot be read now, so jobs on it are refused: %s",
                         config.party, alias, problem)
    interrupted = store.with_status("running")
    for job in interrupted:  # its own failure, if its process wrote one (the store may have been full then)
        store.set_status(job["id"], "failed", runner.failure(job["id"]) or RESTARTED)
    me = config.members[config.party]
    grpc = GrpcNode(config.party, config.options.listen or me, config.members, tls_files_for(config.keys, config.party),
                    audit=AuditLog(store_dir / "audit.jsonl", config.party), connect_timeout=config.options.timeout,
                    max_message_bytes=MAX_MESSAGE_BYTES, recv_timeout=config.options.timeout)
    grpc.open_job(CONTROL_JOB, accept=[TAG, SERVE_SCOPE])
    grpc.start()
    channel = grpc.channel(CONTROL_JOB)
    link = PeerLink(channel, list(config.members), coordinator.handle, coordinator.undelivered)
    coordinator.send, coordinator.answers, coordinator.certificate = link.send, channel.answers, grpc.certificate
    # published models are served again; a prediction's sends give up on a host's node after PING_S, not the
    # node's timeout: with a host's node down, every prediction made meanwhile waited that whole timeout
    coordinator.serving = Serving(coordinator, grpc.channel(CONTROL_JOB, connect_timeout=PING_S))
    link.start()
    try:
        for job in interrupted:  # the peers' sides wait for ours: tell them
            coordinator.tell_failed(job["id"], RESTARTED)
        with query_service(config), _sweeping(coordinator):
            yield coordinator
    finally:
        for job in store.with_status("running"):
            store.set_status(job["id"], "failed", STOPPED)
            coordinator.tell_failed(job["id"], STOPPED)
        runner.stop()
        link.stop()
        coordinator.serving.close()
        grpc.stop()
        store.close()


@contextmanager
def _sweeping(coordinator: Coordinator) -> Iterator[None]:
    """Ends proposals left unanswered too long (:meth:`Coordinator.expire_unanswered`), removes the per-row
    outputs of jobs that ended more than ``clean_after_days`` ago (:mod:`isthmus.node.retention`) and warns
    in the log, once a day, of a certificate due for renewal, at once (the node may have been down for days)
    and then every minute, or more often when the answer limit is shorter."""
    stop = threading.Event()
    config = coordinator.config
    period = min(60.0, config.policy.answer_within_hours * 3600 / 4)
    warned_on: list[str] = []  # the day the certificate's warning was last logged
    duties = [("checking its certificate", lambda: _warn_of_certificate(coordinator, warned_on)),
              ("expiring unanswered proposals", coordinator.expire_unanswered)]
    if days := config.options.clean_after_days:
        duties.append(("removing the per-row outputs of old jobs",
                       lambda: clean_expired(coordinator.store, config.store, days)))

    def sweep() -> None:
        while True:
            for doing, duty in duties:
                try:
                    duty()
                except Exception:  # a store, link or file failure must not end the sweeping for the node's life
                    _log.exception("node %s: %s failed", coordinator.me, doing)
            if stop.wait(period):
                return

    thread = threading.Thread(target=sweep, name="sweep", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def read_token(config: NodeConfig) -> str | None:
    path = config.token_file
    if path is None:
        return None
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"API token file {path} is accessible to other users; run: chmod 600 {path}")
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 16:
        raise ConfigError(f"API token file {path}: the token must be at least 16 characters")
    return token


class _Stop(BaseException):
    """SIGINT or SIGTERM: leave the node's block, so its jobs, ports and store are closed."""


def _stop(signum: int, frame: object) -> None:
    raise _Stop


def serve(config: NodeConfig) -> None:
    """Run the node until interrupted (SIGINT/SIGTERM); both stop it cleanly, exit code 0.

    uvicorn shuts its server down on either signal and then raises the signal again, to whatever handler
    was there before it: with the default one, SIGTERM ended the process then and there, and the node's
    finally blocks (stopping the runner, the gRPC port, the store) and the interpreter's exit handlers never
    ran. This handler turns that second raise into leaving the block."""
    import uvicorn

    from isthmus.node.api import create_app

    token = read_token(config)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)
    try:
        with _holding_store(config), _api_socket(config) as api, _started(config) as coordinator:
            _log.info("node %s: API on %s, peers on %s", config.party, config.options.api.listen,
                      config.members[config.party])
            uvicorn.Server(uvicorn.Config(create_app(coordinator, token, coordinator.serving), log_level="warning",
                                          access_log=False, timeout_graceful_shutdown=2)  # board streams end too
                           ).run(sockets=[api])
    except _Stop:
        _log.info("node %s: stopped", config.party)


def _warn_of_certificate(coordinator: Coordinator, warned_on: list[str]) -> None:
    """Log, once a day, that the certificate this node presents ends within WARN_DAYS (or has ended): a node
    runs for months, and its start was the only time it said so."""
    cert, today = certificate_status(coordinator), time.strftime("%Y-%m-%d", time.gmtime())
    if cert["days_left"] >= WARN_DAYS or today in warned_on:
        return
    warned_on[:] = [today]
    remedy = ("restart it to present the renewed one already installed" if cert["installed_until"] else
              f"{RENEW_PARTY_CERT}, then restart it")
    if cert["days_left"] < 0:
        _log.error("node %s: its certificate expired on %s: every peer refuses this node; %s", coordinator.me,
                   cert["valid_until"][:10], remedy)
    else:
        _log.warning("node %s: its certificate ends on %s (%d days left); %s", coordinator.me,
                     cert["valid_until"][:10], cert["days_left"], remedy)
