"""One party's process: start its mutual-TLS node, run its side of the job, stop.

This is what ``isthmus run JOB --party NAME`` does on each organisation's machine.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from isthmus.errors import ConfigError, PeerError
from isthmus.jobs.context import PartyContext
from isthmus.jobs.events import EventLog
from isthmus.jobs.peers import wait_for_peers
from isthmus.jobs.rundir import party_folder
from isthmus.jobs.runner import check_steps, run_party
from isthmus.jobs.spec import JobSpec
from isthmus.transport.audit import AuditLog
from isthmus.transport.certs import tls_files_for
from isthmus.transport.grpc_transport import GrpcNode


def run_party_process(spec: JobSpec, party: str, *, certs_dir: Path, run_dir: Path,
                      listen: str | None = None, resume: bool = False, record: bool | None = None,
                      replace: bool = False, data: Path | None = None, test: Path | None = None) -> PartyContext:
    """``resume`` sets the job-level option of that name: steps that checkpoint continue from ``run_dir``.
    ``record``, when given, overrides the job's own ``record`` option (endorse the outcome on the ledger).
    ``run_dir`` is this party's own: an earlier run in it is refused unless ``replace`` or ``resume``.
    ``data`` and ``test`` replace the paths the job gives for this party's tables."""
    check_steps(spec)
    if resume:
        spec = dataclasses.replace(spec, options={**spec.options, "resume": True})
    if record is not None:
        spec = dataclasses.replace(spec, options={**spec.options, "record": record})
    spec = with_own_data(spec, party, data=data, test=test)
    me = spec.party(party)
    tls = tls_files_for(certs_dir, party)
    with party_folder(run_dir, job=spec.name, party=party, role=me.role, replace=replace, resume=resume):
        _log_to(run_dir / "party.log", party)
        audit = AuditLog(run_dir / "audit.jsonl", party, keep_payloads=bool(spec.options.get("audit_payloads", False)))
        connect_timeout = float(spec.options.get("connect_timeout", 60))
        node = GrpcNode(party, listen or me.address, {name: p.address for name, p in spec.parties.items()},
                        tls, audit=audit, connect_timeout=connect_timeout,
                        recv_timeout=float(spec.options.get("timeout", 600)))
        node.open_job(spec.name)  # before serving, so that no early peer is turned away
        node.start()
        try:
            try:
                wait_for_peers(spec, party, timeout=connect_timeout,
                               check_abort=lambda: node.mailbox.raise_if_aborted(spec.name, "connect"))
            except PeerError as exc:
                EventLog(run_dir, party).emit(step="connect", status="failed", error=str(exc))
                raise
            return run_party(spec, party, node.channel(spec.name), run_dir, certs_dir=certs_dir)
        finally:
            node.stop(grace=2.0)


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
