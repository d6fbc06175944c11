"""One party's process: start its mutual-TLS node, run its side of the job, stop.

This is what ``isthmus run JOB --party NAME`` does on each organisation's machine.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from isthmus.algorithms.registry import BUILTIN
from isthmus.compute import ComputeError, connect, from_environment, use
from isthmus.crypto import parallel
from isthmus.errors import ConfigError, IsthmusError, PeerError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.events import EventLog
from isthmus.jobs.agreement import TAG as AGREEMENT_TAG
from isthmus.jobs.agreement import JobMismatchError, answer_summaries, check_same_job, peer_running_another
from isthmus.jobs.peers import expendable_peers, listening_peers, needed_peers, wait_for_peers
from isthmus.jobs.plan import Plan, make_plan
from isthmus.jobs.rundir import party_folder
from isthmus.jobs.runner import EXPENDABLE_ROLES, abort_reason, run_party
from isthmus.jobs.spec import JobSpec, load_job
from isthmus.processes import interrupt_once
from isthmus.transport.audit import AuditLog
from isthmus.transport.certs import tls_files_for
from isthmus.transport.grpc_transport import GrpcNode

#: What a party's process imports before its job: children of a fork server that has imported these
#: (:mod:`isthmus.processes`) start in milliseconds, not the seconds of a fresh interpreter. The plots
#: bring scikit-learn's metrics and matplotlib, 2-3 s that every evaluating party would pay.
PRELOAD = (__name__, *BUILTIN, "isthmus.ml.plots")

#: How long a party whose job summary a peer refused waits for that peer's own, to name the difference.
MISMATCH_SIGN_S = 2.0
#: How long telling a peer listening a moment ago that this party stops may take (:func:`_tell`).
TELL_S = 5.0


def run_party_process(spec: JobSpec, party: str, *, certs_dir: Path, run_dir: Path,
                      listen: str | None = None, resume: bool = False, record: bool | None = None,
                      replace: bool = False, data: Path | None = None, test: Path | None = None,
                      compute: str | None = None) -> PartyContext:
    """``resume`` sets the job-level option of that name: steps that checkpoint continue from ``run_dir``.
    ``record``, when given, overrides the job's own ``record`` option (endorse the outcome on the ledger).
    ``run_dir`` is this party's own: an earlier run in it is refused unless ``replace`` or ``resume``.
    ``data`` and ``test`` replace the paths the job gives for this party's tables.
    ``compute`` is this party's own backend (``ray://HOST:PORT``; default ``ISTHMUS_COMPUTE``, else the
    local pool): its address is read first, and it is connected to and checked once this party listens."""
    changes = {"resume": True} if resume else {}
    if record is not None:
        changes["record"] = record
    spec = dataclasses.replace(spec, options=spec.options.model_copy(update=changes))
    spec = with_own_data(spec, party, data=data, test=test)
    plan = make_plan(spec, party)  # every option checked before anything else happens
    me = spec.party(party)
    tls = tls_files_for(certs_dir, party)
    backend = connect(compute) if compute else from_environment()
    with party_folder(run_dir, job=spec.name, party=party, role=me.role, replace=replace, resume=resume):
        _log_to(run_dir / "party.log", party)
        audit = AuditLog(run_dir / "audit.jsonl", party, keep_payloads=spec.options.audit_payloads)
        connect_timeout = spec.options.connect_timeout
        node = GrpcNode(party, listen or me.address, {name: p.address for name, p in spec.parties.items()},
                        tls, audit=audit, connect_timeout=connect_timeout,
                        recv_timeout=spec.options.timeout, give_up_on_unreachable=True)
        # Opened before serving: no early peer is turned away.
        node.open_job(spec.name, accept=[*plan.tag_prefixes(), AGREEMENT_TAG])
        try:
            try:
                # Started inside: its port listens before start() returns, so a peer may already count on
                # this party when a SIGTERM lands here, and must hear that it stopped.
                node.start()
                # Checked once this party listens: checked before, a wrong or slow Ray cluster kept the port
                # closed, and the peers waited their whole connect timeout to blame the party's address.
                backend.check()
                logging.getLogger("isthmus").info("compute backend: %s", backend.label)
                wait_for_peers(plan, timeout=connect_timeout, check_abort=lambda: _check_peers(node, plan),
                               heard_from=lambda: node.mailbox.senders(spec.name))
                if me.role in EXPENDABLE_ROLES:  # its aggregator answers (answering_clients); it tells no one
                    check_same_job(node.channel(spec.name), plan, needed_peers(plan))
                else:
                    _agree(node, plan)
            except (PeerError, JobMismatchError) as exc:
                EventLog(run_dir, party).emit(step="connect", status="failed", error=str(exc))
                raise
            except (ComputeError, KeyboardInterrupt) as exc:  # this party's own failure: its peers are told
                error = str(exc) if isinstance(exc, ComputeError) else "interrupted"
                EventLog(run_dir, party).emit(step="connect", status="failed", error=error)
                if me.role not in EXPENDABLE_ROLES and node.port is not None:
                    _tell_peers(node, plan, exc)
                raise
            with use(backend), answering_clients(node, plan):
                return run_party(spec, party, node.channel(spec.name), run_dir, certs_dir=certs_dir, plan=plan)
        finally:
            node.stop(grace=2.0)
            backend.close()


@contextmanager
def answering_clients(node: GrpcNode, plan: Plan) -> Iterator[None]:
    """For the block, a horizontal aggregator answers its clients' job summaries (:func:`answer_summaries`); a
    client left out there is refused by this party's mailbox, so the wait for its columns ends at once."""
    clients = expendable_peers(plan)
    if not clients:
        yield
        return
    stop, log = threading.Event(), logging.getLogger(f"isthmus.{plan.party}")

    def leave_out(client: str, why: str) -> None:  # its columns, or its next message, are refused at once
        log.warning("step=connect client %r is left out: %s", client, why)
        node.mailbox.refuse(plan.job.name, client, why)

    answering = threading.Thread(target=answer_summaries, args=(node.channel(plan.job.name), plan, clients, stop,
                                                                leave_out), name="job-summaries", daemon=True)
    answering.start()
    try:
        yield
    finally:
        stop.set()
        # It takes longer only while it retries answering a client that asked and went (up to the connect
        # timeout); the job is done, so it is left to end with the process.
        answering.join(timeout=5.0)


