"""One party's process: start its mutual-TLS node, run its side of the job, stop.

This is what ``isthmus run JOB --party NAME`` does on each organisation's machine.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from isthmus.jobs.context import PartyContext
from isthmus.jobs.runner import check_steps, run_party
from isthmus.jobs.spec import JobSpec
from isthmus.transport.audit import AuditLog
from isthmus.transport.certs import tls_files_for
from isthmus.transport.grpc_transport import GrpcNode


def run_party_process(spec: JobSpec, party: str, *, certs_dir: Path, run_dir: Path,
                      listen: str | None = None, resume: bool = False, record: bool | None = None) -> PartyContext:
    """``resume`` sets the job-level option of that name: steps that checkpoint continue from ``run_dir``.
    ``record``, when given, overrides the job's own ``record`` option (endorse the outcome on the ledger)."""
    check_steps(spec)
    if resume:
        spec = dataclasses.replace(spec, options={**spec.options, "resume": True})
    if record is not None:
        spec = dataclasses.replace(spec, options={**spec.options, "record": record})
    me = spec.party(party)
    run_dir.mkdir(parents=True, exist_ok=True)
    _log_to(run_dir / "party.log", party)
    audit = AuditLog(run_dir / "audit.jsonl", party, keep_payloads=bool(spec.options.get("audit_payloads", False)))
    node = GrpcNode(party, listen or me.address, {name: p.address for name, p in spec.parties.items()},
                    tls_files_for(certs_dir, party), audit=audit,
                    connect_timeout=float(spec.options.get("connect_timeout", 60)),
                    recv_timeout=float(spec.options.get("timeout", 600)))
    node.open_job(spec.name)  # before serving, so that no early peer is turned away
    node.start()
    try:
        return run_party(spec, party, node.channel(spec.name), run_dir, certs_dir=certs_dir)
    finally:
        node.stop(grace=2.0)


def _log_to(path: Path, party: str) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("isthmus")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
