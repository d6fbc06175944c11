"""Run every party of a job as its own process on this machine, over mutual TLS on loopback.

For trying a job before deploying it: each party gets a fresh certificate from a federation CA made
for the run, runs ``isthmus run`` in its own process, and leaves its results in ``OUT/<party>/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from isthmus.errors import IsthmusError
from isthmus.jobs.events import read_events
from isthmus.jobs.runner import check_steps
from isthmus.jobs.spec import JobSpec, load_job
from isthmus.transport.certs import create_federation

#: After one party fails, how long the others get to notice (they are told) before they are killed.
FAILURE_GRACE_S = 5.0


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
           timeout: float = 3600.0) -> LaunchResult:
    spec = load_job(job_path)
    check_steps(spec)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    certs = out_dir / "certs"
    create_federation(certs, sorted(spec.parties))
    console = console or Console(stderr=True)
    started = time.monotonic()
    record = "record" not in spec.options  # a launched job is recorded on the ledger unless it says otherwise
    processes = {name: _spawn(Path(job_path).resolve(), name, certs, out_dir / name, record=record)
                 for name in sorted(spec.parties)}
    try:
        _watch(spec, processes, out_dir, console, deadline=started + timeout)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return LaunchResult(spec=spec, out_dir=out_dir, seconds=time.monotonic() - started)


def _spawn(job_path: Path, party: str, certs: Path, run_dir: Path, *, record: bool) -> subprocess.Popen:
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("events.jsonl", "audit.jsonl"):
        (run_dir / stale).unlink(missing_ok=True)
    log = (run_dir / "process.log").open("w", encoding="utf-8")
    command = [sys.executable, "-m", "isthmus", "run", str(job_path), "--party", party,
               "--certs", str(certs), "--out", str(run_dir), *(["--record"] if record else [])]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _watch(spec: JobSpec, processes: dict[str, subprocess.Popen], out_dir: Path, console: Console,
           deadline: float) -> None:
    failed_at: float | None = None
    with Live(_status_table(spec, out_dir, processes), console=console, refresh_per_second=4,
              transient=not console.is_terminal) as live:
        while any(p.poll() is None for p in processes.values()):
            now = time.monotonic()
            if failed_at is None and any(p.poll() not in (None, 0) for p in processes.values()):
                failed_at = now
            if (failed_at is not None and now - failed_at > FAILURE_GRACE_S) or now > deadline:
                break
            live.update(_status_table(spec, out_dir, processes))
            time.sleep(0.25)
        live.update(_status_table(spec, out_dir, processes))
    if not console.is_terminal:
        console.print(_status_table(spec, out_dir, processes))
    failures = {name: p.poll() for name, p in processes.items() if p.poll() != 0}
    if failures:
        raise LaunchError(_failure_report(spec, out_dir, failures))


def _failure_report(spec: JobSpec, out_dir: Path, failures: dict[str, int | None]) -> str:
    """Name the party that failed first with its own error, not the peers that were told to stop."""
    errors = []
    for name in failures:
        failed = [e for e in read_events(out_dir / name / "events.jsonl") if e.get("status") == "failed"]
        if failed:
            errors.append((failed[0]["time"], name, failed[0].get("step"), failed[0].get("error")))
    if not errors:
        name = next(iter(failures))
        tail = (out_dir / name / "process.log").read_text(encoding="utf-8", errors="replace")[-1500:]
        return f"party {name!r} exited with {failures[name]} before reporting an error; its log ends:\n{tail}"
    errors.sort()
    _, name, step, error = errors[0]
    return f"job {spec.name!r} failed: party {name!r} at step {step!r}: {error} (logs in {out_dir / name})"


def _status_table(spec: JobSpec, out_dir: Path, processes: dict[str, subprocess.Popen]) -> Table:
    table = Table(title=f"job {spec.name}", expand=False)
    for column in ("party", "role", "step", "status", "detail"):
        table.add_column(column)
    for name in sorted(spec.parties):
        events = [e for e in read_events(out_dir / name / "events.jsonl") if "step" in e]
        last = events[-1] if events else {}
        code = processes[name].poll()
        status = "running" if code is None else ("finished" if code == 0 else f"failed ({code})")
        table.add_row(name, spec.role_of(name), str(last.get("step", "-")), status, _detail(last))
    return table


def _detail(event: dict) -> str:
    if "epoch" in event:
        text = f"epoch {event['epoch']}/{event.get('epochs', '?')} loss {event.get('loss', float('nan')):.4f}"
        if "model" in event and event.get("model"):
            text = f"model {event['model']} " + text
        return text
    if "error" in event:
        return str(event["error"])[:80]
    skip = {"time", "party", "step", "status"}
    return " ".join(f"{k}={v}" for k, v in event.items() if k not in skip)[:80]