def _check_peers(node: GrpcNode, plan: Plan) -> None:
    """While this party waits for its peers: stop if one gave up on the job, or runs a job of another name.
    The other peers listening are told of the latter: that one may have told only this party (its first
    delivery refused, it ended), and they would wait for it, or retry sending to it, a whole connect timeout."""
    node.mailbox.raise_if_aborted(plan.job.name, "connect")
    mismatch = peer_running_another(plan, node.mailbox.unopened())
    if mismatch is not None:
        listening = _in_this_job(node, listening_peers(plan.job, plan.party))
        _tell(node, plan, listening, abort_reason(plan.party, "connect", mismatch))
        raise mismatch


def _tell_peers(node: GrpcNode, plan: Plan, exc: BaseException) -> None:
    """Tell the peers that this party stops before its job began. Interrupted, it tells those listening now
    (the operator asked it to stop). Failing on its own, it tells each peer as it comes up, for at most the
    connect timeout: a peer started a moment later than this party would otherwise wait its whole connect
    timeout and then blame this party's address ("nothing listens where 'host' should")."""
    reason = abort_reason(plan.party, "connect", exc)
    if isinstance(exc, KeyboardInterrupt):
        _tell(node, plan, listening_peers(plan.job, plan.party), reason)
        return
    timeout = plan.job.options.connect_timeout
    logging.getLogger(f"isthmus.{plan.party}").warning(
        "step=connect this party cannot take part (%s); its peers are told first, each as it comes up, for at "
        "most %g s (connect_timeout; Ctrl-C stops at once)", type(exc).__name__, timeout)
    try:
        wait_for_peers(plan, timeout=timeout, heard_from=lambda: node.mailbox.senders(plan.job.name),
                       on_reached=lambda peers: _tell(node, plan, peers, reason))
    except PeerError:  # a peer never up cannot be told, and finds nothing listening where this party should
        pass


