"""Run every party of a job as its own process on this machine, over mutual TLS on loopback.

For trying a job before deploying it: each party gets a certificate from a federation CA made for the
run (kept for the next launch into the same folder), runs its side in its own process (the entry
point :func:`~isthmus.jobs.party_process.launched_party`, what ``isthmus run`` does), and leaves its
results in ``OUT/<party>/``, its process output in ``OUT/logs/<party>.log``.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from rich.console import Console
from rich.live import Live
from rich.table import Table

from isthmus.compute import connect
from isthmus.errors import ConfigError, IsthmusError
from isthmus.jobs.events import read_events
from isthmus.jobs.party_process import PRELOAD, launched_party
from isthmus.jobs.plan import check_someone_evaluates, make_plan
from isthmus.jobs.rundir import (LAUNCH_MARKER, LOCK_FILE, RUN_MARKER, check_owned, clear, contents, locked,
                                 mark_stopped, recorded)
from isthmus.jobs.spec import JobSpec, load_job
from isthmus.processes import fresh_process, when_starter_ends
from isthmus.transport.certs import (CA_CERT, CA_KEY, FEDERATION_FILE, PARTY_CERT, SIGNING_KEY, WARN_DAYS,
                                     create_federation, tls_files_for)

#: After one party fails, how long the others get to notice (they are told) before they are stopped; generous,
#: since on a loaded machine a party may still be starting when the first one fails.
FAILURE_GRACE_S = 15.0
#: Seconds between two progress lines of one party in the same step, when the output is not a terminal.
PROGRESS_EVERY_S = 10.0
#: How long a party has to stop on SIGTERM (telling its peers, marking its run) before the launch kills it.
STOP_GRACE_S = 5.0
CERTS, LOGS = "certs", "logs"
#: Certificates that expire sooner than this are made anew rather than reused (or warned about).
_CERTS_MARGIN = dt.timedelta(days=WARN_DAYS)


class LaunchError(IsthmusError):
    """A party of a launched job failed; the message names it and its error."""


@dataclass
class LaunchResult:
    spec: JobSpec
    out_dir: Path
    seconds: float

    def party_dir(self, party: str) -> Path:
        return self.out_dir / party


def launch(job_path: str | Path, out_dir: str | Path, *, console: Console | None = None,
           timeout: float = 3600.0, compute: dict[str, str] | None = None) -> LaunchResult:
    with launched(job_path, out_dir, console=console, timeout=timeout, compute=compute) as result:
        return result


@contextmanager
def launched(job_path: str | Path, out_dir: str | Path, *, console: Console | None = None,
             timeout: float = 3600.0, compute: dict[str, str] | None = None) -> Iterator[LaunchResult]:
    """Run the job; ``out_dir`` stays locked, and its run unfinished, until the block ends (to add results).

    ``compute`` gives parties their own backend by name (``{"host": "ray://..."}``), as ``isthmus run
    --compute`` does on each party's machine; the others use ``ISTHMUS_COMPUTE`` or the local pool.

    ``out_dir`` may hold an earlier launch: its results are replaced, its certificates kept when they
    are for the same parties (so the parties' ledgers go on). Anything else in it is refused.
    """
    spec = load_job(job_path)
    plans = [make_plan(spec, party) for party in spec.parties]  # every party's plan is checked before any starts
    check_someone_evaluates(plans[0])
    preload = (*PRELOAD, *sorted(set().union(*(plan.imports() for plan in plans))))
    compute = compute or {}
    unknown = sorted(set(compute) - set(spec.parties))
    if unknown:
        raise ConfigError(f"--compute names parties that job {spec.name!r} does not have: {unknown}")
    for party, address in compute.items():  # its form only: each party connects to its own cluster
        try:
            connect(address)
        except ConfigError as exc:
            raise ConfigError(f"--compute {party}={address}: {exc}") from None
    out_dir = Path(out_dir).resolve()
    console = console or Console(stderr=True)
    parties = sorted(spec.parties)
    with locked(out_dir):
        check_owned(out_dir, marker=LAUNCH_MARKER, owner="`isthmus launch`", written_before=_launched_before)
        earlier = contents(out_dir)
        reuse = _certs_fit(out_dir / CERTS, parties)
        clear(out_dir, keep=(CERTS,) if reuse else ())
        if earlier:
            console.print(f"replacing the earlier run in {out_dir}" + (" (its certificates are kept)" if reuse else ""))
        with recorded(out_dir / LAUNCH_MARKER, job=spec.name, parties=parties):
            if not reuse:
                create_federation(out_dir / CERTS, parties)
            started = time.monotonic()
            record = records_on_ledger(spec)
            processes = {name: _start(Path(job_path).resolve(), name, out_dir, record=record, compute=compute.get(name),
                                      preload=preload) for name in parties}
            why = (f"stopped by `isthmus launch`: it had not ended within {FAILURE_GRACE_S:g} s of another party's "
                   "failure, or the launch timed out")
            try:
                _watch(spec, processes, out_dir, console, deadline=started + timeout)
            except KeyboardInterrupt as exc:
                why = f"stopped by `isthmus launch`, itself interrupted ({exc or 'SIGINT'})"
                raise
            finally:
                _stop(processes, out_dir, why)
            yield LaunchResult(spec=spec, out_dir=out_dir, seconds=time.monotonic() - started)


def _stop(processes: dict[str, multiprocessing.Process], out_dir: Path, why: str) -> None:
    """Stop the parties still running as `isthmus run` stops on SIGTERM (each tells its peers and marks its
    run interrupted); one still running :data:`STOP_GRACE_S` later is killed. Each run then says ``why``,
    which its party did not know. (They were killed at once, their peers left to wait out their timeouts.)"""
    running = {name: process for name, process in processes.items() if process.is_alive()}
    for process in running.values():
        process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for name, process in running.items():
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
        mark_stopped(out_dir / name / RUN_MARKER, why)


def _party_main(*args: Any) -> None:
    """A launched party. Should its launcher die (killed, the OOM killer) it stops as on SIGTERM, rather than
    run on unwatched for as long as the job takes."""
    when_starter_ends(lambda: os.kill(os.getpid(), signal.SIGTERM))
    launched_party(*args)


def log_file(out_dir: Path, party: str) -> Path:
    """Where a launched party's process writes its output (outside its run folder, which it owns)."""
    return out_dir / LOGS / f"{party}.log"


def records_on_ledger(spec: JobSpec) -> bool:
    """A launched job is recorded on the ledger unless the job file says ``record: false``."""
    return spec.options.record if "record" in spec.options.model_fields_set else True


def _start(job_path: Path, party: str, out_dir: Path, *, record: bool, compute: str | None,
           preload: tuple[str, ...]) -> multiprocessing.Process:
    """Forked from the fork server, not from this process: no state of this process leaks into the party's."""
    log_path = log_file(out_dir, party)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process = fresh_process(_party_main, (job_path, party, out_dir / CERTS, out_dir / party, record, log_path,
                                             compute), name=f"isthmus-{party}", preload=preload)
    process.start()
    return process


def _certs_fit(certs: Path, parties: list[str]) -> bool:
    """Whether an earlier launch's certificates serve this job: the same parties, all files, not expiring."""
    try:
        pinned = json.loads((certs / FEDERATION_FILE).read_text(encoding="utf-8"))["signing_keys"]
        if sorted(pinned) != parties or not (certs / CA_KEY).is_file():
            return False
        for party in parties:
            cert = x509.load_pem_x509_certificate((certs / party / PARTY_CERT).read_bytes())
            if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < _CERTS_MARGIN:
                return False
            tls_files_for(certs, party)
        return all((certs / party / SIGNING_KEY).is_file() for party in parties)
    except (OSError, ValueError, KeyError, TypeError, IsthmusError):
        return False


def _launched_before(out_dir: Path) -> bool:
    """A launch folder from before launches left a marker: certificates, party folders and a parity report."""
    def launch_output(entry: Path) -> bool:
        return entry.name in (CERTS, "parity.json", LOCK_FILE) or (
            entry.is_dir() and ((entry / "events.jsonl").exists() or (entry / "process.log").exists()))

    return (out_dir / CERTS / CA_CERT).is_file() and all(map(launch_output, out_dir.iterdir()))


def _watch(spec: JobSpec, processes: dict[str, multiprocessing.Process], out_dir: Path, console: Console,
           deadline: float) -> None:
    failed_at: float | None = None
    lines = None if console.is_terminal else _ProgressLines(console)  # a log or a pipe: no live table to redraw
    with Live(_status_table(spec, _status_rows(spec, out_dir, processes)), console=console, refresh_per_second=4,
              transient=lines is not None) as live:
        while any(p.is_alive() for p in processes.values()):
            now = time.monotonic()
            failed = [name for name, p in processes.items() if p.exitcode not in (None, 0)]
            if failed_at is None and failed:
                failed_at = now
            if any(not (out_dir / name / "events.jsonl").exists() for name in failed):
                break  # it ended before its run began (its compute cluster, its keys): nobody could hear of it
            if (failed_at is not None and now - failed_at > FAILURE_GRACE_S) or now > deadline:
                break
            rows = _status_rows(spec, out_dir, processes)
            live.update(_status_table(spec, rows))
            if lines:
                lines.show(rows)
            time.sleep(0.25)
        final = _status_table(spec, _status_rows(spec, out_dir, processes))
        live.update(final)
    if lines:
        console.print(final)
    failures = {name: p.exitcode for name, p in processes.items() if p.exitcode != 0}
    if failures:
        raise LaunchError(_failure_report(spec, out_dir, failures))


def _failure_report(spec: JobSpec, out_dir: Path, failures: dict[str, int | None]) -> str:
    """Name the party that failed first with its own error, not the peers that were told to stop or were
    still waiting for it (exit code None: the launch stops them after this report). A peer told to stop
    may write its failure before the party that told it (which tells first), so those come last."""
    errors, silent = [], []
    for name, code in failures.items():
        failed = [e for e in read_events(out_dir / name / "events.jsonl") if e.get("status") == "failed"]
        if failed:
            first = failed[0]
            errors.append(("aborted_by" in first, first["time"], name, first.get("step"), first.get("error")))
        elif code:  # it ended before it could report: a check before its start, or killed (-9: OOM)
            silent.append(name)
    if silent or not errors:  # the likeliest cause, not the peers left waiting for it
        name = (silent or list(failures))[0]
        code = failures[name]
        how = ("was still running when the launch stopped waiting" if code is None else
               f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}")
        log = log_file(out_dir, name)
        if not log.exists():  # it died while starting, before it could open its log
            return f"party {name!r} {how} before reporting an error or writing its log {log}"
        tail = log.read_text(encoding="utf-8", errors="replace")[-1500:]
        last = tail.rstrip().rpartition("\n")[2]
        if last.startswith("error: "):  # its own check refused to start it (a port in use, a missing file)
            return f"party {name!r} {how}: {last.removeprefix('error: ')}"
        return f"party {name!r} {how} before reporting an error; its log ends:\n{tail}"
    errors.sort()
    _, _, name, step, error = errors[0]
    return f"job {spec.name!r} failed: party {name!r} at step {step!r}: {error} (logs in {out_dir / name})"


def _status_rows(spec: JobSpec, out_dir: Path, processes: dict[str, multiprocessing.Process]) -> list[tuple[str, ...]]:
    """Each party's (name, role, step, status, detail), from its latest step event and its process."""
    rows = []
    for name in sorted(spec.parties):
        events = [e for e in read_events(out_dir / name / "events.jsonl") if "step" in e]
        last = events[-1] if events else {}
        code = processes[name].exitcode
        status = "running" if code is None else ("finished" if code == 0 else f"failed ({code})")
        rows.append((name, spec.role_of(name), str(last.get("step", "-")), status, _detail(last)))
    return rows


def _status_table(spec: JobSpec, rows: list[tuple[str, ...]]) -> Table:
    table = Table(title=f"job {spec.name}", expand=False)
    for column in ("party", "role", "step", "status", "detail"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


class _ProgressLines:
    """The live table's news as lines, for a launch whose output is a log or a pipe (a CI job's): a line when a
    party's step or status changes, and its progress (epochs, stages) at most every PROGRESS_EVERY_S. A long
    job printed nothing until it ended."""

    def __init__(self, console: Console):
        self.console = console
        self.said: dict[str, tuple[tuple[str, ...], float]] = {}  # party -> (its row, when) as last printed

    def show(self, rows: list[tuple[str, ...]]) -> None:
        now = time.monotonic()
        for row in rows:
            name, _, step, status, detail = row
            said, when = self.said.get(name, ((), 0.0))
            if row == said or (said[2:4] == (step, status) and now - when < PROGRESS_EVERY_S) or (
                    (step, status) == ("-", "running")):  # started, nothing to say yet
                continue
            self.said[name] = (row, now)
            self.console.print(f"{time.strftime('%H:%M:%S')} {name} {step} {status}" + (f" {detail}" if detail else ""),
                               markup=False, highlight=False, soft_wrap=True)


def _detail(event: dict) -> str:
    if "epoch" in event:
        text = f"epoch {event['epoch']}/{event.get('epochs', '?')}"
        if isinstance(event.get("loss"), (int, float)):  # a party that cannot know the loss (an FTL host) says none
            text += f" loss {event['loss']:.4f}"
        if "model" in event and event.get("model"):
            text = f"model {event['model']} " + text
        return text
    if "error" in event:
        return str(event["error"])[:80]
    skip = {"time", "party", "step", "status"}
    return " ".join(f"{k}={v}" for k, v in event.items() if k not in skip)[:80]
