"""Runs this party's side of an accepted job as its own process, with the existing one-party runner.

The process is what ``isthmus run`` runs (:func:`isthmus.jobs.party_process.launched_party`), on the
job written with this party's own paths into the node's store: ``STORE/jobs/ID/job.yaml``, its results
in ``run/``, its output in ``process.log``. It dies with the node, so a restarted node never finds a job
of its own running that it does not know about.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from isthmus.errors import ConfigError
from isthmus.jobs.events import read_events
from isthmus.jobs.local import write_job
from isthmus.jobs.party_process import PRELOAD, launched_party
from isthmus.jobs.rundir import RUN_MARKER, mark_stopped
from isthmus.node.store import StoreError
from isthmus.processes import fresh_process, start_forkserver, when_starter_ends
from isthmus.transport.ports import free_port, port_is_free

Done = Callable[[str, str, str | None], None]  # (job id, "finished" | "failed", reason)
#: Seconds between attempts to record a job's end in a store that cannot take it (a full disk).
REPORT_RETRY_S = 10.0
_log = logging.getLogger(__name__)


def job_folder(store: Path, job_id: str) -> Path:
    return store / "jobs" / job_id


class ProcessRunner:
    def __init__(self, party: str, store: Path, keys: Path, job_host: str, on_done: Done, compute: str | None = None,
                 ports: range | None = None):
        self.party = party
        self.compute = compute
        self.store = store
        self.keys = keys
        self.job_host = job_host
        self.ports = ports
        self.on_done = on_done
        self._processes: dict[str, multiprocessing.Process] = {}
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Have the party stack imported before the first job: its processes then start at once, instead of
        waiting 2-4 s for those imports (every node of a federation at the same time)."""
        start_forkserver(PRELOAD)

    def address(self, held: set[int]) -> str:
        """Where this party's side of a job will listen (chosen when the node consents): a free port of the
        node's ``job_ports`` that no job of this node ``held`` already, else any free port."""
        if self.ports is None:
            return f"{self.job_host}:{free_port()}"
        for port in self.ports:
            if port not in held and port_is_free(self.job_host, port):
                return f"{self.job_host}:{port}"
        mine = len(held & set(self.ports))
        raise ConfigError(f"every port of job_ports {self.ports.start}-{self.ports.stop - 1} is held: {mine} by "
                          "this node's jobs agreed or running, the others by other programs")

    def start(self, job_id: str, document: dict) -> None:
        folder = job_folder(self.store, job_id)
        job = write_job(folder / "job.yaml", document)
        process = fresh_process(_party_main, (job, self.party, self.keys, folder / "run", folder / "process.log",
                                              self.compute), name=f"isthmus-{self.party}-{job_id}", preload=PRELOAD)
        with self._lock:
            process.start()
            self._processes[job_id] = process
        threading.Thread(target=self._wait, args=(job_id, process), daemon=True).start()

    def cancel(self, job_id: str) -> None:
        with self._lock:
            process = self._processes.get(job_id)
        if process is not None and process.is_alive():
            process.kill()

    def stop(self) -> None:
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            if process.is_alive():
                process.kill()

    def _wait(self, job_id: str, process: multiprocessing.Process) -> None:
        process.join()
        with self._lock:
            self._processes.pop(job_id, None)
        if process.exitcode is not None and process.exitcode < 0:  # cancelled, the node stopping, the OOM killer
            mark_stopped(job_folder(self.store, job_id) / "run" / RUN_MARKER,
                         f"its process was killed ({signal.Signals(-process.exitcode).name})")
        if process.exitcode == 0:
            self._report(job_id, "finished", None)
            return
        self._report(job_id, "failed", self.failure(job_id) or f"its process ended with status {process.exitcode}; "
                                                               "see process.log")

    def _report(self, job_id: str, status: str, reason: str | None) -> None:
        """Tell the node how its side of the job ended, until its store takes it: with the disk full, the job
        stayed "running" for the node's life (its thread ended with the store's error), and its peers were
        never told that it failed here."""
        waited = False
        while True:
            try:
                self.on_done(job_id, status, reason)
                if waited:
                    _log.info("node %s: job %s %s, recorded at last", self.party, job_id, status)
                return
            except StoreError as exc:
                if not waited:
                    _log.error("node %s: job %s %s, and the node cannot record it yet (%s); it tries again every "
                               "%g s", self.party, job_id, status, exc, REPORT_RETRY_S)
                waited = True
            time.sleep(REPORT_RETRY_S)

    def failure(self, job_id: str) -> str | None:
        """Why this party's side of ``job_id`` failed, if its process has recorded a failure."""
        events = read_events(job_folder(self.store, job_id) / "run" / "events.jsonl")
        failed = next((e for e in events if e.get("status") == "failed"), None)
        return None if failed is None else f"step {failed.get('step')}: {failed.get('error')}"


def _party_main(job: Path, party: str, keys: Path, run_dir: Path, log_path: Path, compute: str | None) -> None:
    # Ends as soon as its node ends (killed, or restarted: a restarted node never finds a job of its own
    # running that it does not know about).
    when_starter_ends(lambda: os._exit(1))
    launched_party(job, party, keys, run_dir, None, log_path, compute)