def _agree(node: GrpcNode, plan: Plan) -> None:
    """:func:`check_same_job` with the peers this party meets. One that cannot give them its summary (a peer
    refusing it: that process runs a job of another name) tells them, or they would go on sending theirs to
    this party gone for a whole connect timeout; the peer it failed with is not told (it refused, or is gone)."""
    peers = needed_peers(plan)
    try:
        check_same_job(node.channel(plan.job.name), plan, peers)
    except PeerError as exc:
        failure = _mismatch_behind(node, plan) or exc
        up = _in_this_job(node, listening_peers(plan.job, plan.party))  # one gone by now would be retried at length
        told = [peer for peer in peers if peer in up and peer != exc.peer]
        _tell(node, plan, told, abort_reason(plan.party, "agreement", failure))
        raise failure from None


def _tell(node: GrpcNode, plan: Plan, peers: list[str], reason: str) -> None:
    """Tell ``peers``, found listening a moment ago, that this party gives up on the job before it began. One
    gone since is not retried for the whole connect timeout, which kept this party from ending for a minute."""
    node.channel(plan.job.name, peers, connect_timeout=TELL_S).abort(reason)


def _mismatch_behind(node: GrpcNode, plan: Plan) -> JobMismatchError | None:
    """Whether a peer that refused this party's summary runs a job of another name: that is the cause to name.
    Its own summary or abort (refused here, and noted) may come a moment after its refusal, so it is waited
    for briefly: without it, the parties said only "job 'copies' is not open there", or blamed each other."""
    deadline = time.monotonic() + MISMATCH_SIGN_S
    while (mismatch := peer_running_another(plan, node.mailbox.unopened())) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return mismatch


def _in_this_job(node: GrpcNode, peers: list[str]) -> list[str]:
    """``peers`` but those that sent this party messages for a job of another name: they refuse this job's,
    or end as one goes out to them, and this party would retry it for a whole connect timeout."""
    unopened = node.mailbox.unopened()
    return [peer for peer in peers if peer not in unopened]


def launched_party(job_path: Path, party: str, certs_dir: Path, run_dir: Path, record: bool, log_path: Path,
                   compute: str | None = None) -> None:
    """What `isthmus launch` starts in each party's process: the party's side, its output in ``log_path``.

    An isthmus error ends the process with status 1 after one line in the log (the events say more);
    SIGINT or SIGTERM end it as Ctrl-C ends `isthmus run` (status 130); anything else leaves its traceback
    there. It ends through :func:`end_process`.
    """
    with open(log_path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), sys.stdout.fileno())
        os.dup2(log.fileno(), sys.stderr.fileno())
    sys.stdout.reconfigure(line_buffering=True)
    interrupt_once()
    code = 1
    try:
        run_party_process(load_job(job_path), party, certs_dir=certs_dir, run_dir=run_dir, record=record,
                          compute=compute)
        print(f"party {party} finished; results in {run_dir}")
        code = 0
    except IsthmusError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KeyboardInterrupt as exc:
        print(f"party {party} interrupted ({exc or 'SIGINT'}); its run in {run_dir} is marked so", file=sys.stderr)
        code = 130
    except BaseException:
        traceback.print_exc()
    finally:
        end_process(code)


def end_process(code: int) -> NoReturn:
    """Stop this process's crypto workers, flush its output and end it with ``code`` at once, skipping the
    interpreter's own exit: left to it, a spawned party joining its worker pools (loky, the PSI fork server)
    was seen to hang for minutes after a 10,000-row job had finished, and `isthmus run`, its run marked
    interrupted and its peers told, ended now and then (under load) by SIGINT instead of with status 130."""
    parallel.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def with_own_data(spec: JobSpec, party: str, *, data: Path | None = None, test: Path | None = None) -> JobSpec:
    """The job with ``party``'s table paths replaced by its own: a job file every member shares must not
    choose which file another organisation reads. The job's columns (id, label, features) still apply."""
    if data is None and test is None:
        return spec
    me = spec.party(party)
    if me.data is None:
        raise ConfigError(f"job {spec.name!r} gives party {party!r} no data, so --data and --test have nothing "
                          "to replace (the job must name the table's columns)")
    if test is not None and me.data.test is None:
        raise ConfigError(f"job {spec.name!r} gives party {party!r} no test data, so --test has nothing to replace")
    paths = {key: Path(value).absolute() for key, value in (("path", data), ("test", test)) if value is not None}
    mine = dataclasses.replace(me, data=dataclasses.replace(me.data, **paths))
    return dataclasses.replace(spec, parties={**spec.parties, party: mine})


def _log_to(path: Path, party: str) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("isthmus")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
