"""One party of the query service as a long-running process: mutual-TLS gRPC, state files, control socket.

State directory (created 0700): ``oprf.key`` (the institution's OPRF key, 0600, kept across
restarts so its published pseudonyms stay valid), ``audit.jsonl`` (every message in and out),
``queries.jsonl`` (every query, never an id) and the control socket. An institution watches its
loans table and republishes when the file changes (replace it atomically, e.g. write then rename),
so a refresh needs no downtime: queries keep being answered from the previous version meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from isthmus.crypto.oprf import OprfKey
from isthmus.errors import ConfigError, IsthmusError
from isthmus.files import create_private
from isthmus.jobs.rundir import locked
from isthmus.query import protocol
from isthmus.query.config import QueryConfig
from isthmus.query.control import SOCKET_NAME, ControlServer, batch_to_json
from isthmus.query.loans import load_exposures
from isthmus.query.parties import PUBLISH_TIMEOUT, AggregatorParty, InstitutionParty
from isthmus.query.querylog import QueryLog, QueryRecord
from isthmus.transport.audit import AuditLog
from isthmus.transport.certs import tls_files_for
from isthmus.transport.grpc_transport import GrpcNode

_log = logging.getLogger(__name__)
KEY_FILE = "oprf.key"


def serve(
    config: QueryConfig,
    party: str,
    state_dir: Path,
    stop: threading.Event,
    *,
    table: Path | None = None,
    listen: str | None = None,
    refresh_seconds: float = 10.0,
    workers: int | None = None,
    on_record: Callable[[QueryRecord], None] | None = None,
) -> None:
    """Run ``party`` (an institution with its ``table``, or the aggregator) until ``stop`` is set."""
    config.check_member(party)
    is_aggregator = party == config.aggregator
    if not is_aggregator and table is None:
        raise ConfigError(f"institution {party!r} needs its loans table (--table)")
    if config.cert_dir is None:
        raise ConfigError("the query configuration names no certificate folder ('certs')")
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    # A second service on this state (with another --listen) would take over the first one's control socket.
    with locked(state_dir, "is this member's query service running already? Stop it first, or use another --state-dir"):
        log = QueryLog(state_dir / "queries.jsonl", on_record=on_record)
        node = GrpcNode(
            party,
            listen or config.addresses[party],
            config.addresses,
            tls_files_for(config.cert_dir, party),
            audit=AuditLog(state_dir / "audit.jsonl", party),
            connect_timeout=config.connect_timeout,
        )
        with node:
            channel = node.channel(protocol.JOB)
            if is_aggregator:
                aggregator = AggregatorParty(channel, config, log)
                operations = {"status": lambda _: _aggregator_status(aggregator)}
                parts: list[Any] = [aggregator]
            else:
                assert table is not None
                institution = InstitutionParty(channel, config, load_or_create_key(state_dir / KEY_FILE), log,
                                               workers=workers)
                watcher = TableWatcher(institution, table, refresh_seconds)
                operations = {
                    "ask": lambda request: batch_to_json(institution.ask(request.get("ids") or [])),
                    "refresh": lambda _: watcher.reload(wait=PUBLISH_TIMEOUT),
                    "status": lambda _: _institution_status(institution),
                }
                parts = [institution, watcher]
            control = ControlServer(state_dir / SOCKET_NAME, operations)
            started: list[Any] = []
            try:
                control.start()  # first, so that `status` answers during a long setup
                for part in parts:
                    part.start()
                    started.append(part)
                _log.info("query service of %s running (%s)", party, "aggregator" if is_aggregator else "institution")
                stop.wait()
            finally:
                control.stop()
                for part in reversed(started):
                    part.stop()


def load_or_create_key(path: Path) -> OprfKey:
    """The institution's OPRF key, created from the OS's randomness on first start (mode 0600)."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"OPRF key {path} is accessible to other users; run: chmod 600 {path}")
        try:
            return OprfKey(path.read_bytes())
        except ValueError as exc:
            raise ConfigError(f"OPRF key {path} is damaged: {exc}") from None
    key = OprfKey.generate()
    create_private(path, key.to_bytes())  # whole and synced: every table published is blinded with it
    return key


class TableWatcher:
    """Loads the loans table at start and whenever the file changes; a bad version is logged and skipped."""

    def __init__(self, institution: InstitutionParty, path: Path, interval: float):
        self.institution = institution
        self.path = Path(path)
        self.interval = interval
        self._seen: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="query-table-watch", daemon=True)

    def start(self) -> None:
        self.reload()  # the first load is setup: a bad table stops the service with a clear error
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def reload(self, *, wait: float | None = None) -> dict[str, Any]:
        """Read the table, publish what changed; with ``wait``, until the aggregator holds it."""
        with self._lock:
            started = time.perf_counter()
            self._seen = self._signature()
            config = self.institution.config
            exposures = load_exposures(self.path, config.table, config.policy, party=self.institution.party)
            change = self.institution.load(exposures, wait=wait)
            seconds = time.perf_counter() - started
            _log.info("table version %d: %d customers, %d changed, %d removed, %.1f s",
                      self.institution.responder.version, len(exposures), len(change.upserted), len(change.removed), seconds)
            return {"version": self.institution.responder.version, "customers": len(exposures),
                    "changed": len(change.upserted), "removed": len(change.removed), "seconds": seconds}

    def _signature(self) -> tuple[int, int] | None:
        try:
            status = self.path.stat()
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            if self._signature() not in (None, self._seen):
                try:
                    self.reload()
                except IsthmusError as exc:
                    _log.error("kept the previous table version: %s", exc)


def _institution_status(institution: InstitutionParty) -> dict[str, Any]:
    return {
        "party": institution.party,
        "role": "institution",
        "version": institution.responder.version,
        "published": institution.publisher.published,
    }


def _aggregator_status(aggregator: AggregatorParty) -> dict[str, Any]:
    tables = aggregator.aggregator.tables()
    return {
        "party": aggregator.aggregator.party,
        "role": "aggregator",
        "tables": {name: {"rows": int(t.tags.size), "version": t.version} for name, t in tables.items()},
    }
